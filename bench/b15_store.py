"""B15: the PostgreSQL store next to the embedded SQLite one on this machine (issue 18,
acceptance 4), driven by bench/harness.py.

Two `berth serve`s, identical but for `--store`: one on its default SQLite file, one on a real
PostgreSQL 15 (a throwaway cluster started by `berth-pgtest`: Debian's binaries, fsync on, a temp
dir on the same disk). Measured on both, alternating round by round:

- durable CreateEvent/s over HTTP with 16 closed-loop writers (`berth-bench memory events`, as B6a),
  and its p99;
- control-plane latency seen by boto3, one call at a time: CreateAgentRuntime (a runtime row, its
  first version, the idempotency and audit rows: one transaction) and GetAgentRuntime (one read).

Reported side by side; no goal: the figure says what choosing PostgreSQL costs or gains here.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Bench

WRITERS = 16
STORES = ("sqlite", "postgres")


def _settings(smoke: bool) -> dict:
    if smoke:
        return dict(rounds=1, seconds=1.0, warmup=0.2, calls=5)
    return dict(rounds=3, seconds=5.0, warmup=1.0, calls=200)


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def b15(bench: "Bench") -> None:
    from harness import ROLE_ARN, Berth, BrokenPath, Figure, _die_with_parent, fmt, log, median

    s = _settings(bench.plan.smoke)
    tools = bench.tools
    pgtest = tools.berth.parent / "berth-pgtest"
    if not pgtest.exists():
        raise BrokenPath(f"{pgtest} is missing: build it with `cargo build -p berth-pgtest`")
    pg = subprocess.Popen([str(pgtest)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        url = pg.stdout.readline().strip() if pg.stdout else ""
        if not url:
            raise BrokenPath(f"B15: berth-pgtest could not start PostgreSQL: {pg.stderr.read()[-1000:] if pg.stderr else ''}")
        log("B15: two servers, one on SQLite and one on PostgreSQL")
        servers = {
            "sqlite": Berth(bench.procs, tools, bench.work, "store-sqlite", warm_pool=0, isolation=bench.isolation),
            "postgres": Berth(bench.procs, tools, bench.work, "store-postgres", warm_pool=0, isolation=bench.isolation,
                              extra=["--store", url]),
        }
        memories = {}
        for name, srv in servers.items():
            mid = srv.control.create_memory(name=f"bench_store_{name}", eventExpiryDuration=30)["memory"]["id"]
            deadline = time.monotonic() + 60
            while srv.control.get_memory(memoryId=mid)["memory"]["status"] != "ACTIVE":
                if time.monotonic() > deadline:
                    raise BrokenPath(f"B15: memory on {name} never became ACTIVE")
                time.sleep(0.1)
            memories[name] = mid
        artifact = {"codeConfiguration": {"code": {"s3": {"bucket": "no-such-bucket-b15", "prefix": "x.zip"}},
                                          "runtime": "PYTHON_3_11", "entryPoint": ["agent.py"]}}
        events: dict[str, list[dict]] = {x: [] for x in STORES}
        creates: dict[str, list[float]] = {x: [] for x in STORES}
        gets: dict[str, list[float]] = {x: [] for x in STORES}
        for r in range(s["rounds"]):
            for name in bench.order(r, STORES):
                srv = servers[name]
                rep = tools.run_bench(["memory", "events", "--url", srv.url, "--memory-id", memories[name],
                                       "--writers", str(WRITERS), "--duration", str(s["seconds"]),
                                       "--warmup", str(s["warmup"])], timeout=s["seconds"] + s["warmup"] + 120)
                if rep["errors"]:
                    raise BrokenPath(f"B15 {name}: {rep['errors']} CreateEvent failures: {rep['error_samples'][:2]}")
                events[name].append(rep)
                ids = []
                for _ in range(s["calls"]):
                    t = time.perf_counter()
                    made = srv.control.create_agent_runtime(
                        agentRuntimeName=f"b15_{uuid.uuid4().hex[:12]}", agentRuntimeArtifact=artifact, roleArn=ROLE_ARN)
                    creates[name].append((time.perf_counter() - t) * 1e3)
                    ids.append(made["agentRuntimeId"])
                for rid in ids:
                    t = time.perf_counter()
                    srv.control.get_agent_runtime(agentRuntimeId=rid)
                    gets[name].append((time.perf_counter() - t) * 1e3)
    finally:
        # The server on PostgreSQL stops before its database does.
        for srv in locals().get("servers", {}).values():
            srv.proc.stop()
        if pg.stdin:
            pg.stdin.close()
        try:
            pg.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pg.kill()
            pg.wait()

    rate = {x: median([e["events_per_s"] for e in events[x]]) for x in STORES}
    p99 = {x: median([e["latency"]["p99"] / 1000 for e in events[x]]) for x in STORES}
    lat = {x: {"create": (_pct(creates[x], 0.5), _pct(creates[x], 0.99)),
               "get": (_pct(gets[x], 0.5), _pct(gets[x], 0.99))} for x in STORES}
    bench.results.add(Figure(
        "B15", "store: PostgreSQL next to SQLite: durable CreateEvent/s (16 writers); CreateAgentRuntime / GetAgentRuntime p50",
        f"postgres {rate['postgres']:.0f}/s, {fmt(lat['postgres']['create'][0])} / {fmt(lat['postgres']['get'][0])} ms;"
        f" sqlite {rate['sqlite']:.0f}/s, {fmt(lat['sqlite']['create'][0])} / {fmt(lat['sqlite']['get'][0])} ms",
        "reported", None))
    lines = [
        "## B15: PostgreSQL and SQLite stores side by side",
        "",
        "Two `berth serve`s identical but for `--store`: the default SQLite file (WAL, `synchronous=FULL`) and a"
        " PostgreSQL 15 cluster started by `berth-pgtest` (Debian's binaries, fsync and `synchronous_commit` on, data"
        f" in a temp dir on the same disk). {s['rounds']} rounds alternating the two. CreateEvent: `berth-bench memory"
        f" events`, {WRITERS} closed-loop writers over HTTP for {s['seconds']:g} s per round. Control plane: boto3, one call"
        f" at a time, {s['calls']} CreateAgentRuntime then as many GetAgentRuntime per round (client time, Python"
        " included equally on both).",
        "",
        "| store | CreateEvent/s | CreateEvent p99 ms | CreateAgentRuntime p50 / p99 ms | GetAgentRuntime p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for x in STORES:
        c, g = lat[x]["create"], lat[x]["get"]
        lines.append(f"| {x} | {rate[x]:.0f} | {fmt(p99[x], 2)} | {fmt(c[0])} / {fmt(c[1])} | {fmt(g[0])} / {fmt(g[1])} |")
    bench.results.sections.append("\n".join(lines))
