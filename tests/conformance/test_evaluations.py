"""AgentCore Evaluations on `berth serve`, driven by unmodified clients.

Acceptance (issue 15, 1): the AgentCore SDK's `EvaluationClient.run(...)`, pointed at Berth by the
endpoint variables only, scores a real agent's session (agents/strands_adot: a Strands agent with
a scripted model, run under ADOT, so its spans reach Berth's trace store and the SDK reads them
back through Berth's CloudWatch Logs API) with a built-in judge (`Builtin.Helpfulness`), a custom
`llmAsAJudge` evaluator created with boto3, and `Builtin.TrajectoryExactOrderMatch` against an
expected trajectory. The judge is a local model double (an OpenAI chat-completions server in this
module on 127.0.0.1:0) with fixed verdicts, which records the prompts it gets.

Also: boto3 CRUD of evaluators and online evaluation configs (statuses moving the way the SDK's
waiters expect, 404 after delete, ValidationException for bad input, the built-in catalogue in
ListEvaluators, paging, idempotency tokens, enable/disable).
"""

import json
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from berth_harness import (
    ACCESS_KEY_ID,
    BUILD_TIMEOUT,
    REGION,
    SECRET_ACCESS_KEY,
    STATE_TIMEOUT,
    assert_recent,
    assert_status,
    client_token,
    deploy_agent,
    expect_error,
    expect_validation,
    invoke_json,
    list_all,
    native,
    new_session_id,
    poll,
    unique_name,
    wait_not_found,
)

ROLE = "arn:aws:iam::123456789012:role/eval-role"
JUDGE_MODEL = "judge-double-v1"
CUSTOM_MARKER = "BERTH-CUSTOM-JUDGE"
#: Usage the judge double reports for every call.
JUDGE_USAGE = {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}


def judge_config(instructions: str, labels=(("Bad", 0.0), ("Good", 1.0))) -> dict:
    return {
        "llmAsAJudge": {
            "instructions": instructions,
            "ratingScale": {
                "numerical": [{"definition": f"The answer is {l.lower()}.", "value": v, "label": l} for l, v in labels]
            },
            "modelConfig": {"bedrockEvaluatorModelConfig": {"modelId": JUDGE_MODEL}},
        }
    }


def online_args(name: str, evaluators: list, **extra) -> dict:
    return {
        "onlineEvaluationConfigName": name,
        "rule": {
            "samplingConfig": {"samplingPercentage": 25.0},
            "filters": [{"key": "gen_ai.agent.name", "operator": "Equals", "value": {"stringValue": "scripted"}}],
            "sessionConfig": {"sessionTimeoutMinutes": 15},
        },
        "dataSourceConfig": {"cloudWatchLogs": {"logGroupNames": ["aws/spans"], "serviceNames": ["scripted.DEFAULT"]}},
        "evaluators": [{"evaluatorId": e} for e in evaluators],
        "evaluationExecutionRoleArn": ROLE,
        "enableOnCreate": True,
        **extra,
    }


def wait_active(get, **kwargs) -> dict:
    return poll(lambda: get(**kwargs), lambda r: r["status"] == "ACTIVE", timeout=STATE_TIMEOUT, what=f"ACTIVE {kwargs}")


# ---------------------------------------------------------------------------------------------
# CRUD with boto3 (the shared server)


def test_builtin_evaluators_resolve_and_are_listed(control):
    got = control.get_evaluator(evaluatorId="Builtin.Helpfulness")
    assert_status(got, 200)
    assert got["evaluatorArn"] == "arn:aws:bedrock-agentcore:::evaluator/Builtin.Helpfulness"
    assert got["evaluatorType"] == "Builtin" and got["lockedForModification"] is True
    assert got["level"] in ("SESSION", "TRACE", "TOOL_CALL") and got["status"] == "ACTIVE"
    assert "llmAsAJudge" in got["evaluatorConfig"], got["evaluatorConfig"]
    trajectory = control.get_evaluator(evaluatorId="Builtin.TrajectoryExactOrderMatch")
    assert trajectory["level"] == "SESSION"

    pages = list_all(control.list_evaluators, "evaluators", page_size=4)
    ids = [e["evaluatorId"] for page in pages for e in page]
    assert len(ids) == len(set(ids)), ids
    for b in ("Builtin.Helpfulness", "Builtin.Correctness", "Builtin.TrajectoryExactOrderMatch",
              "Builtin.TrajectoryInOrderMatch", "Builtin.TrajectoryAnyOrderMatch"):
        assert b in ids, ids
    builtins = [e for page in pages for e in page if e["evaluatorId"].startswith("Builtin.")]
    assert all(e["evaluatorType"] == "Builtin" and e["lockedForModification"] for e in builtins)

    expect_error(control.get_evaluator, "ResourceNotFoundException", 404, evaluatorId="Builtin.NoSuchThing")
    expect_error(control.delete_evaluator, "AccessDeniedException", 403, evaluatorId="Builtin.Helpfulness")
    expect_error(control.update_evaluator, "AccessDeniedException", 403, evaluatorId="Builtin.Helpfulness",
                 description="mine now")


def test_evaluator_create_get_update_list_delete(control):
    name = unique_name("judge")
    token = client_token()
    created = control.create_evaluator(
        evaluatorName=name, description="first", level="SESSION", clientToken=token,
        evaluatorConfig=judge_config("Is the answer good? {context}"), tags={"team": "eval"},
    )
    assert_status(created, 202)
    eid = created["evaluatorId"]
    assert eid.startswith(f"{name}-") and len(eid) == len(name) + 11, eid
    assert created["evaluatorArn"] == f"arn:aws:bedrock-agentcore:{REGION}:123456789012:evaluator/{eid}" or \
        created["evaluatorArn"].endswith(f":evaluator/{eid}")
    assert created["status"] == "CREATING"
    assert_recent(created["createdAt"])
    # The same token and request: the same answer, no second evaluator.
    again = control.create_evaluator(
        evaluatorName=name, description="first", level="SESSION", clientToken=token,
        evaluatorConfig=judge_config("Is the answer good? {context}"), tags={"team": "eval"},
    )
    assert again["evaluatorId"] == eid
    # The same token, another request.
    refused = expect_error(control.create_evaluator, "ValidationException", 400, evaluatorName=name,
                           level="TRACE", clientToken=token, evaluatorConfig=judge_config("x"))
    assert refused["reason"] == "IdempotentParameterMismatchException", refused
    # The name is taken.
    expect_error(control.create_evaluator, "ConflictException", 409, evaluatorName=name, level="TRACE",
                 evaluatorConfig=judge_config("x"))

    got = wait_active(control.get_evaluator, evaluatorId=eid)
    assert got["evaluatorName"] == name and got["description"] == "first"
    assert got["evaluatorType"] == "Custom" and got["provider"] == "Custom"
    assert got["lockedForModification"] is False and got["level"] == "SESSION"
    assert got["evaluatorConfig"] == judge_config("Is the answer good? {context}")
    metadata = control.get_evaluator(evaluatorId=eid, includedData="METADATA_ONLY")
    assert metadata["evaluatorConfig"]["llmAsAJudge"]["instructions"] == ""

    updated = control.update_evaluator(evaluatorId=eid, description="second", level="TRACE")
    assert_status(updated, 202)
    assert updated["status"] == "UPDATING" and updated["evaluatorId"] == eid
    got = wait_active(control.get_evaluator, evaluatorId=eid)
    assert (got["description"], got["level"]) == ("second", "TRACE")
    assert got["updatedAt"] >= got["createdAt"]

    listed = [e for page in list_all(control.list_evaluators, "evaluators") for e in page]
    mine = [e for e in listed if e["evaluatorId"] == eid]
    assert len(mine) == 1 and mine[0]["evaluatorType"] == "Custom" and mine[0]["status"] == "ACTIVE", mine

    deleted = control.delete_evaluator(evaluatorId=eid)
    assert_status(deleted, 202)
    assert deleted["status"] == "DELETING" and deleted["evaluatorId"] == eid
    wait_not_found(control.get_evaluator, evaluatorId=eid)
    expect_error(control.delete_evaluator, "ResourceNotFoundException", 404, evaluatorId=eid)
    expect_error(control.update_evaluator, "ResourceNotFoundException", 404, evaluatorId=eid, description="x")


def test_evaluators_page_past_the_builtins(control):
    made = []
    for i in range(3):
        r = control.create_evaluator(evaluatorName=unique_name(f"page{i}"), level="TRACE",
                                     evaluatorConfig=judge_config(f"judge {i}"))
        made.append(r["evaluatorId"])
    for size in (1, 2, 5, 100):
        ids = [e["evaluatorId"] for page in list_all(control.list_evaluators, "evaluators", page_size=size) for e in page]
        assert len(ids) == len(set(ids)), (size, ids)
        positions = [ids.index(m) for m in made]
        assert positions == sorted(positions), (size, ids)
        # Built-ins first.
        first_custom = min(i for i, e in enumerate(ids) if not e.startswith("Builtin."))
        assert all(e.startswith("Builtin.") for e in ids[:first_custom])
    expect_validation(control.list_evaluators, "nextToken", nextToken="not-a-token")
    for m in made:
        control.delete_evaluator(evaluatorId=m)


def test_evaluator_bad_input_is_refused(control, control_unvalidated):
    ok = judge_config("judge")
    expect_validation(control_unvalidated.create_evaluator, "evaluatorName", evaluatorName="9bad",
                      level="SESSION", evaluatorConfig=ok)
    expect_validation(control_unvalidated.create_evaluator, "level", evaluatorName=unique_name("lvl"),
                      level="PARAGRAPH", evaluatorConfig=ok)
    # A union with two members, and one with none.
    both = {**ok, "codeBased": {"lambdaConfig": {"lambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}}}
    expect_validation(control_unvalidated.create_evaluator, "evaluatorConfig", evaluatorName=unique_name("two"),
                      level="SESSION", evaluatorConfig=both)
    expect_validation(control_unvalidated.create_evaluator, None, evaluatorName=unique_name("none"),
                      level="SESSION", evaluatorConfig={})
    expect_validation(control.create_evaluator, "instructions", evaluatorName=unique_name("empty"),
                      level="SESSION", evaluatorConfig=judge_config("  "))
    expect_validation(control.create_evaluator, "ratingScale", evaluatorName=unique_name("dup"),
                      level="SESSION", evaluatorConfig=judge_config("j", labels=(("Same", 0.0), ("Same", 1.0))))
    expect_validation(control_unvalidated.create_evaluator, "lambdaArn", evaluatorName=unique_name("code"),
                      level="SESSION", evaluatorConfig={"codeBased": {"lambdaConfig": {"lambdaArn": "not-an-arn"}}})
    derived = {"derived": {"baseEvaluatorId": "Builtin.NoSuchThing",
                           "modelConfig": {"bedrockEvaluatorModelConfig": {"modelId": "m"}}}}
    expect_validation(control.create_evaluator, "baseEvaluatorId", evaluatorName=unique_name("derived"),
                      level="SESSION", evaluatorConfig=derived)
    # A derived evaluator of a built-in judge is fine, and shows its type.
    derived["derived"]["baseEvaluatorId"] = "Builtin.Helpfulness"
    made = control.create_evaluator(evaluatorName=unique_name("derived"), level="TRACE", evaluatorConfig=derived)
    got = wait_active(control.get_evaluator, evaluatorId=made["evaluatorId"])
    assert got["evaluatorType"] == "CustomDerived"
    control.delete_evaluator(evaluatorId=made["evaluatorId"])


def test_online_evaluation_config_lifecycle(control, control_unvalidated):
    judge = control.create_evaluator(evaluatorName=unique_name("online_judge"), level="SESSION",
                                     evaluatorConfig=judge_config("judge"))["evaluatorId"]
    name = unique_name("online")
    created = control.create_online_evaluation_config(
        **online_args(name, ["Builtin.Helpfulness", judge]), description="watch it", clientToken=client_token(),
    )
    assert_status(created, 202)
    cid = created["onlineEvaluationConfigId"]
    assert cid.startswith(f"{name}-"), cid
    assert created["onlineEvaluationConfigArn"].endswith(f":online-evaluation-config/{cid}")
    assert (created["status"], created["executionStatus"]) == ("CREATING", "ENABLED")

    got = wait_active(control.get_online_evaluation_config, onlineEvaluationConfigId=cid)
    assert got["onlineEvaluationConfigName"] == name and got["description"] == "watch it"
    assert got["rule"] == online_args(name, [])["rule"]
    assert got["dataSourceConfig"] == online_args(name, [])["dataSourceConfig"]
    assert got["evaluators"] == [{"evaluatorId": "Builtin.Helpfulness"}, {"evaluatorId": judge}]
    assert got["evaluationExecutionRoleArn"] == ROLE and got["executionStatus"] == "ENABLED"
    assert_recent(got["createdAt"])

    # Disable, then enable again.
    off = control.update_online_evaluation_config(onlineEvaluationConfigId=cid, executionStatus="DISABLED")
    assert_status(off, 202)
    assert (off["status"], off["executionStatus"]) == ("UPDATING", "DISABLED")
    got = wait_active(control.get_online_evaluation_config, onlineEvaluationConfigId=cid)
    assert got["executionStatus"] == "DISABLED"
    control.update_online_evaluation_config(
        onlineEvaluationConfigId=cid, executionStatus="ENABLED",
        rule={"samplingConfig": {"samplingPercentage": 100.0}},
    )
    got = wait_active(control.get_online_evaluation_config, onlineEvaluationConfigId=cid)
    assert got["executionStatus"] == "ENABLED" and got["rule"] == {"samplingConfig": {"samplingPercentage": 100.0}}

    # A config that is not enabled on create.
    quiet = control.create_online_evaluation_config(**{**online_args(unique_name("quiet"), [judge]),
                                                        "enableOnCreate": False})
    assert quiet["executionStatus"] == "DISABLED"
    qid = quiet["onlineEvaluationConfigId"]

    # Listing and paging.
    pages = list_all(control.list_online_evaluation_configs, "onlineEvaluationConfigs", page_size=1)
    ids = [c["onlineEvaluationConfigId"] for page in pages for c in page]
    assert ids.index(cid) < ids.index(qid), ids
    summary = next(c for page in pages for c in page if c["onlineEvaluationConfigId"] == cid)
    assert summary["onlineEvaluationConfigName"] == name and summary["executionStatus"] == "ENABLED"

    # An evaluator in use is not deleted.
    expect_error(control.delete_evaluator, "ConflictException", 409, evaluatorId=judge)

    # Bad input.
    expect_validation(control.create_online_evaluation_config, "evaluatorId",
                      **online_args(unique_name("ghost"), ["ghost-0123456789"]))
    expect_validation(control_unvalidated.create_online_evaluation_config, "samplingPercentage",
                      **{**online_args(unique_name("many"), [judge]),
                         "rule": {"samplingConfig": {"samplingPercentage": 150.0}}})
    bad_filter = online_args(unique_name("filter"), [judge])
    bad_filter["rule"]["filters"] = [{"key": "latency", "operator": "GreaterThan", "value": {"stringValue": "x"}}]
    expect_validation(control.create_online_evaluation_config, "filters", **bad_filter)
    expect_validation(control_unvalidated.create_online_evaluation_config, "serviceNames",
                      **{**online_args(unique_name("svc"), [judge]),
                         "dataSourceConfig": {"cloudWatchLogs": {"serviceNames": ["a", "b"]}}})
    expect_validation(control.create_online_evaluation_config, "evaluators", **online_args(unique_name("empty"), []))
    expect_error(control.create_online_evaluation_config, "ConflictException", 409, **online_args(name, [judge]))

    for c in (cid, qid):
        deleted = control.delete_online_evaluation_config(onlineEvaluationConfigId=c)
        assert_status(deleted, 202)
        assert deleted["status"] == "DELETING"
        wait_not_found(control.get_online_evaluation_config, onlineEvaluationConfigId=c)
    expect_error(control.get_online_evaluation_config, "ResourceNotFoundException", 404, onlineEvaluationConfigId=cid)
    # Now the evaluator is free to go.
    control.delete_evaluator(evaluatorId=judge)
    wait_not_found(control.get_evaluator, evaluatorId=judge)


# ---------------------------------------------------------------------------------------------
# EvaluationClient.run against a real agent's session


class JudgeDouble:
    """An OpenAI chat-completions server with fixed verdicts; records every request."""

    def __init__(self):
        self.requests: list = []
        #: The label the double gives Builtin.Helpfulness (set from its rating scale).
        self.helpful = None
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                double.requests.append({"path": self.path, "body": body})
                prompt = "\n".join(str(m.get("content")) for m in body.get("messages", []))
                if CUSTOM_MARKER in prompt:
                    verdict = {"label": "Good", "explanation": "custom: the agent used the add tool"}
                else:
                    verdict = {"label": double.helpful, "explanation": "helpful: it answered the sum"}
                answer = {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(datetime.now(timezone.utc).timestamp()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": json.dumps(verdict)}}],
                    "usage": JUDGE_USAGE,
                }
                out = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def prompts(self) -> list:
        return ["\n".join(str(m.get("content")) for m in r["body"]["messages"]) for r in self.requests]


@pytest.fixture(scope="module")
def judge():
    double = JudgeDouble()
    yield double
    double.close()


@pytest.fixture(scope="module")
def server(module_server, judge):
    return module_server(
        "evaluations",
        args=("--eval-model-provider", "openai", "--eval-model-url", judge.url, "--eval-model", JUDGE_MODEL),
    )


@pytest.fixture(scope="module")
def session(server) -> dict:
    """agents/strands_adot under ADOT, one session of two turns: `add` then `broken`."""
    control, s3, data = server.client("bedrock-agentcore-control"), server.s3_client(), server.client("bedrock-agentcore")
    rt = deploy_agent(control, s3, "strands_adot", entry_point=["opentelemetry-instrument", "agent.py"],
                      timeout=max(BUILD_TIMEOUT, 600))
    sid = new_session_id("eval")
    assert invoke_json(data, rt["agentRuntimeArn"], sid, {"prompt": "add 2 and 3"}) == {"answer": "the tool said 5"}
    out = invoke_json(data, rt["agentRuntimeArn"], sid, {"prompt": "use the broken tool"})
    assert out["answer"].startswith("the tool said Error"), out

    def spans():
        resp = native(server, "GET", f"/berth/v1/traces/sessions/{sid}")
        assert resp.status == 200, resp
        return resp.json()["spans"]

    def complete(spans):
        ops = [s["attributes"].get("gen_ai.operation.name") for s in spans]
        return ops.count("invoke_agent") == 2 and ops.count("execute_tool") == 2 and ops.count("chat") == 4

    stored = poll(spans, complete, timeout=STATE_TIMEOUT, what=f"the spans of {sid}")
    traces = []
    for s in sorted(stored, key=lambda s: s["startTimeUnixNano"]):
        if s["attributes"].get("gen_ai.operation.name") == "invoke_agent" and s["traceId"] not in traces:
            traces.append(s["traceId"])
    return {"runtimeId": rt["agentRuntimeId"], "sessionId": sid, "traces": traces}


@pytest.fixture
def sdk_env(monkeypatch, server):
    """The SDK's clients point at Berth through the endpoint variables only."""
    for var in ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
                "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"):
        monkeypatch.setenv(var, server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.mark.build
@pytest.mark.timeout(900)
def test_evaluation_client_run_scores_a_real_session(server, judge, session, sdk_env):
    from bedrock_agentcore.evaluation.client import EvaluationClient, ReferenceInputs

    control = server.client("bedrock-agentcore-control")
    helpfulness = control.get_evaluator(evaluatorId="Builtin.Helpfulness")
    scale = helpfulness["evaluatorConfig"]["llmAsAJudge"]["ratingScale"]["numerical"]
    best = max(scale, key=lambda d: d["value"])
    judge.helpful = best["label"]
    custom = control.create_evaluator(
        evaluatorName=unique_name("custom_judge"), level="SESSION",
        evaluatorConfig=judge_config(f"{CUSTOM_MARKER}: did the agent use its tools well?"),
    )["evaluatorId"]
    wait_active(control.get_evaluator, evaluatorId=custom)

    client = EvaluationClient(region_name=REGION)
    sid, traces = session["sessionId"], session["traces"]
    assert len(traces) == 2, traces

    # 1. The built-in judge: one result per trace (TRACE) or one for the session.
    results = client.run(evaluator_ids=["Builtin.Helpfulness"], session_id=sid, agent_id=session["runtimeId"])
    if helpfulness["level"] == "TRACE":
        assert sorted(r["context"]["spanContext"].get("traceId") for r in results) == sorted(traces), results
    else:
        assert len(results) == 1, results
    for r in results:
        assert r["evaluatorId"] == "Builtin.Helpfulness", r
        assert r["evaluatorArn"] == "arn:aws:bedrock-agentcore:::evaluator/Builtin.Helpfulness"
        assert r["context"]["spanContext"]["sessionId"] == sid
        assert (r["label"], r["value"]) == (best["label"], best["value"]), r
        assert r["explanation"] == "helpful: it answered the sum", r
        assert r["tokenUsage"] == {"inputTokens": 321, "outputTokens": 12, "totalTokens": 333}, r
        assert "errorCode" not in r, r
    # The judge saw the agent's answer, and was asked for the configured model.
    assert any("the tool said 5" in p for p in judge.prompts()), judge.prompts()
    assert all(r["body"]["model"] == JUDGE_MODEL for r in judge.requests)

    # 2. The custom judge: SESSION, one result, the custom instructions in the prompt.
    before = len(judge.requests)
    results = client.run(evaluator_ids=[custom], session_id=sid, agent_id=session["runtimeId"])
    assert len(results) == 1, results
    r = results[0]
    assert (r["evaluatorId"], r["label"], r["value"]) == (custom, "Good", 1.0), r
    assert r["explanation"] == "custom: the agent used the add tool"
    assert r["context"]["spanContext"]["sessionId"] == sid and "traceId" not in r["context"]["spanContext"]
    assert r["tokenUsage"]["totalTokens"] == 333
    new_prompts = judge.prompts()[before:]
    assert len(new_prompts) == 1 and CUSTOM_MARKER in new_prompts[0], new_prompts

    # 3. The trajectory: pass with the tools in their order, fail otherwise; no judge call.
    before = len(judge.requests)
    passed = client.run(evaluator_ids=["Builtin.TrajectoryExactOrderMatch"], session_id=sid,
                        agent_id=session["runtimeId"],
                        reference_inputs=ReferenceInputs(expected_trajectory=["add", "broken"]))
    failed = client.run(evaluator_ids=["Builtin.TrajectoryExactOrderMatch"], session_id=sid,
                        agent_id=session["runtimeId"],
                        reference_inputs=ReferenceInputs(expected_trajectory=["broken", "add"]))
    assert len(passed) == 1 and len(failed) == 1, (passed, failed)
    assert passed[0]["value"] == 1.0 and failed[0]["value"] == 0.0, (passed, failed)
    assert passed[0]["label"] != failed[0]["label"], (passed, failed)
    assert passed[0]["context"]["spanContext"]["sessionId"] == sid
    assert len(judge.requests) == before, "a deterministic evaluator called the judge"

    # All three in one run.
    results = client.run(evaluator_ids=["Builtin.Helpfulness", custom, "Builtin.TrajectoryExactOrderMatch"],
                         session_id=sid, agent_id=session["runtimeId"],
                         reference_inputs=ReferenceInputs(expected_trajectory=["add", "broken"]))
    by = {}
    for r in results:
        by.setdefault(r["evaluatorId"], []).append(r)
    assert set(by) == {"Builtin.Helpfulness", custom, "Builtin.TrajectoryExactOrderMatch"}, results
    assert len(by[custom]) == 1 and by["Builtin.TrajectoryExactOrderMatch"][0]["value"] == 1.0
