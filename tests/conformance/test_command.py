"""InvokeAgentRuntimeCommand through boto3 (`invoke_agent_runtime_command`) and `berth exec`.

The command runs as `/bin/sh -c` next to the session's agent (agents/probe): in the session
InvokeAgentRuntime uses (started by the command when it is not live), with the agent's files,
environment and uid; its output comes back as event-stream frames that botocore's own parser
decodes: `contentStart`, `contentDelta` (stdout/stderr), `contentStop` (exitCode, status).
"""

from __future__ import annotations

import uuid

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    REGION,
    access_key_allowing,
    expect_validation,
    invoke_json,
    live_session,
    native,
    new_session_id,
    poll,
    run_cli,
)

pytestmark = pytest.mark.build


def run(data, arn: str, session: str, command: str, **kwargs) -> tuple[list, dict]:
    """Runs a command; returns (the stream's events in order, the response without the stream)."""
    resp = data.invoke_agent_runtime_command(
        agentRuntimeArn=arn,
        runtimeSessionId=session,
        body={"command": command, **kwargs},
    )
    events = [event["chunk"] for event in resp["stream"]]
    return events, resp


def outputs(events: list) -> tuple[str, str, list]:
    """Concatenated stdout, stderr, and the order of the streams' deltas ("o"/"e" per delta)."""
    out, err, order = "", "", []
    for e in events:
        delta = e.get("contentDelta")
        if delta is None:
            continue
        if "stdout" in delta:
            out += delta["stdout"]
            order.append("o")
        if "stderr" in delta:
            err += delta["stderr"]
            order.append("e")
    return out, err, order


def test_streams_stdout_and_stderr_and_reports_the_exit_code(data, probe):
    arn, session = probe["agentRuntimeArn"], new_session_id("cmd")
    events, resp = run(
        data, arn, session, "echo one; echo two >&2; printf 'three\\n'; exit 7"
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["runtimeSessionId"] == session
    assert resp["contentType"] == "application/vnd.amazon.eventstream"
    assert events[0] == {"contentStart": {}}
    assert events[-1] == {"contentStop": {"exitCode": 7, "status": "COMPLETED"}}
    assert all("contentDelta" in e for e in events[1:-1]), events
    out, err, _ = outputs(events)
    assert out == "one\nthree\n"
    assert err == "two\n"


def test_each_stream_keeps_its_order(data, probe):
    arn, session = probe["agentRuntimeArn"], new_session_id("cmd")
    script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done"
    events, _ = run(data, arn, session, script)
    out, err, order = outputs(events)
    assert out == "".join(f"out{i}\n" for i in range(1, 201))
    assert err == "".join(f"err{i}\n" for i in range(1, 201))
    assert "o" in order and "e" in order
    assert events[-1] == {"contentStop": {"exitCode": 0, "status": "COMPLETED"}}


def test_timeout_kills_the_command_and_says_timed_out(data, probe):
    arn, session = probe["agentRuntimeArn"], new_session_id("cmd")
    # The background child is in the command's process group and dies with it.
    events, _ = run(
        data, arn, session, "echo before; sleep 600 & sleep 600; echo after", timeout=1
    )
    out, _, _ = outputs(events)
    assert out == "before\n"
    stop = events[-1]["contentStop"]
    assert stop["status"] == "TIMED_OUT"
    assert isinstance(stop["exitCode"], int) and stop["exitCode"] != 0
    # Nothing of the command is left in the session (SIGKILLed processes may take a moment to
    # be gone from /proc, hence the poll).
    poll(
        lambda: invoke_json(data, arn, session, {"op": "procs"})["result"],
        lambda procs: not [p for p in procs if "sleep 600" in p["cmdline"]],
        timeout=30,
        what="the timed-out command's processes to be gone",
    )


def test_the_command_shares_the_sessions_files_environment_and_uid(data, probe, berth):
    arn, session = probe["agentRuntimeArn"], new_session_id("cmd")
    secret = f"secret-{uuid.uuid4().hex}"
    me = invoke_json(data, arn, session, {"op": "whoami"})
    path = f"/tmp/{secret}"
    written = invoke_json(data, arn, session, {"op": "write", "path": path, "content": secret})
    assert written["result"]["ok"], written
    events, _ = run(data, arn, session, f'cat {path}; echo; echo "$HOME"; id -u')
    out, err, _ = outputs(events)
    assert err == ""
    assert out.split("\n")[:3] == [secret, me["home"], str(me["uid"])]
    # The command can write where the agent reads.
    events, _ = run(data, arn, session, f"echo from-command > {path}.2")
    assert events[-1]["contentStop"]["exitCode"] == 0
    read = invoke_json(data, arn, session, {"op": "read", "path": f"{path}.2"})
    assert read["result"] == {"ok": True, "value": "from-command\n"}
    # Another session of the same runtime does not see the file.
    events, _ = run(data, arn, new_session_id("other"), f"cat {path}")
    out, err, _ = outputs(events)
    assert secret not in out
    assert "No such file" in err
    assert events[-1]["contentStop"]["exitCode"] != 0


def test_a_command_starts_the_session_invoke_then_uses(data, probe, berth):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    session = new_session_id("cmd")
    assert live_session(berth, rid, session) is None
    events, _ = run(data, arn, session, "echo started > /mnt/session/mark")
    assert events[-1]["contentStop"]["exitCode"] == 0
    assert live_session(berth, rid, session) is not None
    read = invoke_json(data, arn, session, {"op": "read", "path": "/mnt/session/mark"})
    assert read["result"] == {"ok": True, "value": "started\n"}


def test_the_command_is_audited(data, probe, berth):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    marker = f"audit-{uuid.uuid4().hex}"
    run(data, arn, new_session_id("cmd"), f"echo {marker}")
    resp = native(berth, "GET", "/berth/v1/audit", query=f"resource={rid}&limit=1000")
    assert resp.status == 200, resp
    entries = resp.json()["entries"]
    mine = [e for e in entries if e["action"] == "InvokeAgentRuntimeCommand" and marker in str(e)]
    assert mine, entries[-5:]
    assert mine[0]["actor"] == ACCESS_KEY_ID


def test_bad_input_is_refused_as_modelled(data_unvalidated, probe):
    arn = probe["agentRuntimeArn"]
    session = new_session_id("cmd")
    for body in ({"command": ""}, {"command": "true", "timeout": 0}, {"command": "true", "timeout": 3601}):
        expect_validation(
            data_unvalidated.invoke_agent_runtime_command,
            agentRuntimeArn=arn,
            runtimeSessionId=session,
            body=body,
        )


def test_berth_exec_streams_and_exits_with_the_commands_code(berth, probe):
    session = new_session_id("cli")
    done = run_cli(
        berth,
        "exec",
        probe["agentRuntimeId"],
        "--session",
        session,
        "--",
        "echo hi; echo oops >&2; exit 3",
    )
    assert done.returncode == 3, done
    assert done.stdout == "hi\n"
    assert "oops\n" in done.stderr
    done = run_cli(berth, "exec", probe["agentRuntimeId"], "--session", session, "--", "true")
    assert done.returncode == 0, done


def test_the_command_needs_its_own_action(berth, probe):
    """InvokeAgentRuntime alone does not run commands; InvokeAgentRuntimeCommand does."""
    import boto3
    import botocore.exceptions

    def client_with(action: str):
        key_id, secret = access_key_allowing(berth, action)
        return boto3.client(
            "bedrock-agentcore",
            endpoint_url=berth.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    arn = probe["agentRuntimeArn"]
    invoke_only = client_with("bedrock-agentcore:InvokeAgentRuntime")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        run(invoke_only, arn, new_session_id("cmd"), "true")
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    allowed = client_with("bedrock-agentcore:InvokeAgentRuntimeCommand")
    events, _ = run(allowed, arn, new_session_id("cmd"), "echo ok")
    assert outputs(events)[0] == "ok\n"
