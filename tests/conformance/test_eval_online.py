"""Acceptance (issue 15, 3 and 4): online evaluation closes the loop.

A Strands agent under ADOT (agents/strands_adot, a scripted model, no network) runs in three
versions: 1 and 3 answer correctly, 2 answers quickly, without errors, and wrongly
(`SCRIPTED_FAILS=1`: "I could not compute that."). The judge is a local model double speaking
the OpenAI chat-completions API: it reads the judge prompt Berth sends and answers a fixed
verdict, "Incorrect" when the agent's answer is the wrong one (or always, once the drift test
turns it sour), "Correct" otherwise.

- A rollout from 1 to 2 gated on the judge's score (`--eval EVALUATOR>=0.7`) is aborted by the
  evaluation signal with no operator action, its reason naming the evaluator and the lowest-scored
  traces; the same rollout from 1 to 3 walks to 100%.
- Drift: the same version's scores drop (the judge turns sour), the drift watch raises an alert
  (audit `DriftDetected`, the webhook) and, auto-rollback being on, the endpoint returns to its
  previous version.

Time is compressed by configuration (`--rollout-second-ms`, `--eval-minute-ms`: a session
timeout of one minute is 200 ms), never by sleeping; the tests poll the state they wait for.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from berth_harness import (
    BUILD_TIMEOUT,
    STATE_TIMEOUT,
    agent_zip,
    deploy_agent,
    invoke_json,
    native,
    new_session_id,
    poll,
    run_cli,
    unique_name,
    update_args,
    upload_artifact,
    wait_endpoint,
    wait_status,
)

pytestmark = pytest.mark.build

ENTRY = ["opentelemetry-instrument", "agent.py"]
JUDGE_MODEL = "judge-double-v1"
WRONG = "I could not compute that."
#: "by-content" judges the agent's answer; "sour" scores everything Incorrect.
JUDGE = {"mode": "by-content", "prompts": 0}
ALERTS: list = []


class _Judge(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        if self.path.endswith("/alerts"):
            ALERTS.append(body)
            self._send({"ok": True})
            return
        prompt = json.dumps(body.get("messages", []))
        JUDGE["prompts"] += 1
        bad = JUDGE["mode"] == "sour" or WRONG in prompt
        verdict = {
            "label": "Incorrect" if bad else "Correct",
            "explanation": "the answer does not add up" if bad else "the answer is right",
        }
        self._send({
            "id": "chatcmpl-judge",
            "object": "chat.completion",
            "model": body.get("model", JUDGE_MODEL),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": json.dumps(verdict)},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        })

    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def judge():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(module_server, judge):
    return module_server(
        "evalonline",
        args=(
            "--eval-model-provider", "openai",
            "--eval-model-base-url", f"{judge}/v1",
            "--eval-model", JUDGE_MODEL,
            "--eval-tick-ms", "100",
            "--eval-minute-ms", "200",
            "--rollout-second-ms", "20",
            "--traffic-tick-ms", "50",
            "--health-bucket-ms", "100",
            "--drift-min-drop", "0.5",
            "--drift-min-count", "3",
            "--drift-auto-rollback", "true",
            "--drift-webhook", f"{judge}/alerts",
        ),
    )


@pytest.fixture(scope="module")
def agent(server) -> dict:
    """The runtime with versions 1 (right), 2 (wrong) and 3 (right); returns ids."""
    control, s3 = server.client("bedrock-agentcore-control"), server.s3_client()
    first = deploy_agent(
        control, s3, "strands_adot", entry_point=ENTRY, timeout=max(BUILD_TIMEOUT, 600),
        environmentVariables={"SCRIPTED_FAILS": "0"},
    )
    rid = first["agentRuntimeId"]
    location = upload_artifact(s3, agent_zip("strands_adot"), "strands_adot")
    for number, fails in ((2, "1"), (3, "0")):
        args = update_args(location, environmentVariables={"SCRIPTED_FAILS": fails})
        args["agentRuntimeArtifact"]["codeConfiguration"]["entryPoint"] = ENTRY
        control.update_agent_runtime(agentRuntimeId=rid, **args)
        wait_status(control, rid, str(number), timeout=max(BUILD_TIMEOUT, 600))
    evaluator = control.create_evaluator(
        evaluatorName=unique_name("answer_judge"),
        level="SESSION",
        evaluatorConfig={"llmAsAJudge": {
            "instructions": "Judge whether the agent's final answer is correct. {context}",
            "ratingScale": {"numerical": [
                {"value": 0.0, "label": "Incorrect", "definition": "wrong or missing"},
                {"value": 1.0, "label": "Correct", "definition": "right"},
            ]},
            "modelConfig": {"bedrockEvaluatorModelConfig": {"modelId": JUDGE_MODEL}},
        }},
    )
    poll(
        lambda: control.get_evaluator(evaluatorId=evaluator["evaluatorId"]),
        lambda e: e["status"] == "ACTIVE",
        timeout=STATE_TIMEOUT,
        what="the evaluator",
    )
    return {
        "runtimeId": rid,
        "arn": first["agentRuntimeArn"],
        "name": first["agentRuntimeName"],
        "evaluatorId": evaluator["evaluatorId"],
    }


def endpoint(server, agent, name: str, version: str) -> str:
    control = server.client("bedrock-agentcore-control")
    control.create_agent_runtime_endpoint(
        agentRuntimeId=agent["runtimeId"], name=name, agentRuntimeVersion=version
    )
    wait_endpoint(control, agent["runtimeId"], name, live_version=version)
    return name


def online_config(server, agent, endpoint_name: str) -> str:
    """An online evaluation config scoring every session of the endpoint with the judge, a
    session being finished after one (compressed) minute of quiet."""
    control = server.client("bedrock-agentcore-control")
    rid = agent["runtimeId"]
    created = control.create_online_evaluation_config(
        onlineEvaluationConfigName=unique_name("online"),
        rule={
            "samplingConfig": {"samplingPercentage": 100.0},
            "sessionConfig": {"sessionTimeoutMinutes": 1},
        },
        dataSourceConfig={"cloudWatchLogs": {
            "logGroupNames": [f"/aws/bedrock-agentcore/runtimes/{rid}-{endpoint_name}"],
            "serviceNames": [f"{agent['name']}.{endpoint_name}"],
        }},
        evaluators=[{"evaluatorId": agent["evaluatorId"]}],
        evaluationExecutionRoleArn="arn:aws:iam::123456789012:role/eval",
        enableOnCreate=True,
    )
    cid = created["onlineEvaluationConfigId"]
    poll(
        lambda: control.get_online_evaluation_config(onlineEvaluationConfigId=cid),
        lambda c: c["status"] == "ACTIVE",
        timeout=STATE_TIMEOUT,
        what="the online evaluation config",
    )
    return cid


#: Sessions still running: (started, arn, session, qualifier).
OPEN: list = []
#: ADOT exports an agent's spans every 5 s; a session stopped sooner would lose them.
EXPORTED_AFTER_S = 8.0


def one_session(server, agent, qualifier: str) -> str:
    """One session of one turn through `qualifier`. Sessions are stopped (their sandboxes freed)
    once their agent has had time to export its spans."""
    data = server.client("bedrock-agentcore")
    sid = new_session_id("eval")
    out = invoke_json(data, agent["arn"], sid, {"prompt": "add 2 and 3"}, qualifier=qualifier)
    assert "answer" in out, out
    OPEN.append((time.monotonic(), agent["arn"], sid, qualifier))
    while OPEN and time.monotonic() - OPEN[0][0] > EXPORTED_AFTER_S:
        _, arn, old, q = OPEN.pop(0)
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=old, qualifier=q)
    return sid


def rollout(server, rid: str, ep: str) -> dict:
    resp = native(server, "GET", f"/berth/v1/runtimes/{rid}/endpoints/{ep}/rollouts")
    assert resp.status == 200, resp
    return resp.json()["rollout"]


def drive(server, agent, ep: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = rollout(server, agent["runtimeId"], ep)
        if status["state"] in ("COMPLETED", "ABORTED"):
            return status
        assert time.monotonic() < deadline, f"rollout did not end in {timeout} s: {status}"
        one_session(server, agent, ep)


def start_rollout(server, agent, ep: str, to: str):
    run_cli(
        server, "rollout", "start", agent["runtimeId"], "--endpoint", ep, "--to-version", to,
        "--steps", "50,100", "--interval", "5", "--min-invocations", "2",
        "--max-error-rate", "0.2",
        "--eval", f"{agent['evaluatorId']}>=0.7", "--min-scored", "3",
    )


def test_a_wrong_but_healthy_canary_is_aborted_by_its_evaluation_scores(server, agent):
    ep = endpoint(server, agent, "quality", "1")
    online_config(server, agent, ep)
    start_rollout(server, agent, ep, "2")
    final = drive(server, agent, ep)
    assert final["state"] == "ABORTED", json.dumps(final, indent=1)
    reason = final["reason"]
    assert f"evaluation: {agent['evaluatorId']}: mean score 0.000" in reason, reason
    assert "lowest scored: session " in reason, reason
    # The evidence names real sessions of the canary (the judge scores whole sessions).
    evidence = reason.split("lowest scored: ")[1].split(", ")
    session = evidence[0].removeprefix("session ")
    spans = native(server, "GET", f"/berth/v1/traces/sessions/{session}").json()["spans"]
    assert spans and {s["version"] for s in spans} == {2}, spans
    assert any(WRONG in json.dumps(s["events"]) for s in spans), "the canary's wrong answer is in its spans"
    # The canary answered every call without an error: only quality stopped it.
    assert final["analysis"]["canary"]["errors"] == 0, final["analysis"]
    control = server.client("bedrock-agentcore-control")
    e = control.get_agent_runtime_endpoint(agentRuntimeId=agent["runtimeId"], endpointName=ep)
    assert (e["liveVersion"], e["targetVersion"]) == ("1", "1")


def test_a_canary_the_judge_scores_well_walks_to_100_percent(server, agent):
    ep = endpoint(server, agent, "quality_ok", "1")
    online_config(server, agent, ep)
    start_rollout(server, agent, ep, "3")
    final = drive(server, agent, ep)
    assert final["state"] == "COMPLETED", json.dumps(final, indent=1)
    signals = {s["signal"]: s["result"] for s in final["analysis"]["signals"]}
    assert signals["evaluation"] == {"verdict": "PASS"}, signals
    control = server.client("bedrock-agentcore-control")
    e = control.get_agent_runtime_endpoint(agentRuntimeId=agent["runtimeId"], endpointName=ep)
    assert (e["liveVersion"], e["targetVersion"]) == ("3", "3")


def scored(server, agent, ep: str, version: int) -> list:
    resp = native(
        server, "GET", f"/berth/v1/runtimes/{agent['runtimeId']}/endpoints/{ep}/experiment",
    )
    assert resp.status == 200, resp
    return [
        v for e in resp.json()["evaluators"] if e["evaluatorId"] == agent["evaluatorId"]
        for v in e["versions"] if v["version"] == version
    ]


def test_drift_of_the_same_version_alerts_and_rolls_the_endpoint_back(server, agent):
    control = server.client("bedrock-agentcore-control")
    rid = agent["runtimeId"]
    # The endpoint served 3, then 1: 3 is the version a rollback returns to.
    ep = endpoint(server, agent, "drifting", "3")
    control.update_agent_runtime_endpoint(agentRuntimeId=rid, endpointName=ep, agentRuntimeVersion="1")
    wait_endpoint(control, rid, ep, live_version="1")
    online_config(server, agent, ep)
    try:
        for _ in range(3):
            one_session(server, agent, ep)
        poll(lambda: scored(server, agent, ep, 1), lambda v: v and v[0]["n"] >= 3,
             timeout=STATE_TIMEOUT, what="the baseline scores")
        JUDGE["mode"] = "sour"
        for _ in range(3):
            one_session(server, agent, ep)
        alert = poll(lambda: list(ALERTS), lambda a: a, timeout=STATE_TIMEOUT, what="the drift alert")[0]
    finally:
        JUDGE["mode"] = "by-content"
    assert (alert["runtimeId"], alert["endpoint"], alert["version"]) == (rid, ep, 1), alert
    assert alert["evaluatorId"] == agent["evaluatorId"]
    assert alert["drift"]["verdict"] == "DRIFT" and alert["drift"]["drop"] == pytest.approx(1.0), alert
    e = poll(
        lambda: control.get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName=ep),
        lambda e: e["liveVersion"] == "3",
        timeout=STATE_TIMEOUT,
        what="the rollback",
    )
    assert e["targetVersion"] == "3"
    resp = native(server, "GET", "/berth/v1/audit", query=f"resource={rid}&limit=1000")
    assert resp.status == 200, resp
    actions = [(a["action"], a["actor"]) for a in resp.json()["entries"] if a["resource"].endswith(f"/{ep}")]
    assert ("DriftDetected", "drift-watch") in actions, actions
    assert ("rollback", "drift-watch") in actions, actions


def test_berth_eval_gates_a_version_before_it_gets_traffic(server, agent, tmp_path):
    """`berth eval`: a dataset against one version by its number, scored through Evaluate by a
    deterministic evaluator and the judge; exit 0 above the floors, 1 under them."""
    dataset = tmp_path / "scenarios.jsonl"
    dataset.write_text("\n".join(json.dumps({
        "scenario_id": f"add-{i}",
        "turns": [{"input": "add 2 and 3", "expected_response": "the tool said 5"}],
        "expected_trajectory": ["add"],
    }) for i in range(2)) + "\n")

    def gate(version: str):
        return run_cli(
            server, "eval", agent["runtimeId"], "--version", version, "--dataset", str(dataset),
            "--evaluator", "Builtin.TrajectoryExactOrderMatch>=1",
            "--evaluator", f"{agent['evaluatorId']}>=0.7",
            "--settle-timeout", "60", "--timeout", "600", "--json",
            timeout=700,
        )

    good = gate("1")
    assert good.returncode == 0, (good.stdout, good.stderr)
    report = json.loads(good.stdout)
    assert report["pass"] and report["scenarios"] == 2, report
    by_id = {e["evaluatorId"]: e for e in report["evaluators"]}
    assert by_id["Builtin.TrajectoryExactOrderMatch"]["scored"] == 2
    assert by_id["Builtin.TrajectoryExactOrderMatch"]["mean"] == 1.0
    assert by_id[agent["evaluatorId"]]["mean"] == 1.0

    # Version 2 calls the same tool (the trajectory passes) but answers wrongly: the judge fails it.
    bad = gate("2")
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    report = json.loads(bad.stdout)
    assert not report["pass"], report
    by_id = {e["evaluatorId"]: e for e in report["evaluators"]}
    assert by_id["Builtin.TrajectoryExactOrderMatch"]["pass"] is True, by_id
    assert by_id[agent["evaluatorId"]]["mean"] == 0.0 and by_id[agent["evaluatorId"]]["pass"] is False
