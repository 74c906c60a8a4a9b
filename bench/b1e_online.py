"""B1e: B1 with online evaluation scoring every session vs off (issue 15), driven by bench/harness.py.

Two `berth serve` processes, alike but for one thing, each serve B1's warm session of the fast agent:

- `berth` (B1's server): no online evaluation config;
- `evaluated`: an online evaluation config at 100% sampling over the fast agent's DEFAULT endpoint,
  scoring each finished session with an LLM judge (`llmAsAJudge`), the judge being a model double in
  this process that speaks the OpenAI chat completions API with a fixed verdict. Time is compressed
  (`--eval-minute-ms`) so a session counts as finished soon after its last call.

Both servers get the same background churn for the whole measurement: `berth-bench rate
--new-session --stop-sessions`, a fresh session every half second, each a finished session a moment
later. On `evaluated` each of them is read back from the trace store, judged and stored as a score,
so scoring runs while B1's rounds measure; on `berth` the same sessions come and go unscored. The
rounds alternate the two servers; the figure is the difference of their p50s (medians of rounds)
and the judge calls made inside the measured windows show that scoring ran meanwhile.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Bench

GOAL_ADDED_P50_MS = 0.05
CHURN_PER_S = 2.0
JUDGE_MODEL = "bench-judge"
EVALUATED = "evaluated"


class Judge:
    """An OpenAI-compatible model double that rates every prompt `Good`, timing each call."""

    def __init__(self) -> None:
        calls: list[float] = []
        self.calls = calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                calls.append(time.monotonic())
                verdict = {"label": "Good", "explanation": "a fixed verdict from the benchmark's judge double"}
                data = json.dumps({
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "model": body.get("model", JUDGE_MODEL),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(verdict)},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48},
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def calls_between(self, start: float, end: float) -> int:
        return sum(1 for t in list(self.calls) if start <= t <= end)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _online_config(server, runtime_arn: str) -> None:
    """A judge evaluator and an online config scoring every session of the runtime's DEFAULT endpoint."""
    from harness import BrokenPath

    control = server.control
    runtime = control.get_agent_runtime(agentRuntimeId=runtime_arn.rsplit("/", 1)[1])
    evaluator = control.create_evaluator(
        evaluatorName="bench_judge",
        level="SESSION",
        evaluatorConfig={"llmAsAJudge": {
            "instructions": "Rate whether the agent answered the request. {context}",
            "ratingScale": {"categorical": [
                {"label": "Good", "definition": "answered"},
                {"label": "Bad", "definition": "did not answer"},
            ]},
            "modelConfig": {"bedrockEvaluatorModelConfig": {"modelId": JUDGE_MODEL}},
        }},
    )
    config = control.create_online_evaluation_config(
        onlineEvaluationConfigName="bench_online",
        rule={"samplingConfig": {"samplingPercentage": 100.0}, "sessionConfig": {"sessionTimeoutMinutes": 1}},
        dataSourceConfig={"cloudWatchLogs": {
            "logGroupNames": [f"/aws/bedrock-agentcore/runtimes/{runtime['agentRuntimeId']}-DEFAULT"],
            "serviceNames": [f"{runtime['agentRuntimeName']}.DEFAULT"],
        }},
        evaluators=[{"evaluatorId": evaluator["evaluatorId"]}],
        evaluationExecutionRoleArn=f"arn:aws:iam::{runtime_arn.split(':')[4]}:role/berth-bench-eval",
        enableOnCreate=True,
    )
    deadline = time.monotonic() + 60
    while True:
        got = control.get_online_evaluation_config(onlineEvaluationConfigId=config["onlineEvaluationConfigId"])
        if got["status"] == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise BrokenPath(f"B1e: the online evaluation config is {got['status']} after 60 s")
        time.sleep(0.2)


def b1e(bench: "Bench") -> None:
    from harness import Berth, BrokenPath, Figure, fmt, log, median, ms

    p = bench.plan
    judge = Judge()
    try:
        log("B1e: starting a berth server with online evaluation at 100% (judge double) beside B1's")
        server = Berth(bench.procs, bench.tools, bench.work, EVALUATED, warm_pool=1, isolation=bench.isolation,
                       extra=["--eval-model-provider", "openai", "--eval-model-base-url", f"{judge.url}/v1",
                              "--eval-model", JUDGE_MODEL, "--eval-tick-ms", "200", "--eval-minute-ms", "100"])
        package = bench.fast_package
        arn = server.deploy("bench_fast", package, "agent.py", {"BERTH_FAST_AGENT_THREADS": "1"}, timeout=300)
        _online_config(server, arn)
        bench.urls[EVALUATED] = server.invoke_url(arn)
        bench.sessions[EVALUATED] = f"bench-{EVALUATED}-{bench.sessions['berth'].rsplit('-', 1)[1]}"
        bench.check_path(EVALUATED)

        paths = ("berth", EVALUATED)
        round_s = p.b1_seconds + p.b1_warmup
        # The churn's warm-up covers the wait for the first judged session (the export grace, then
        # one compressed minute); its measured part outlasts the rounds a little.
        churn_warmup = 15
        churn_s = p.rounds * len(paths) * (round_s + 1) + 20
        churn = {x: subprocess.Popen(
            [str(bench.tools.bench), "rate", "--url", bench.urls[x], "--sign", "--new-session", "--body", "{}",
             "--rate", str(CHURN_PER_S), "--duration", str(churn_s), "--warmup", str(churn_warmup),
             "--connections", "4", "--timeout", "30", "--stop-each"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bench.tools.env(), stdin=subprocess.DEVNULL)
            for x in paths}
        finished = False
        try:
            log(f"B1e: churning {CHURN_PER_S:g} new sessions/s on both servers; waiting for the first judged session")
            deadline = time.monotonic() + churn_warmup + 10
            while not judge.calls:
                if time.monotonic() > deadline:
                    raise BrokenPath(f"B1e: online evaluation judged no session within {churn_warmup + 10} s; see {server.proc.log_path}")
                if any(c.poll() is not None for c in churn.values()):
                    raise BrokenPath("B1e: the session churn stopped early")
                time.sleep(0.2)
            rounds: dict[str, list[dict]] = {x: [] for x in paths}
            windows: dict[str, list[tuple[float, float]]] = {x: [] for x in paths}
            for r in range(p.rounds):
                for x in bench.order(r, paths):
                    start = time.monotonic() + p.b1_warmup
                    rep = bench.rate(x, p.b1_rate, p.b1_seconds, p.b1_warmup, 16)
                    if rep["errors"]:
                        raise BrokenPath(f"B1e {x}: {rep['errors']} errors: {rep['error_samples']}")
                    windows[x].append((start, time.monotonic()))
                    rounds[x].append(rep)
            if any(c.poll() is not None for c in churn.values()):
                raise BrokenPath("B1e: the session churn ended before the rounds did")
            finished = True
        finally:
            for c in churn.values():
                if not finished and c.poll() is None:
                    c.terminate()
            churned = {x: c.communicate(timeout=churn_s + churn_warmup + 60) for x, c in churn.items()}
    finally:
        judge.close()
    for x, (out, err) in churned.items():
        if churn[x].returncode != 0:
            raise BrokenPath(f"B1e: the session churn on {x} failed: {err.strip()[-1000:]}")
        rep = json.loads(out)
        if rep["errors"] or rep["sessions_stop_failed"]:
            raise BrokenPath(f"B1e: the session churn on {x}: {rep['errors']} errors, {rep['sessions_stop_failed']}"
                             f" stops failed: {rep['error_samples']}")
        churned[x] = rep

    med = {x: {q: median([ms(rep["latency"][q]) for rep in rounds[x]]) for q in ("p50", "p99")} for x in paths}
    added = med[EVALUATED]["p50"] - med["berth"]["p50"]
    judged = {x: sum(judge.calls_between(a, b) for a, b in windows[x]) for x in paths}
    measured_s = {x: sum(b - a for a, b in windows[x]) for x in paths}
    judged_total = judged["berth"] + judged[EVALUATED]
    bench.results.add(Figure(
        "B1e", "B1 with online evaluation scoring every session (100% sampling, LLM judge) vs off, p50",
        f"{'+' if added >= 0 else ''}{fmt(added)} ms ({fmt(med[EVALUATED]['p50'])} vs {fmt(med['berth']['p50'])} ms);"
        f" {judged_total} sessions judged while measuring",
        f"<= +{GOAL_ADDED_P50_MS} ms, with sessions judged meanwhile",
        added <= GOAL_ADDED_P50_MS and judged_total > 0))
    lines = [
        "## B1e: warm invocation latency with online evaluation on vs off",
        "",
        f"B1's measurement (open loop at {p.b1_rate:.0f} requests/s, {p.b1_seconds} s after {p.b1_warmup} s of warm-up,"
        f" 16 connections, the fast agent's warm session) against two servers alike but for one thing, {p.rounds}"
        " alternating rounds: `berth` has no online evaluation; `evaluated` has an online evaluation config at 100%"
        " sampling over the endpoint with an LLM judge evaluator (a model double in the harness, OpenAI chat"
        f" completions API, fixed verdict). Both get the same background churn of {CHURN_PER_S:g} new sessions/s"
        " (`berth-bench rate --new-session --stop-sessions`) for the whole measurement; on `evaluated` each finished"
        " session is read from the trace store, judged and stored as a score (`--eval-minute-ms 100` makes a"
        " session finished about 10 s after its last span: the export grace). Figures are medians of the rounds, ms.",
        "",
        "| server | p50 | p99 | rounds (p50 / p99) | judge calls by `evaluated` during these rounds |",
        "|---|---|---|---|---|",
    ]
    for x in paths:
        per = ", ".join(f"{fmt(ms(rep['latency']['p50']))}/{fmt(ms(rep['latency']['p99']))}" for rep in rounds[x])
        lines.append(f"| {x} | {fmt(med[x]['p50'])} | {fmt(med[x]['p99'])} | {per} |"
                     f" {judged[x]} in {measured_s[x]:.0f} s |")
    lines += [
        "",
        f"Online evaluation adds {'+' if added >= 0 else ''}{fmt(added)} ms at p50 and"
        f" {'+' if med[EVALUATED]['p99'] >= med['berth']['p99'] else ''}{fmt(med[EVALUATED]['p99'] - med['berth']['p99'])} ms"
        " at p99 (online evaluation runs as a task of the server, beside the proxy, reading the trace store: its cost"
        " is the CPU it shares, never a wait on the invocation path).",
        "",
        "Churn during the rounds: " + "; ".join(
            f"{x} {churned[x]['ok']} new sessions answered in its measured part, {churned[x]['sessions_stopped']} stopped in all"
            f" (p50 {fmt(ms(churned[x]['latency']['p50']), 1)} ms to a new session's answer)" for x in paths) + ".",
    ]
    bench.results.sections.append("\n".join(lines))
