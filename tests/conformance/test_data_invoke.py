"""InvokeAgentRuntime and StopRuntimeSession through boto3's `bedrock-agentcore` client.

The agent is agents/probe, an unmodified `BedrockAgentCoreApp` uploaded with boto3's `s3` client
and created with boto3 (the `probe` fixture). Every answer carries a token drawn when the agent
process started, so "same sandbox" means "same token" (pids inside PID namespaces repeat).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from urllib.parse import quote

import pytest
from berth_harness import (
    ACCOUNT,
    assert_status,
    deploy_agent,
    expect_error,
    invoke,
    invoke_json,
    live_session,
    new_session_id,
    poll,
    raw_request,
    read_sse,
    sandbox_id_of,
    wait_endpoint,
    wait_no_leftovers,
    wait_session_gone,
)
from botocore.exceptions import ClientError

pytestmark = pytest.mark.build

SESSION_HEADER = "x-amzn-bedrock-agentcore-runtime-session-id"


def test_json_answer_carries_the_session_and_reaches_the_agent(data, probe):
    session = new_session_id()
    resp = invoke(data, probe["agentRuntimeArn"], session, {"op": "whoami"})
    assert_status(resp, 200)
    assert resp["statusCode"] == 200
    assert resp["contentType"] == "application/json"
    assert resp["runtimeSessionId"] == session
    assert resp["ResponseMetadata"]["HTTPHeaders"][SESSION_HEADER] == session
    body = json.loads(resp["response"].read())
    # The agent saw the session id through the SDK's request context (the contract header).
    assert body["sessionId"] == session
    assert body["counter"] == 1
    # A sandbox runs the agent as an unprivileged user (nobody), not as root.
    assert body["uid"] != 0


CUSTOM_ALLOWED = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Flavour"
CUSTOM_OTHER = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Unlisted"


def headers_seen(client, runtime: dict, **kwargs) -> dict:
    """The request headers the agent received (lower-cased names)."""
    session = new_session_id("hdr")
    answer = invoke_json(client, runtime["agentRuntimeArn"], session, {"op": "headers"}, **kwargs)
    return answer["result"]


def test_contract_headers_reach_the_agent_and_the_caller_credentials_do_not(
    berth, control, s3, probe
):
    client = berth.client("bedrock-agentcore")

    def add_custom_headers(request, **_):
        request.headers[CUSTOM_ALLOWED] = "vanilla"
        request.headers[CUSTOM_OTHER] = "chocolate"

    client.meta.events.register(
        "before-sign.bedrock-agentcore.InvokeAgentRuntime", add_custom_headers
    )
    allowing = deploy_agent(
        control,
        s3,
        "probe",
        requestHeaderConfiguration={"requestHeaderAllowlist": [CUSTOM_ALLOWED]},
    )
    trace = {
        "traceId": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "traceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "traceState": "rojo=00f067aa0ba902b7",
        "baggage": "userId=alice,serverNode=DF%2028",
        "runtimeUserId": "alice",
    }
    seen = headers_seen(client, allowing, **trace)
    assert seen["x-amzn-trace-id"] == trace["traceId"]
    # The caller's trace continues through Berth's own invocation span, the agent's parent.
    version, trace_id, parent, flags = seen["traceparent"].split("-")
    assert [version, trace_id, flags] == ["00", "0af7651916cd43dd8448eb211c80319c", "01"]
    assert len(parent) == 16 and parent != "b7ad6b7169203331"
    assert seen["tracestate"] == trace["traceState"]
    # The caller's baggage is kept behind the session's id, which OTel SDKs copy onto spans.
    sid = seen.get("x-amzn-bedrock-agentcore-runtime-session-id", "")
    assert sid.startswith("hdr-")
    assert seen["baggage"] == f"session.id={sid},{trace['baggage']}"
    assert seen["x-amzn-bedrock-agentcore-runtime-user-id"] == "alice"
    assert seen.get("x-amzn-bedrock-agentcore-runtime-request-id")
    # Custom headers pass only when the runtime allow-lists them.
    assert seen[CUSTOM_ALLOWED.lower()] == "vanilla"
    assert CUSTOM_OTHER.lower() not in seen
    assert CUSTOM_ALLOWED.lower() not in headers_seen(client, probe)
    # The caller's SigV4 credentials never reach the agent.
    for name in ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"):
        assert name not in seen, (name, seen)


def test_sse_events_arrive_one_by_one_as_the_agent_writes_them(data, probe):
    count, interval = 6, 0.2
    resp = invoke(
        data,
        probe["agentRuntimeArn"],
        new_session_id(),
        {"op": "stream", "count": count, "interval": interval},
    )
    assert resp["statusCode"] == 200
    assert resp["contentType"].startswith("text/event-stream")
    events = read_sse(resp["response"], chunk_size=16)
    assert [event["index"] for _, event in events] == list(range(count))
    arrivals = [arrived for arrived, _ in events]
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    # The agent pauses `interval` between events: a relay that buffered the body would
    # deliver them together at the end. Require the gaps to show (allowing a loaded machine
    # to bunch some of them) and the stream to be spread over the agent's writing time.
    assert sum(gap >= interval / 2 for gap in gaps) >= (len(gaps) + 1) // 2, gaps
    assert arrivals[-1] - arrivals[0] >= interval * (count - 1) * 0.5, gaps


def test_same_session_reuses_its_sandbox_and_another_session_gets_its_own(data, probe):
    arn = probe["agentRuntimeArn"]
    first, second = new_session_id("one"), new_session_id("two")
    answers = [invoke_json(data, arn, first, {"op": "whoami"}) for _ in range(3)]
    assert {a["token"] for a in answers} == {answers[0]["token"]}
    assert [a["counter"] for a in answers] == [1, 2, 3]
    other = invoke_json(data, arn, second, {"op": "whoami"})
    assert other["token"] != answers[0]["token"]
    assert other["hostname"] != answers[0]["hostname"]
    assert other["counter"] == 1
    # The first session is still its own sandbox after the second one started.
    again = invoke_json(data, arn, first, {"op": "whoami"})
    assert (again["token"], again["counter"]) == (answers[0]["token"], 4)


def test_concurrent_first_invocations_of_one_session_share_one_sandbox(berth, probe):
    # Several requests racing to open the same new session must end up in one sandbox.
    session = new_session_id("race")
    client = berth.client("bedrock-agentcore", max_pool_connections=16)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: invoke_json(client, probe["agentRuntimeArn"], session, {}),
                range(8),
            )
        )
    assert len({a["token"] for a in answers}) == 1, answers
    assert sorted(a["counter"] for a in answers) == list(range(1, 9))


def test_runtime_id_with_account_id_and_qualifiers_resolve_like_the_arn(
    berth, control, data, probe
):
    runtime_id = probe["agentRuntimeId"]
    session = new_session_id("byid")
    by_arn = invoke_json(data, probe["agentRuntimeArn"], session, {})
    # The path may carry the bare runtime id with ?accountId= (the model allows both).
    resp = raw_request(
        berth.url,
        "POST",
        f"/runtimes/{quote(runtime_id, safe='')}/invocations",
        query=f"accountId={ACCOUNT}&qualifier=DEFAULT",
        body=b"{}",
        headers={SESSION_HEADER: session},
    )
    assert resp.status == 200, resp
    assert resp.headers[SESSION_HEADER] == session
    assert json.loads(resp.body)["token"] == by_arn["token"]

    # A named endpoint pinned to version 1 serves new sessions through ?qualifier=.
    control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name="pinned", agentRuntimeVersion="1"
    )
    wait_endpoint(control, runtime_id, "pinned", live_version="1")
    pinned_session = new_session_id("pin")
    invoke_json(data, probe["agentRuntimeArn"], pinned_session, {}, qualifier="pinned")
    listed = live_session(berth, runtime_id, pinned_session)
    assert listed is not None
    assert (listed["endpoint"], listed["version"]) == ("pinned", 1), listed


def test_missing_session_id_gets_a_generated_one(berth, probe):
    # boto3 always fills runtimeSessionId in (it is an idempotency token in the model), so
    # this goes around it with a raw signed request that has no session header.
    resp = raw_request(
        berth.url,
        "POST",
        f"/runtimes/{quote(probe['agentRuntimeArn'], safe='')}/invocations",
        body=json.dumps({"op": "whoami"}).encode(),
    )
    assert resp.status == 200, resp
    generated = resp.headers.get(SESSION_HEADER)
    assert generated and 33 <= len(generated) <= 256, generated
    assert json.loads(resp.body)["sessionId"] == generated


def test_stop_ends_the_session_and_the_same_id_gets_a_fresh_sandbox(berth, data, probe):
    arn = probe["agentRuntimeArn"]
    session = new_session_id("stop")
    before = invoke_json(data, arn, session, {"op": "whoami"})
    pid = live_session(berth, probe["agentRuntimeId"], session)["pid"]
    sandbox = sandbox_id_of(pid)

    resp = data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert_status(resp, 200)
    assert resp["runtimeSessionId"] == session
    assert live_session(berth, probe["agentRuntimeId"], session) is None
    wait_no_leftovers(berth, lambda sid: sid == sandbox, pids=[pid])

    after = invoke_json(data, arn, session, {"op": "whoami"})
    assert after["token"] != before["token"]
    assert after["counter"] == 1


def test_stop_of_an_unknown_session_is_not_found(data, probe):
    response = expect_error(
        data.stop_runtime_session,
        "ResourceNotFoundException",
        404,
        agentRuntimeArn=probe["agentRuntimeArn"],
        runtimeSessionId=new_session_id("never-opened"),
    )
    assert response["Error"]["Message"]


def test_stop_cuts_a_stream_in_flight(berth, data, probe):
    arn = probe["agentRuntimeArn"]
    session = new_session_id("cut")
    count = 200  # 40 s of events if nothing cut it
    resp = invoke(data, arn, session, {"op": "stream", "count": count, "interval": 0.2})
    assert resp["contentType"].startswith("text/event-stream")

    received: list = []
    outcome: dict = {}
    first = threading.Event()

    def read() -> None:
        pending = b""
        try:
            for chunk in resp["response"].iter_chunks(chunk_size=16):
                pending += chunk
                while b"\n\n" in pending:
                    frame, pending = pending.split(b"\n\n", 1)
                    received.append(frame)
                    first.set()
            outcome["ended"] = "eof"
        except Exception as err:  # the cut shows as a broken chunked body
            outcome["ended"] = f"error: {type(err).__name__}: {err}"
        finally:
            first.set()
            outcome["at"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(30), "no event arrived"
    stopped_at = time.monotonic()
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    reader.join(15)
    assert not reader.is_alive(), "the stream went on after StopRuntimeSession"
    assert "ended" in outcome
    events = [json.loads(f.split(b"data:", 1)[1]) for f in received if b"data:" in f]
    assert 1 <= len(events) < count, outcome
    assert outcome["at"] - stopped_at < 10, outcome
    # Whatever the last frame was, the agent did not get to finish its stream.
    assert not any(e.get("index") == count - 1 for e in events if isinstance(e, dict))
    assert live_session(berth, probe["agentRuntimeId"], session) is None


def test_sessions_of_a_deleted_runtime_end(berth, control, s3, data):
    runtime = deploy_agent(control, s3, "probe")
    session = new_session_id("gone")
    invoke_json(data, runtime["agentRuntimeArn"], session, {})
    control.delete_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])
    wait_session_gone(berth, runtime["agentRuntimeId"], session, timeout=30)

    def code():
        try:
            invoke(data, runtime["agentRuntimeArn"], session, {})
            return "answered"
        except ClientError as err:
            return err.response["Error"]["Code"]

    poll(code, lambda c: c == "ResourceNotFoundException", timeout=30, what="invoke to 404")
