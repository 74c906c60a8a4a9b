"""Every error path of the data plane and of builds, as boto3 sees it.

- requests Berth refuses: unknown runtime or qualifier (ResourceNotFoundException), a session
  id of the wrong length (ValidationException);
- agents that fail: crash while starting, never become healthy, answer something that is not
  HTTP, crash mid-request -> `RuntimeClientError` (424) with a reason; a crash mid-stream -> a
  final error event in the SSE stream;
- artifacts that cannot be built -> CREATE_FAILED/UPDATE_FAILED with a failureReason quoting the
  error; container images -> ValidationException.

Start-timeout cases run on the `berth_tight` server, whose start timeout is 10 s (short,
but long enough for a healthy agent to start on a loaded 2-core machine).
"""

from __future__ import annotations

import pytest
from berth_harness import (
    AGENTS_DIR,
    ROLE_ARN,
    code_artifact,
    deploy_agent,
    expect_error,
    expect_validation,
    invoke,
    invoke_json,
    live_session,
    new_session_id,
    read_sse,
    runtime_arn,
    runtime_sandboxes,
    unique_name,
    upload_artifact,
    wait_no_leftovers,
    wait_status,
    zip_files,
)

pytestmark = pytest.mark.build

#: The requirements every test agent uses (so these builds reuse the cached environment).
REQUIREMENTS = (AGENTS_DIR / "probe" / "requirements.txt").read_text()


def runtime_client_error(call, **kwargs) -> str:
    """Require RuntimeClientError (424) with a message; returns the message."""
    response = expect_error(call, "RuntimeClientError", 424, **kwargs)
    message = response["Error"].get("Message") or ""
    assert message, f"RuntimeClientError without a reason: {response}"
    return message


# ----------------------------------------------------------------------------- refused requests


def test_unknown_runtime_is_not_found(data):
    missing = runtime_arn("missing_runtime-0123456789")
    expect_error(
        invoke,
        "ResourceNotFoundException",
        404,
        data=data,
        runtime_arn=missing,
        session_id=new_session_id(),
        payload={},
    )
    expect_error(
        data.stop_runtime_session,
        "ResourceNotFoundException",
        404,
        agentRuntimeArn=missing,
        runtimeSessionId=new_session_id(),
    )


def test_unknown_qualifier_is_not_found(data, probe):
    expect_error(
        invoke,
        "ResourceNotFoundException",
        404,
        data=data,
        runtime_arn=probe["agentRuntimeArn"],
        session_id=new_session_id(),
        payload={},
        qualifier="no_such_endpoint",
    )
    # A version number that does not exist is not a qualifier either.
    expect_error(
        invoke,
        "ResourceNotFoundException",
        404,
        data=data,
        runtime_arn=probe["agentRuntimeArn"],
        session_id=new_session_id(),
        payload={},
        qualifier="99999",
    )


def test_unknown_qualifier_on_a_live_session_is_not_found(data, probe):
    # The session keeps its version, but a qualifier naming nothing is refused as for a new one
    # (found by the JavaScript suite: Berth used to serve it from the live session).
    session = new_session_id("live")
    first = invoke_json(data, probe["agentRuntimeArn"], session, {"op": "whoami"})
    expect_error(
        invoke,
        "ResourceNotFoundException",
        404,
        data=data,
        runtime_arn=probe["agentRuntimeArn"],
        session_id=session,
        payload={"op": "whoami"},
        qualifier="no_such_endpoint",
    )
    again = invoke_json(data, probe["agentRuntimeArn"], session, {"op": "whoami"}, qualifier="DEFAULT")
    assert again["token"] == first["token"] and again["counter"] == 2, (first, again)


@pytest.mark.parametrize("length", [32, 257])
def test_session_id_of_the_wrong_length_is_a_validation_error(data_unvalidated, probe, length):
    # botocore checks the 33..256 bound itself; with its validation off the server must too.
    expect_validation(
        invoke,
        "runtimeSessionId",
        data=data_unvalidated,
        runtime_arn=probe["agentRuntimeArn"],
        session_id="x" * length,
        payload={},
    )
    expect_validation(
        data_unvalidated.stop_runtime_session,
        "runtimeSessionId",
        agentRuntimeArn=probe["agentRuntimeArn"],
        runtimeSessionId="x" * length,
    )


# ----------------------------------------------------------------------------- agents that fail


def test_agent_crashing_on_start_is_a_runtime_client_error_quoting_its_output(
    berth, control, s3, data
):
    runtime = deploy_agent(control, s3, "crash_on_start")
    session = new_session_id("crash-start")
    message = runtime_client_error(
        invoke, data=data, runtime_arn=runtime["agentRuntimeArn"], session_id=session, payload={}
    )
    assert "berth-conformance-crash-on-start" in message, message
    assert live_session(berth, runtime["agentRuntimeId"], session) is None
    wait_no_leftovers(berth, runtime_sandboxes(runtime["agentRuntimeId"]))


def test_agent_answering_garbage_is_a_runtime_client_error(control, s3, data, probe):
    runtime = deploy_agent(control, s3, "garbage")
    runtime_client_error(
        invoke,
        data=data,
        runtime_arn=runtime["agentRuntimeArn"],
        session_id=new_session_id("garbage"),
        payload={"prompt": "hi"},
    )
    # Berth itself is unharmed and keeps serving other agents.
    assert invoke_json(data, probe["agentRuntimeArn"], new_session_id(), {})["op"] == "whoami"


@pytest.mark.parametrize(
    "agent, env, marker",
    [
        ("never_healthy", None, "berth-conformance-never-healthy"),
        # Speaks no HTTP at all, not even on /ping: indistinguishable from never healthy.
        ("garbage", {"GARBAGE_PING": "1"}, None),
    ],
    ids=["never-listens", "not-http"],
)
def test_agent_never_healthy_hits_the_start_timeout(berth_tight, agent, env, marker):
    control = berth_tight.client("bedrock-agentcore-control")
    data = berth_tight.client("bedrock-agentcore")
    extra = {"environmentVariables": env} if env else {}
    runtime = deploy_agent(control, berth_tight.s3_client(), agent, **extra)
    session = new_session_id("unhealthy")
    message = runtime_client_error(
        invoke, data=data, runtime_arn=runtime["agentRuntimeArn"], session_id=session, payload={}
    )
    assert "healthy" in message.lower(), message
    if marker:
        assert marker in message, message
    assert live_session(berth_tight, runtime["agentRuntimeId"], session) is None
    wait_no_leftovers(berth_tight, runtime_sandboxes(runtime["agentRuntimeId"]))


def test_agent_crashing_mid_request_is_a_runtime_client_error(berth, data, probe):
    session = new_session_id("exit")
    runtime_client_error(
        invoke,
        data=data,
        runtime_arn=probe["agentRuntimeArn"],
        session_id=session,
        payload={"op": "exit", "code": 9},
    )
    # The crashed sandbox is gone; the same id gets a fresh one that works.
    answer = invoke_json(data, probe["agentRuntimeArn"], session, {"op": "whoami"})
    assert answer["counter"] == 1


def test_agent_crashing_mid_stream_ends_the_stream_with_an_error_event(data, probe):
    resp = invoke(
        data, probe["agentRuntimeArn"], new_session_id("crash-stream"), {"op": "crash_stream"}
    )
    # Streaming had begun (status and headers sent), so the failure must arrive in-band.
    assert resp["statusCode"] == 200
    assert resp["contentType"].startswith("text/event-stream")
    events = [event for _, event in read_sse(resp["response"], chunk_size=16)]
    assert len(events) == 2, events
    assert events[0]["index"] == 0
    final = events[-1]
    assert isinstance(final, dict) and final.get("error"), events
    assert "index" not in final


def test_agent_error_status_is_a_runtime_client_error_naming_the_status(data, probe):
    # The SDK answers 500 when the entrypoint raises. AgentCore does not pass a non-2xx agent
    # answer through: the caller gets RuntimeClientError (424) "Received error (500) from
    # runtime. Please check your CloudWatch logs for more information" (AgentCore developer
    # guide, Troubleshooting: "I need help understanding HTTP error codes").
    message = runtime_client_error(
        invoke,
        data=data,
        runtime_arn=probe["agentRuntimeArn"],
        session_id=new_session_id("err"),
        payload={"op": "no-such-op"},
    )
    assert "500" in message, message


# ----------------------------------------------------------------------------- builds that fail


def create_failed(control, s3, body: bytes, entry_point: str = "agent.py", **config) -> str:
    """Create a runtime from `body` and wait for CREATE_FAILED; returns the failureReason."""
    location = upload_artifact(s3, body, "broken")
    created = control.create_agent_runtime(
        agentRuntimeName=unique_name("broken"),
        agentRuntimeArtifact=code_artifact(location, entryPoint=[entry_point], **config),
        roleArn=ROLE_ARN,
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    final = wait_status(control, created["agentRuntimeId"], "1", want=("CREATE_FAILED",))
    reason = final.get("failureReason")
    assert reason, final
    return reason


def test_broken_zip_fails_the_build_with_the_reason(control, s3):
    reason = create_failed(control, s3, b"PK\x03\x04 this is not really a zip archive")
    assert "zip" in reason.lower(), reason


def test_missing_entry_point_fails_the_build_naming_it(control, s3):
    body = zip_files({"agent.py": "print('hello')\n", "requirements.txt": REQUIREMENTS})
    reason = create_failed(control, s3, body, entry_point="missing_entry.py")
    assert "missing_entry.py" in reason, reason


def test_bad_requirement_fails_the_build_quoting_pip(control, s3):
    # An unparseable requirement: pip refuses it without touching the network.
    bad = "bedrock-agentcore ==> not a version !!\n"
    body = zip_files({"agent.py": "print('hello')\n", "requirements.txt": bad})
    reason = create_failed(control, s3, body)
    assert "not a version" in reason or "Invalid requirement" in reason, reason


def test_missing_interpreter_fails_the_build_instead_of_substituting(control, s3):
    body = zip_files({"agent.py": "print('hello')\n", "requirements.txt": REQUIREMENTS})
    reason = create_failed(control, s3, body, runtime="PYTHON_3_14")
    assert "3.14" in reason, reason


def test_broken_update_is_update_failed_and_the_last_good_version_keeps_serving(
    berth, control, s3, data
):
    runtime = deploy_agent(control, s3, "probe")
    runtime_id = runtime["agentRuntimeId"]
    broken = upload_artifact(s3, b"definitely not a zip", "broken")
    update = control.update_agent_runtime(
        agentRuntimeId=runtime_id,
        agentRuntimeArtifact=code_artifact(broken),
        roleArn=ROLE_ARN,
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    version = update["agentRuntimeVersion"]
    final = wait_status(control, runtime_id, version, want=("UPDATE_FAILED",))
    assert "zip" in (final.get("failureReason") or "").lower(), final
    # DEFAULT keeps its live version 1 (a failed version never goes live), so new sessions
    # are still served; version 1 is also reachable by number.
    session = new_session_id("v1")
    assert invoke_json(data, runtime["agentRuntimeArn"], session, {})["op"] == "whoami"
    assert live_session(berth, runtime["agentRuntimeId"], session)["version"] == 1
    by_number = invoke_json(
        data, runtime["agentRuntimeArn"], new_session_id("v1"), {}, qualifier="1"
    )
    assert by_number["op"] == "whoami"
