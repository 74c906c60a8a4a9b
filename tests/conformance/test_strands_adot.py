"""Acceptance (issue 14, 1): a Strands agent with a scripted local model (agents/strands_adot:
no network, fixed tool calls and usage numbers), deployed unmodified and run under ADOT
(`entryPoint = ["opentelemetry-instrument", "agent.py"]`, aws-opentelemetry-distro 0.21.0 in
the agent's own requirements, which Berth's builder installs).

Covered: its `invoke_agent`, `chat` and `execute_tool` spans land in the trace store in the same
trace as Berth's `InvokeAgentRuntime` span (ADOT's Starlette server span continues the
`traceparent` Berth hands the agent); ADOT copies the `session.id` baggage onto them; the token
usage and tool calls (one of them failing) show per version in `GET /berth/v1/usage` (grouped by
version, session and model, priced by `--model-prices`) and `berth usage`, and in Prometheus;
`berth traces show TRACE` draws the tree. `/berth/v1/usage` is authorised as `berth:GetUsage`
and validates its query.
"""

import json
import re

import pytest

from berth_harness import (
    BUILD_TIMEOUT,
    access_key_allowing,
    STATE_TIMEOUT,
    agent_zip,
    deploy_agent,
    invoke_json,
    native,
    new_session_id,
    poll,
    raw_request,
    run_cli,
    update_args,
    upload_artifact,
    wait_status,
)

pytestmark = pytest.mark.build

MODEL = "scripted-model-v1"
#: USD per million tokens: input, output, cache read, cache write.
PRICE = (3.0, 15.0, 0.3, 3.75)
#: What one turn of the scripted model reports (agents/strands_adot/agent.py): a tool call
#: (100 in, 20 out, 40 cache read) and an answer (150 in, 10 out).
TURN = {"modelCalls": 2, "inputTokens": 250, "outputTokens": 30, "totalTokens": 280, "cacheReadTokens": 40}
ENTRY = ["opentelemetry-instrument", "agent.py"]


@pytest.fixture(scope="module")
def server(module_server):
    return module_server("strands", args=("--model-prices", f"{MODEL}={'/'.join(map(str, PRICE))}"))


@pytest.fixture(scope="module")
def strands(server) -> dict:
    """agents/strands_adot deployed as the starter toolkit deploys code for AgentCore (under
    `opentelemetry-instrument`), with a second version of the same code; returns the first
    version's GetAgentRuntime response."""
    control, s3 = server.client("bedrock-agentcore-control"), server.s3_client()
    first = deploy_agent(control, s3, "strands_adot", entry_point=ENTRY, timeout=max(BUILD_TIMEOUT, 600))
    location = upload_artifact(s3, agent_zip("strands_adot"), "strands_adot")
    args = update_args(location)
    args["agentRuntimeArtifact"]["codeConfiguration"]["entryPoint"] = ENTRY
    control.update_agent_runtime(agentRuntimeId=first["agentRuntimeId"], **args)
    wait_status(control, first["agentRuntimeId"], "2", timeout=max(BUILD_TIMEOUT, 600))
    return first


def session_spans(server, session: str) -> list:
    resp = native(server, "GET", f"/berth/v1/traces/sessions/{session}")
    assert resp.status == 200, resp
    return resp.json()["spans"]


def spans_of_turn(server, session: str) -> list:
    """The session's spans once Berth's span and the agent's three kinds are all stored (ADOT's
    batch processor exports on its own schedule; Berth's span sink writes in the background)."""

    def complete(spans):
        kinds = {s["attributes"].get("gen_ai.operation.name") for s in spans}
        return {"invoke_agent", "chat", "execute_tool"} <= kinds and any(
            s["name"] == "InvokeAgentRuntime" for s in spans
        ) and sum(1 for s in spans if s["name"] == "chat") == 2

    return poll(lambda: session_spans(server, session), complete, timeout=STATE_TIMEOUT, what=f"the spans of {session}")


def usage(server, **query) -> list:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    resp = native(server, "GET", "/berth/v1/usage", query=q)
    assert resp.status == 200, resp
    return resp.json()["usage"]


def cost(turns: int, cache_read: int) -> float:
    p_in, p_out, p_cr, _ = PRICE
    return (turns * 250 * p_in + turns * 30 * p_out + cache_read * p_cr) / 1e6


def test_strands_spans_usage_and_tools_under_adot(server, strands):
    data = server.client("bedrock-agentcore")
    arn, rid = strands["agentRuntimeArn"], strands["agentRuntimeId"]
    good, bad, later = new_session_id("strands-a"), new_session_id("strands-b"), new_session_id("strands-c")
    out = invoke_json(data, arn, good, {"prompt": "add 2 and 3"}, runtimeUserId="alice", qualifier="1")
    assert out == {"answer": "the tool said 5"}, out
    out = invoke_json(data, arn, bad, {"prompt": "use the broken tool"}, runtimeUserId="bob", qualifier="1")
    assert out["answer"].startswith("the tool said Error"), out
    out = invoke_json(data, arn, later, {"prompt": "add 2 and 3"}, runtimeUserId="alice", qualifier="2")
    assert out == {"answer": "the tool said 5"}, out

    # 1. The agent's spans are in Berth's trace, under Berth's span.
    spans = spans_of_turn(server, good)
    berths = [s for s in spans if s["name"] == "InvokeAgentRuntime"]
    assert len(berths) == 1, [s["name"] for s in spans]
    trace_id = berths[0]["traceId"]
    turn = [s for s in spans if s["traceId"] == trace_id]
    by_id = {s["spanId"]: s for s in turn}
    ops = [s["attributes"].get("gen_ai.operation.name") for s in turn]
    assert ops.count("invoke_agent") == 1 and ops.count("chat") == 2 and ops.count("execute_tool") == 1, ops
    agent = next(s for s in turn if s["attributes"].get("gen_ai.operation.name") == "invoke_agent")

    def ancestors(span):
        while span.get("parentSpanId") in by_id:
            span = by_id[span["parentSpanId"]]
            yield span

    assert berths[0]["spanId"] in [a["spanId"] for a in ancestors(agent)], "invoke_agent is not under Berth's span"
    for s in turn:
        if s["name"] == "InvokeAgentRuntime":
            continue
        # Attributed by the sandbox's listener; ADOT copied the session.id baggage.
        assert (s["runtimeId"], s["version"], s["sessionId"], s["actor"]) == (rid, 1, good, "alice"), s
        assert s["attributes"].get("session.id") == good, s
    chats = [s for s in turn if s["name"] == "chat"]
    assert sorted(c["attributes"]["gen_ai.usage.input_tokens"] for c in chats) == [100, 150]
    assert all(c["scope"] == "strands.telemetry.tracer" for c in chats)
    assert agent["resource"].get("aws.service.type") == "gen_ai_agent", agent["resource"]
    tool = next(s for s in turn if s["name"].startswith("execute_tool"))
    assert tool["attributes"]["gen_ai.tool.name"] == "add"

    # The waterfall: Berth's span at the root, the agent's below it.
    shown = run_cli(server, "traces", "show", trace_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"trace {trace_id}"
    assert lines[1].startswith("InvokeAgentRuntime "), shown.stdout
    # Each line is the span's name indented by its depth (a dict keeps the last of a name).
    depth = {l.strip().split(" ")[0]: len(l) - len(l.lstrip()) for l in lines[1:]}
    assert depth["invoke_agent"] > 0 and depth["chat"] > depth["invoke_agent"], shown.stdout
    assert depth["execute_tool"] > depth["invoke_agent"], shown.stdout

    # 2. Usage per version (the other sessions' spans too, once stored).
    spans_of_turn(server, bad)
    spans_of_turn(server, later)
    by_version = {u["version"]: u for u in usage(server, runtime=rid, groupBy="version")}
    assert set(by_version) == {1, 2}, by_version
    v1, v2 = by_version[1], by_version[2]
    for key, n in TURN.items():
        assert v1[key] == 2 * n, (key, v1)
        assert v2[key] == n, (key, v2)
    assert (v1["toolCalls"], v1["toolErrors"]) == (2, 1), v1
    assert (v2["toolCalls"], v2["toolErrors"]) == (1, 0), v2
    assert v1["costUsd"] == pytest.approx(cost(2, 80)) and v1["unpricedTokens"] == 0, v1
    assert v2["costUsd"] == pytest.approx(cost(1, 40)), v2

    # Per session, per actor, per model, and a filter.
    by_session = {u["sessionId"]: u for u in usage(server, runtime=rid, groupBy="session")}
    assert by_session[bad]["toolErrors"] == 1 and by_session[good]["toolErrors"] == 0
    assert by_session[later]["inputTokens"] == 250
    alice = usage(server, runtime=rid, actor="alice", groupBy="actor")
    assert [(u["actor"], u["modelCalls"]) for u in alice] == [("alice", 4)]
    models = {u["model"]: u for u in usage(server, runtime=rid, groupBy="model")}
    assert models[MODEL]["modelCalls"] == 6 and models[""]["toolCalls"] == 3, models

    # The CLI.
    done = run_cli(server, "usage", "--runtime", rid, "--group-by", "version", "--json")
    assert done.returncode == 0, done.stderr
    assert [(u["version"], u["inputTokens"]) for u in json.loads(done.stdout)] == [(1, 500), (2, 250)]
    table = run_cli(server, "usage", "--runtime", rid, "--group-by", "version")
    assert table.returncode == 0, table.stderr
    assert re.search(r"\b1\b.*\b500\b.*\b60\b", table.stdout), table.stdout

    # 3. Prometheus (the signed /berth/v1/metrics; the same text as /metrics).
    resp = native(server, "GET", "/berth/v1/metrics")
    assert resp.status == 200, resp
    text = resp.body.decode()
    l1 = f'runtime_id="{rid}",version="1"'
    for line in [
        f'berth_genai_tokens_total{{{l1},model="{MODEL}",type="input"}} 500',
        f'berth_genai_tokens_total{{{l1},model="{MODEL}",type="output"}} 60',
        f'berth_genai_tokens_total{{{l1},model="{MODEL}",type="cache_read"}} 80',
        f'berth_genai_model_calls_total{{{l1},model="{MODEL}"}} 4',
        f"berth_genai_tool_calls_total{{{l1}}} 2",
        f"berth_genai_tool_errors_total{{{l1}}} 1",
    ]:
        assert line in text.splitlines(), (line, [t for t in text.splitlines() if "genai" in t])
    costs = re.findall(rf'^berth_genai_cost_usd_total{{{re.escape(l1)},model="{MODEL}"}} (\S+)$', text, re.M)
    assert costs and float(costs[0]) == pytest.approx(cost(2, 80)), costs
    # ActiveSessionCount: both version 1 sessions are still live (idle for less than 15 minutes).
    live = re.findall(rf'^berth_active_sessions{{runtime_id="{rid}",endpoint="[^"]+",version="1"}} (\d+)$', text, re.M)
    assert sum(map(int, live)) == 2, [t for t in text.splitlines() if "active" in t]


def test_usage_is_authorised_as_its_own_action_and_validated(server):
    # A key allowed to read traces but not usage is refused; one allowed GetUsage reads it.
    for action, status in (("berth:GetTraces", 403), ("berth:GetUsage", 200)):
        key, secret = access_key_allowing(server, action)
        resp = raw_request(server.url, "GET", "/berth/v1/usage", access_key=key, secret_key=secret)
        assert resp.status == status, (action, resp)
    unsigned = raw_request(server.url, "GET", "/berth/v1/usage", sign=False)
    assert unsigned.status == 403, unsigned
    for query in ("groupBy=day", "sesion=typo", "sinceMs=yesterday"):
        resp = native(server, "GET", "/berth/v1/usage", query=query)
        assert resp.status == 400 and resp.error_type == "ValidationException", (query, resp)
