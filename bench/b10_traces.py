"""B10: the trace store (issue 14), driven by bench/harness.py.

Two figures, both measured in process by `berth-bench trace-store` against
`berth_trace::SqliteTraceStore` in fresh databases in the run's scratch dir (so the fsync cost is
this machine's disk):

- durable span ingest per second: concurrent writers each decoding an OTLP/protobuf export
  request of Strands-shaped spans (`otlp::decode_traces`, as the receiver does) and storing it with
  `TraceStore::insert` through `GroupCommit`, as `berth serve` does (concurrent requests share a
  `synchronous=FULL` transaction). The OTLP receiver listens
  only inside sandboxes, so the HTTP layer in front of it is not part of this figure.
- span query by session over a store seeded with 1,000,000 spans (one SQL statement: seconds,
  not minutes), each session's traces spread over the whole table: `TraceStore::session_spans`
  p95, with `TraceStore::list` by session reported beside it.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Bench

GOAL_INGEST_PER_S = 20_000.0
GOAL_QUERY_P95_MS = 50.0


def _ms(us: float) -> float:
    return us / 1000.0


def _args(p) -> list[str]:
    return ["trace-store", "--writers", str(p.b10_writers), "--batch", str(p.b10_batch), "--seconds", str(p.b10_seconds),
            "--warmup", str(p.b10_warmup), "--seed-spans", str(p.b10_seed_spans), "--spans-per-session",
            str(p.b10_spans_per_session), "--queries", str(p.b10_queries)]


def b10(bench: "Bench") -> None:
    from harness import Figure, fmt, log

    p = bench.plan
    log(f"B10: trace store: ingest ({p.b10_writers} writers x {p.b10_batch}-span requests, {p.b10_seconds:g} s), then"
        f" {p.b10_queries} session queries over {p.b10_seed_spans:,} seeded spans")
    r = bench.tools.run_bench([*_args(p), "--dir", str(bench.work)], timeout=1800 if not p.smoke else 300)
    ing, seed, q = r["ingest"], r["seed"], r["query"]
    rate = ing["spans_per_s"]
    p95 = _ms(q["session_spans"]["p95"])
    bench.b10_ingest_ok = rate >= GOAL_INGEST_PER_S
    bench.b10_query_ok = p95 <= GOAL_QUERY_P95_MS
    bench.results.add(Figure(
        "B10", f"traces: durable span ingest/s (OTLP decode + insert, in process); spans of a session over {seed['spans']:,}"
        " stored spans, p95",
        f"{rate:,.0f} spans/s ({ing['batch']}-span requests); p95 {fmt(p95, 2)} ms ({q['spans_per_session']} spans)",
        f">= {GOAL_INGEST_PER_S:,.0f}/s; p95 <= {GOAL_QUERY_P95_MS:.0f} ms", bench.b10_ingest_ok and bench.b10_query_ok))

    lat = ing["request_latency"]
    ss, ls = q["session_spans"], q["list_by_session"]
    lines = [
        "## B10: trace store ingest and query",
        "",
        f"`berth-bench trace-store` ({r['build']} build), in process against `SqliteTraceStore` (WAL, `synchronous=FULL`)"
        " in fresh databases in the run's scratch dir.",
        "",
        f"**Durable ingest.** {ing['writers']} concurrent writers for {ing['seconds']:g} s after a warm-up, each in a loop:"
        f" build an OTLP `ExportTraceServiceRequest` of {ing['batch']} new spans shaped like a Strands agent's under ADOT"
        f" (11 GenAI attributes, the ADOT resource; {ing['request_bytes']:,} bytes of protobuf), encode it, then what the"
        " receiver does after the HTTP layer: `otlp::decode_traces` under the sandbox's attribution and"
        " `TraceStore::insert` through `GroupCommit`, as `berth serve` stores export requests (requests queued while a"
        " transaction commits share the next one; each is durable when its insert returns)."
        " The request's encoding is the client's cost and is inside the loop, so the figure is conservative. Through"
        " `TraceStore::insert`, not over HTTP: the OTLP receiver listens only on sandbox listeners.",
        "",
        "| spans/s | requests | spans | request p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|",
        f"| {rate:,.0f} | {ing['requests']} | {ing['spans']:,} | {fmt(_ms(lat['p50']), 2)} ms | {fmt(_ms(lat['p95']), 2)} ms |"
        f" {fmt(_ms(lat['p99']), 2)} ms | {fmt(_ms(lat['max']), 1)} ms |",
        "",
        f"**Query by session.** A second store seeded with {seed['spans']:,} spans in {fmt(seed['seconds'], 1)} s (one"
        f" statement, one transaction: a recursive CTE), {seed['traces']:,} traces of 10 spans, {seed['sessions']:,} sessions"
        f" of {q['spans_per_session']} spans each; a session's traces are spread over the whole table (trace t belongs to"
        f" session t mod {seed['sessions']:,}), so its rows are not neighbours on disk; the traces' summary rows aggregated"
        f" from the spans; {fmt(seed['db_mib'], 0)} MiB on disk. Then {q['queries']} sessions chosen by a fixed"
        " pseudo-random walk, each queried once with each call (the page cache warm, as on a serving machine).",
        "",
        "| call | count | p50 | p90 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|",
        f"| `session_spans(runtime, session)`: every span of the session, decoded | {ss['count']} | {fmt(_ms(ss['p50']), 2)} |"
        f" {fmt(_ms(ss['p90']), 2)} | {fmt(_ms(ss['p95']), 2)} | {fmt(_ms(ss['p99']), 2)} | {fmt(_ms(ss['max']), 1)} |",
        f"| `list` by runtime and session: the session's trace summaries | {ls['count']} | {fmt(_ms(ls['p50']), 2)} |"
        f" {fmt(_ms(ls['p90']), 2)} | {fmt(_ms(ls['p95']), 2)} | {fmt(_ms(ls['p99']), 2)} | {fmt(_ms(ls['max']), 1)} |",
        "",
        "Milliseconds.",
    ]
    bench.results.sections.append("\n".join(lines))


def profile(bench: "Bench") -> str:
    """For a missed B10: perf samples of the same run (self time by symbol)."""
    if not shutil.which("perf"):
        return "perf is not installed; no profile taken."
    p = bench.plan
    out = bench.work / "perf-B10.data"
    cmd = [str(bench.tools.bench), *_args(p), "--dir", str(bench.work)]
    rec = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(out), "--", *cmd],
                         capture_output=True, text=True, timeout=1800, env=bench.tools.env())
    if rec.returncode != 0:
        return f"perf record failed ({rec.stderr.strip()[-300:]}); no profile taken."
    rep = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-inline", "--no-children", "--sort", "symbol",
                          "-g", "none", "--percent-limit", "1"], capture_output=True, text=True, timeout=600)
    rows = [line.rstrip()[:200] for line in rep.stdout.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join([
        f"`perf record -e cpu-clock -F 999 -g -- berth-bench {' '.join(cmd[1:])}` (ingest, seeding and queries), self"
        " time over 1%:",
        "",
        "```",
        *rows[:25],
        "```",
    ])
