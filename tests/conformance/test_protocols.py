"""protocolConfiguration (issue 13 item 5): MCP and A2A agents through boto3, unmodified.

- an MCP server written with the official `mcp` SDK (FastMCP, streamable HTTP, stateful) on the
  MCP defaults (port 8000, path `/mcp`): `initialize` returns an `Mcp-Session-Id` that boto3
  sees as `mcpSessionId`; `tools/list` and `tools/call` work with it sent back (`mcpSessionId`,
  `mcpProtocolVersion`, `mcpMethod`, `mcpName` are forwarded); an SSE answer (progress
  notifications) streams event by event; the agent has no `/ping` and is still healthy; the same
  server stateless answers plain JSON without a session;
- an A2A agent (the bedrock-agentcore SDK's `serve_a2a`, a2a-sdk 0.3) on the A2A defaults
  (port 9000, path `/`): a JSON-RPC `message/send` passes unmodified and is answered;
  `get_agent_card` returns the agent's card, which advertises `AGENTCORE_RUNTIME_URL`;
- an AG-UI agent (the SDK's `AGUIApp`) on the AG-UI defaults (8080, `/invocations`) streams its
  run's events over SSE;
- the configuration is validated (8443 reserved, the model's port range and path pattern) and
  echoed back on GetAgentRuntime.
"""

from __future__ import annotations

import json

import pytest

from berth_harness import (
    agent_zip,
    deploy_agent,
    expect_validation,
    invoke,
    new_session_id,
    runtime_args,
    unique_name,
    upload_artifact,
)

ACCEPT = "application/json, text/event-stream"
MCP_VERSION = "2025-06-18"


def rpc(method: str, params: dict | None = None, id_: int | None = 1) -> dict:
    msg = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        msg["id"] = id_
    if params is not None:
        msg["params"] = params
    return msg


def sse_events(body) -> list:
    """The JSON `data:` events of an SSE body, in order. The MCP SDK (sse-starlette) ends lines
    with CRLF, which SSE allows and Berth passes through unchanged."""
    events, pending = [], b""
    for chunk in body.iter_chunks(chunk_size=64):
        pending += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in pending:
            frame, pending = pending.split(b"\n\n", 1)
            data = [line[5:].lstrip() for line in frame.split(b"\n") if line.startswith(b"data:")]
            if data:
                events.append(json.loads(b"\n".join(data)))
    assert not pending.strip(), f"stream ended inside an event: {pending!r}"
    return events


def mcp_answer(resp) -> list:
    """The JSON-RPC messages of an MCP answer (JSON, or SSE events in order)."""
    assert resp["statusCode"] in (200, 202), resp
    if resp["contentType"].startswith("text/event-stream"):
        return sse_events(resp["response"])
    body = resp["response"].read()
    return [json.loads(body)] if body.strip() else []


@pytest.fixture(scope="module")
def mcp_runtime(control, s3):
    return deploy_agent(control, s3, "mcp_server", name=unique_name("mcp"),
                        protocolConfiguration={"serverProtocol": "MCP"})


@pytest.fixture(scope="module")
def a2a_runtime(control, s3):
    return deploy_agent(control, s3, "a2a_server", name=unique_name("a2a"),
                        protocolConfiguration={"serverProtocol": "A2A"})


def test_mcp_server_lists_and_calls_tools_through_invoke(data, mcp_runtime):
    arn, sid = mcp_runtime["agentRuntimeArn"], new_session_id("mcp")
    assert mcp_runtime["protocolConfiguration"] == {"serverProtocol": "MCP"}
    init = invoke(data, arn, sid, rpc("initialize", {
        "protocolVersion": MCP_VERSION, "capabilities": {},
        "clientInfo": {"name": "berth-conformance", "version": "1"}}),
        accept=ACCEPT, contentType="application/json")
    mcp_sid = init.get("mcpSessionId")
    assert mcp_sid, init["ResponseMetadata"]["HTTPHeaders"]
    [answer] = mcp_answer(init)
    assert answer["result"]["serverInfo"]["name"] == "berth-conformance-mcp"
    headers = {"accept": ACCEPT, "contentType": "application/json", "mcpSessionId": mcp_sid,
               "mcpProtocolVersion": MCP_VERSION}
    done = invoke(data, arn, sid, rpc("notifications/initialized", id_=None), **headers)
    assert done["statusCode"] == 202, done

    listed = mcp_answer(invoke(data, arn, sid, rpc("tools/list", id_=2), mcpMethod="tools/list",
                               **headers))
    names = sorted(t["name"] for t in listed[-1]["result"]["tools"])
    assert names == ["add", "countdown", "whoami"]

    called = mcp_answer(invoke(data, arn, sid,
                               rpc("tools/call", {"name": "add", "arguments": {"a": 2, "b": 40}}, 3),
                               mcpMethod="tools/call", mcpName="add", **headers))
    result = called[-1]["result"]
    assert result["isError"] is False
    assert result["content"][0]["text"] == "42"

    # The MCP and session headers reach the server.
    who = mcp_answer(invoke(data, arn, sid, rpc("tools/call", {"name": "whoami", "arguments": {}}, 4),
                            mcpMethod="tools/call", mcpName="whoami", **headers))
    seen = json.loads(who[-1]["result"]["content"][0]["text"])
    assert seen == {"runtimeSessionId": sid, "mcpMethod": "tools/call", "mcpName": "whoami"}

    # Without the session id the stateful server refuses (400, which AgentCore reports as
    # RuntimeClientError): the id sent above really travelled.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as refused:
        invoke(data, arn, sid, rpc("tools/list", id_=5), accept=ACCEPT,
               contentType="application/json")
    assert refused.value.response["Error"]["Code"] == "RuntimeClientError"
    assert "Missing session ID" in refused.value.response["Error"]["Message"]


def test_mcp_progress_streams_as_sse_events(data, mcp_runtime):
    arn, sid = mcp_runtime["agentRuntimeArn"], new_session_id("mcps")
    init = invoke(data, arn, sid, rpc("initialize", {
        "protocolVersion": MCP_VERSION, "capabilities": {},
        "clientInfo": {"name": "berth-conformance", "version": "1"}}),
        accept=ACCEPT, contentType="application/json")
    headers = {"accept": ACCEPT, "contentType": "application/json",
               "mcpSessionId": init["mcpSessionId"], "mcpProtocolVersion": MCP_VERSION}
    mcp_answer(init)
    invoke(data, arn, sid, rpc("notifications/initialized", id_=None), **headers)
    resp = invoke(data, arn, sid, rpc("tools/call", {
        "name": "countdown", "arguments": {"n": 3}, "_meta": {"progressToken": "p1"}}, 7),
        **headers)
    assert resp["contentType"].startswith("text/event-stream"), resp["contentType"]
    events = mcp_answer(resp)
    progress = [e["params"]["progress"] for e in events
                if e.get("method") == "notifications/progress"]
    assert progress == [1, 2, 3]
    assert events[-1]["result"]["content"][0]["text"] == "done after 3"


def test_stateless_mcp_server_answers_json_without_a_session(control, data, s3):
    rt = deploy_agent(control, s3, "mcp_server", name=unique_name("mcpsl"),
                      protocolConfiguration={"serverProtocol": "MCP", "path": "/mcp"},
                      environmentVariables={"MCP_STATELESS": "1"})
    arn, sid = rt["agentRuntimeArn"], new_session_id("mcpsl")
    resp = invoke(data, arn, sid, rpc("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}),
                  accept=ACCEPT, contentType="application/json", mcpProtocolVersion=MCP_VERSION)
    assert resp["contentType"].startswith("application/json"), resp["contentType"]
    assert "mcpSessionId" not in resp
    [answer] = mcp_answer(resp)
    assert answer["result"]["content"][0]["text"] == "3"


def test_a2a_agent_answers_json_rpc_and_its_card(data, a2a_runtime):
    arn, sid = a2a_runtime["agentRuntimeArn"], new_session_id("a2a")
    request = {"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {
        "message": {"role": "user", "messageId": "m-1",
                    "parts": [{"kind": "text", "text": "hello berth"}]}}}
    resp = invoke(data, arn, sid, request, contentType="application/json",
                  accept="application/json")
    assert resp["statusCode"] == 200, resp
    answer = json.loads(resp["response"].read())
    assert answer["id"] == "req-1" and "error" not in answer, answer
    texts = [p.get("text") for p in answer["result"]["parts"]]
    assert texts == ["echo: hello berth"]

    card = data.get_agent_card(agentRuntimeArn=arn, runtimeSessionId=sid)
    assert card["statusCode"] == 200
    assert card["runtimeSessionId"] == sid
    doc = card["agentCard"]
    assert doc["name"] and doc["capabilities"]["streaming"] is True
    # The SDK advertises AGENTCORE_RUNTIME_URL, which Berth sets to this runtime's invocations.
    assert doc["url"].endswith(f"/runtimes/{a2a_runtime['agentRuntimeId']}/invocations/"), doc


def test_agui_agent_streams_its_events(control, data, s3):
    rt = deploy_agent(control, s3, "agui_server", name=unique_name("agui"),
                      protocolConfiguration={"serverProtocol": "AGUI"})
    run = {"threadId": "t-1", "runId": "r-1", "state": {}, "tools": [], "context": [],
           "forwardedProps": {}, "messages": [{"id": "m-1", "role": "user", "content": "hi"}]}
    resp = invoke(data, rt["agentRuntimeArn"], new_session_id("agui"), run,
                  contentType="application/json", accept="text/event-stream")
    assert resp["statusCode"] == 200, resp
    assert resp["contentType"].startswith("text/event-stream"), resp["contentType"]
    events = sse_events(resp["response"])
    assert [e["type"] for e in events] == [
        "RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END", "RUN_FINISHED"]
    assert "".join(e.get("delta", "") for e in events) == "echo: hi"
    assert events[0]["threadId"] == "t-1"


def test_get_agent_card_of_an_unknown_runtime_is_not_found(data):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        data.get_agent_card(agentRuntimeArn="nope-0123456789", runtimeSessionId=new_session_id())
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("config, field", [
    ({"serverProtocol": "MCP", "port": 8443}, "port"),
    ({"serverProtocol": "HTTP", "port": 7999}, "port"),
    ({"serverProtocol": "A2A", "port": 12001}, "port"),
    ({"serverProtocol": "HTTP", "path": "no-slash"}, "path"),
    # Berth-specific: its own API answers on 8750 inside the sandbox.
    ({"serverProtocol": "HTTP", "port": 8750}, "port"),
])
def test_protocol_configuration_is_validated(control_unvalidated, s3, config, field):
    location = upload_artifact(s3, agent_zip("probe"), "probe")
    expect_validation(control_unvalidated.create_agent_runtime, field,
                      **runtime_args(location, unique_name("proto"), protocolConfiguration=config))


def test_http_agent_on_a_configured_port(control, data, s3):
    """HTTP on port 9090: Berth gives the agent PORT=9090 and forwards there."""
    rt = deploy_agent(control, s3, "probe", name=unique_name("port"),
                      protocolConfiguration={"serverProtocol": "HTTP", "port": 9090})
    assert rt["protocolConfiguration"] == {"serverProtocol": "HTTP", "port": 9090}
    resp = invoke(data, rt["agentRuntimeArn"], new_session_id("port"), {"op": "whoami"})
    assert resp["statusCode"] == 200
