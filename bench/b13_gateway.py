"""B13: what Berth's model gateway adds to a model call (issue 16, acceptance 5), driven by
bench/harness.py.

One `berth serve --gateway FILE` with a single Anthropic upstream: the fast agent (bench/fast-agent)
started by the harness on a free port as the model double (`POST /v1/messages`, 1 KB JSON, or with
`"stream": true` an SSE stream of `events` events). Its credential is a Berth secret; the key the
load generator sends is the one Berth issued to a live sandbox (bench/agents/gateway_key.py hands it
out), accepted on the public listener while that sandbox lives, exactly as an agent's SDK sends it.

Two paths, the same requests (headers and body) on both, interleaved round by round in one run:

- `direct`: `POST {double}/v1/messages`;
- `gateway`: `POST {berth}/gateway/anthropic/v1/messages`: key check, the caller's limits, the
  credential pool, a pooled connection to the double, the answer streamed back through the usage
  tap, and a `gen_ai` span recorded per call.

Measured:

- (a) `berth-bench rate`, non-streaming, 1,000 requests/s open loop: p50 / p99 of both and the
  added p50 / p99 (goal: added p99 <= 1 ms; TensorZero reports 0.94 ms at 10k QPS, LiteLLM 5.9 ms
  at 100 QPS);
- (b) `berth-bench sse --model`: streams one after another, events a few ms apart: added time to
  the first streamed byte (the first token's event), p50 / p99 (goal: <= 1 ms);
- (c) streams at a fixed rate (`berth-bench rate` with a streaming body): added time to first byte
  under load, reported.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Bench

GOAL_ADDED_P99_MS = 1.0
GOAL_ADDED_TTFT_MS = 1.0
MODEL = "bench-model"
SECRET = "bench-key"
# What the double would check if it were a provider; the gateway puts it in `x-api-key`.
UPSTREAM_KEY = "sk-bench-upstream-0123456789"
PATHS = ("direct", "gateway")
# A small Messages request; the double ignores everything but the streaming fields.
MESSAGES = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "say hello"}]}


def _settings(smoke: bool) -> dict:
    if smoke:
        return dict(rate=100, seconds=1.0, warmup=0.2, streams=5, events=3, interval_ms=5,
                    stream_rate=50, stream_seconds=0.5, stream_events=3, slow_rate=20, slow_seconds=0.5)
    return dict(rate=1000, seconds=10.0, warmup=1.0, streams=200, events=5, interval_ms=5,
                stream_rate=500, stream_seconds=5.0, stream_events=5, slow_rate=50, slow_seconds=4.0)


def _thread_ticks(pid: int) -> dict[str, int]:
    """utime + stime per thread name of a process (clock ticks): the server's tokio workers vs
    the SQLite worker threads that store the gateway's spans."""
    from pathlib import Path

    out: dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        name = "sqlite" if comm.startswith("sqlx-sqlite") else "other"
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def _key_agent_package() -> bytes:
    from harness import BENCH

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(BENCH / "agents" / "gateway_key.py", "agent.py")
    return buf.getvalue()


class Setup:
    """The double, the gateway server, the pooled credential and a live sandbox's key."""

    def __init__(self, bench: "Bench"):
        from harness import (ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, Berth, BrokenPath, log, wait_http_ok)

        tools, work = bench.tools, bench.work
        env = tools.env()
        env["BERTH_FAST_AGENT_THREADS"] = "1"
        self.double = bench.procs.start("model-double", [str(tools.fast_agent), "--listen", "127.0.0.1:0"],
                                        work / "model-double.log", env)
        self.double_url = self.double.wait_for(r"listening on (http://\S+)", 10).group(1)
        wait_http_ok(self.double_url + "/ping", 10)
        cfg = work / "gateway.toml"
        cfg.write_text(f'[[upstreams]]\nname = "double"\nprotocol = "anthropic"\nurl = "{self.double_url}"\n'
                       f'secrets = ["{SECRET}"]\n')
        log("B13: starting berth serve --gateway with the fast agent as the Anthropic upstream")
        self.server = Berth(bench.procs, tools, work, "gateway", warm_pool=0, isolation=bench.isolation,
                            extra=["--gateway", str(cfg)])
        put_env = tools.env()
        put_env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
        put = subprocess.run([str(tools.berth), "secrets", "put", SECRET, "--endpoint-url", self.server.url],
                             input=UPSTREAM_KEY + "\n", capture_output=True, text=True, env=put_env, timeout=60)
        if put.returncode != 0:
            raise BrokenPath(f"B13: berth secrets put failed: {put.stderr.strip()[-500:]}")

        log("B13: deploying the key agent and starting its session")
        self.arn = self.server.deploy("bench_gateway_key", _key_agent_package(), "agent.py", None, timeout=300)
        import boto3
        import botocore.config

        self.data = boto3.client(
            "bedrock-agentcore", endpoint_url=self.server.url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=120))
        self.session = f"bench-gateway-key-{uuid.uuid4().hex}"
        answer = self.invoke_key_agent()
        self.key = answer.get("key", "")
        if not self.key:
            raise BrokenPath(f"B13: the sandbox got no ANTHROPIC_API_KEY: {answer}")
        self.urls = {"direct": self.double_url + "/v1/messages",
                     "gateway": self.server.url + "/gateway/anthropic/v1/messages"}
        self.headers = [f"x-api-key:{self.key}", "anthropic-version:2023-06-01"]
        self.wait_for_credential()

    def invoke_key_agent(self) -> dict:
        r = self.data.invoke_agent_runtime(agentRuntimeArn=self.arn, runtimeSessionId=self.session, payload=b"{}")
        return json.loads(r["response"].read())

    def wait_for_credential(self) -> None:
        """The gateway loads the secret when it changes; polls (bounded) until a call goes through
        to the double, and checks that both paths give the double's own answer."""
        from harness import BrokenPath

        deadline = time.monotonic() + 30
        last = ""
        while True:
            try:
                answers = {p: self.call(p) for p in PATHS}
                break
            except urllib.error.HTTPError as e:
                last = f"{e.code}: {e.read()[:300]!r}"
            if time.monotonic() > deadline:
                raise BrokenPath(f"B13: the gateway did not reach the double within 30 s: {last}")
            time.sleep(0.1)
        for p, body in answers.items():
            if len(body) != 1024 or not json.loads(body).get("ok"):
                raise BrokenPath(f"B13 {p}: not the double's 1 KB answer: {body[:200]!r}")

    def call(self, path: str) -> bytes:
        req = urllib.request.Request(self.urls[path], data=json.dumps(MESSAGES).encode(), method="POST",
                                     headers={"content-type": "application/json", "x-api-key": self.key,
                                              "anthropic-version": "2023-06-01"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def header_args(self) -> list[str]:
        return [a for h in self.headers for a in ("--header", h)]


def b13(bench: "Bench") -> None:
    from harness import BrokenPath, Figure, _cpu_ticks, fmt, log, median, ms

    p = bench.plan
    s = _settings(p.smoke)
    setup = Setup(bench)
    bench.b13_setup = setup
    tools = bench.tools
    body = json.dumps(MESSAGES)
    stream_body = json.dumps({**MESSAGES, "stream": True, "events": s["stream_events"], "interval_ms": 1})
    tick_ms = 1e3 / os.sysconf("SC_CLK_TCK")

    def rate(path: str, rate: float, seconds: float, req_body: str) -> dict:
        rep = tools.run_bench(["rate", "--url", setup.urls[path], *setup.header_args(), "--body", req_body,
                               "--rate", str(rate), "--duration", str(seconds), "--warmup", str(s["warmup"]),
                               "--connections", "16", "--timeout", "5"], timeout=seconds + s["warmup"] + 120)
        if rep["errors"]:
            raise BrokenPath(f"B13 {path}: {rep['errors']} errors: {rep['error_samples'][:2]}")
        return rep

    log(f"B13: {p.rounds} rounds x {len(PATHS)} paths: {s['rate']}/s non-streaming for {s['seconds']:g} s;"
        f" {s['streams']} streams of {s['events']} events {s['interval_ms']} ms apart; {s['stream_rate']} streams/s"
        f" for {s['stream_seconds']:g} s")
    plain: dict[str, list[dict]] = {x: [] for x in PATHS}
    sse: dict[str, list[dict]] = {x: [] for x in PATHS}
    streaming: dict[str, list[dict]] = {x: [] for x in PATHS}
    slow: dict[str, list[dict]] = {x: [] for x in PATHS}
    # CPU per request of the gateway server and of the double during (a), µs.
    cpu: dict[str, list[dict]] = {x: [] for x in PATHS}
    for r in range(p.rounds):
        for path in bench.order(r, PATHS):
            before = (_cpu_ticks([setup.server.pid]), _cpu_ticks([setup.double.pid]), _thread_ticks(setup.server.pid))
            rep = rate(path, s["rate"], s["seconds"], body)
            after = (_cpu_ticks([setup.server.pid]), _cpu_ticks([setup.double.pid]), _thread_ticks(setup.server.pid))
            n = rep["intended"] * (s["seconds"] + s["warmup"]) / s["seconds"]
            us = tick_ms * 1e3 / n
            cpu[path].append({"server": (after[0] - before[0]) * us, "double": (after[1] - before[1]) * us,
                              "sqlite": (after[2].get("sqlite", 0) - before[2].get("sqlite", 0)) * us})
            plain[path].append(rep)
        for path in bench.order(r, PATHS):
            rep = tools.run_bench(["sse", "--url", setup.urls[path], *setup.header_args(), "--model", MODEL,
                                   "--count", str(s["streams"]), "--events", str(s["events"]),
                                   "--interval-ms", str(s["interval_ms"]), "--event-bytes", "64", "--timeout", "30"],
                                  timeout=s["streams"] * 5 + 60)
            if rep["errors"]:
                raise BrokenPath(f"B13 sse {path}: {rep['error_samples']}")
            sse[path].append(rep)
        for path in bench.order(r + 1, PATHS):
            streaming[path].append(rate(path, s["stream_rate"], s["stream_seconds"], stream_body))
        for path in bench.order(r + 1, PATHS):
            # One request at a time on an otherwise idle server: what the hops cost without load.
            slow[path].append(tools.run_bench(
                ["rate", "--url", setup.urls[path], *setup.header_args(), "--body", body, "--rate", str(s["slow_rate"]),
                 "--duration", str(s["slow_seconds"]), "--warmup", str(s["warmup"]), "--connections", "1",
                 "--threads", "1", "--timeout", "5"], timeout=s["slow_seconds"] + 120))
            if slow[path][-1]["errors"]:
                raise BrokenPath(f"B13 {path} one at a time: {slow[path][-1]['error_samples'][:2]}")
    # The key must still be live at the end: the sandbox that got it still answers.
    if setup.invoke_key_agent().get("key") != setup.key:
        raise BrokenPath("B13: the key agent's session changed its key during the run")

    def med(reps: dict[str, list[dict]], field: str) -> dict[str, dict[str, float]]:
        return {x: {q: median([ms(rep[field][q]) for rep in reps[x]]) for q in ("p50", "p99", "p999", "max")}
                for x in PATHS}

    lat = med(plain, "latency")
    added = {q: lat["gateway"][q] - lat["direct"][q] for q in ("p50", "p99")}
    ttfb = med(sse, "ttfb")
    added_ttfb = {q: ttfb["gateway"][q] - ttfb["direct"][q] for q in ("p50", "p99")}
    st = med(streaming, "ttfb")
    one = med(slow, "latency")
    added_st = {q: st["gateway"][q] - st["direct"][q] for q in ("p50", "p99")}
    merged = {x: sum(rep["merged"] for rep in sse[x]) for x in PATHS}
    events = {x: sum(rep["events"] for rep in sse[x]) for x in PATHS}

    def signed(x: float) -> str:
        return ("+" if x >= 0 else "") + fmt(x)

    bench.results.add(Figure(
        "B13", f"model gateway: added latency of a non-streaming call at {s['rate']:,} requests/s, p50 / p99",
        f"{signed(added['p50'])} / {signed(added['p99'])} ms (direct {fmt(lat['direct']['p50'])} / {fmt(lat['direct']['p99'])},"
        f" gateway {fmt(lat['gateway']['p50'])} / {fmt(lat['gateway']['p99'])} ms)",
        f"added p99 <= {GOAL_ADDED_P99_MS:g} ms", added["p99"] <= GOAL_ADDED_P99_MS))
    bench.results.add(Figure(
        "B13t", "model gateway: added time to the first streamed event (streams one after another), p50 / p99",
        f"{signed(added_ttfb['p50'])} / {signed(added_ttfb['p99'])} ms; {merged['gateway']} of {events['gateway']} events merged;"
        f" at {s['stream_rate']} streams/s {signed(added_st['p50'])} / {signed(added_st['p99'])} ms",
        f"<= {GOAL_ADDED_TTFT_MS:g} ms (p50, as B3)", added_ttfb["p50"] <= GOAL_ADDED_TTFT_MS))

    def rows(table: dict[str, dict[str, float]], reps: dict[str, list[dict]], field: str) -> list[str]:
        out = []
        for x in PATHS:
            a50 = "" if x == "direct" else signed(table[x]["p50"] - table["direct"]["p50"])
            a99 = "" if x == "direct" else signed(table[x]["p99"] - table["direct"]["p99"])
            per = ", ".join(f"{fmt(ms(rep[field]['p50']))}/{fmt(ms(rep[field]['p99']))}" for rep in reps[x])
            out.append(f"| {x} | {fmt(table[x]['p50'])} | {fmt(table[x]['p99'])} | {fmt(table[x]['p999'])} |"
                       f" {fmt(table[x]['max'])} | {a50} | {a99} | {per} |")
        return out

    head = ["| path | p50 | p99 | p99.9 | max | added p50 | added p99 | rounds (p50 / p99) |",
            "|---|---|---|---|---|---|---|---|"]
    cpu_med = {x: {k: median([c[k] for c in cpu[x]]) for k in ("server", "double", "sqlite")} for x in PATHS}
    lag = {x: median([ms(rep["dispatch_lag"]["p99"]) for rep in plain[x]]) for x in PATHS}
    lines = [
        "## B13: the model gateway",
        "",
        "One `berth serve --gateway` with one Anthropic upstream: the fast agent on its own port as the model double"
        " (`POST /v1/messages`; 1 KB JSON, or with `\"stream\": true` its SSE events). The pooled credential is a Berth"
        " secret; the key sent is the one Berth issued to a live sandbox (bench/agents/gateway_key.py returns it),"
        " accepted on the public listener. `direct` posts to the double, `gateway` to"
        " `/gateway/anthropic/v1/messages`; both get the same headers (`x-api-key`, `anthropic-version`) and body (a"
        f" small Messages request naming model `{MODEL}`). {p.rounds} interleaved rounds; medians of round values, ms."
        " Generator, Berth and double share the machine's CPUs.",
        "",
        f"**Non-streaming at {s['rate']:,} requests/s** (`berth-bench rate`, open loop, 16 connections, {s['seconds']:g} s"
        f" measured after {s['warmup']:g} s of warm-up, latency from each request's intended start to its last byte):",
        "",
        *head,
        *rows(lat, plain, "latency"),
        "",
        f"CPU per request during these runs (utime + stime, µs): berth server {fmt(cpu_med['gateway']['server'], 0)} on"
        f" the gateway path ({fmt(cpu_med['direct']['server'], 0)} on the direct path, where it idles), of which"
        f" {fmt(cpu_med['gateway']['sqlite'], 0)} in its SQLite worker threads (storing the `gen_ai` span of each call);"
        f" the double"
        f" {fmt(cpu_med['direct']['double'], 0)} direct / {fmt(cpu_med['gateway']['double'], 0)} behind the gateway."
        f" Generator scheduling lag p99 {fmt(lag['direct'])} / {fmt(lag['gateway'])} ms (direct / gateway), inside the"
        " measured time.",
        "",
        f"**Time to first streamed event** (`berth-bench sse --model {MODEL}`: {s['streams']} streams per path and round,"
        f" one after another on a kept-alive connection, {s['events']} events of 64 bytes {s['interval_ms']} ms apart;"
        " from sending the request to the first body byte, which is the first event):",
        "",
        *head,
        *rows(ttfb, sse, "ttfb"),
        "",
        f"Events merged (arrived in the same read as the one before, or within a tenth of the interval):"
        f" {merged['direct']} of {events['direct']} direct, {merged['gateway']} of {events['gateway']} through the gateway.",
        "",
        f"**Streams at a fixed rate** (`berth-bench rate` with `\"stream\": true`, {s['stream_events']} events 1 ms apart,"
        f" {s['stream_rate']} streams/s for {s['stream_seconds']:g} s, 16 connections; time to first byte from the"
        " intended start):",
        "",
        *head,
        *rows(st, streaming, "ttfb"),
        "",
        f"**One request at a time** (non-streaming, {s['slow_rate']} requests/s on one connection, {s['slow_seconds']:g} s:"
        " each request finds the server idle, so every hop pays for waking its threads):",
        "",
        *head,
        *rows(one, slow, "latency"),
        "",
        "For scale (their own machines and setups, not measured here): TensorZero reports 0.94 ms added p99 at 10k QPS,"
        " LiteLLM 5.9 ms at 100 QPS.",
    ]
    bench.results.sections.append("\n".join(lines))


def profile(bench: "Bench", fig: str) -> str:
    """For a missed B13 figure: perf samples of the gateway server under the same non-streaming
    load (self time, and inclusive time of Berth's frames and its HTTP stack)."""
    if fig != "B13" and "B13" in bench.results.misses:
        return "The same server and path as B13: see B13's profile."
    if not shutil.which("perf"):
        return "perf is not installed; no profile taken."
    setup: Setup = bench.b13_setup
    s = _settings(bench.plan.smoke)
    seconds = bench.plan.profile_seconds
    out = bench.work / f"perf-{fig}.data"
    record = ["--call-graph", "dwarf,8192", "-p", str(setup.server.pid)]
    rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "500", "-o", str(out), *record, "--", "sleep",
                            str(seconds + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        bench.tools.run_bench(["rate", "--url", setup.urls["gateway"], *setup.header_args(), "--body", json.dumps(MESSAGES),
                               "--rate", str(s["rate"]), "--duration", str(seconds), "--warmup", "0.5",
                               "--connections", "16", "--timeout", "5"], timeout=seconds + 120)
    finally:
        _, err = rec.communicate(timeout=seconds + 120)
    if rec.returncode != 0 or not out.exists():
        return f"perf record failed ({err.strip()[-300:]}); no profile taken."

    def report(args: list[str], limit: int, keep=lambda _: True) -> str:
        r = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-inline", *args], capture_output=True,
                           text=True, timeout=600)
        rows = []
        for line in r.stdout.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            line = re.sub(r"\s+-\s+-\s*$", "", line).rstrip()
            if keep(line):
                rows.append(line[:200])
        return "\n".join(rows[:limit])

    ours = re.compile(r"berth_|hyper::|hyper_util::|reqwest::|axum::|sqlx|tracing::|rustls|"
                      r"\[k\] (tcp_sendmsg|tcp_recvmsg|__schedule|do_futex|epoll_wait)\b")
    noise = re.compile(r"inlined|closure_env|call_once|catch_unwind|do_call|poll_future|poll_inner|with_mut|"
                       r"Instrumented|map::Map|RouteFuture|Oneshot|Harness")
    return "\n".join([
        f"`perf record -e cpu-clock -F 500 {' '.join(record)}` on the berth-gateway process during {seconds} s of the"
        f" non-streaming load ({s['rate']}/s through the gateway).",
        "",
        "Self time, entries over 1%:",
        "",
        "```",
        report(["--no-children", "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1"], 25),
        "```",
        "",
        "Inclusive time of Berth's frames and the libraries on the gateway's path (over 3%):",
        "",
        "```",
        report(["--children", "--sort", "symbol", "-g", "none", "--percent-limit", "3"], 30,
               lambda l: bool(ours.search(l)) and not noise.search(l)),
        "```",
    ])
