"""Agents are read with limits, and sessions are capped (issue 11 item 2, issue 10 item 5).

- A `/ping` answering 1 GiB or a body that never ends neither grows the server (Berth reads at
  most a few KiB of it) nor escapes the start timeout or the live session's health checks.
- An agent answering status 999 becomes `RuntimeClientError`.
- An agent that invokes its own runtime with its injected credentials, 60 times with new session
  ids, is refused with `ServiceQuotaExceededException` (402) at the per-runtime cap.
- New sessions past the per-runtime rate get `ThrottlingException` (429).

Memory is compared before and after (bounds on bytes, never on time); endings are awaited by
polling with deadlines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from berth_harness import (
    ACCOUNT,
    deploy_agent,
    expect_error,
    invoke,
    invoke_json,
    live_session,
    native,
    live_sessions,
    new_session_id,
    poll,
    unique_name,
    wait_session_gone,
)
from lifecycle_agents import hostile_agent_zip, spawner_agent_zip

pytestmark = pytest.mark.build

#: RSS growth allowed across a test: a 1 GiB body read in full would blow far past it.
RSS_SLACK = 96 << 20
END_DEADLINE = 60
QUOTA = 4

ARGS = (
    "--allow-short-lifecycle",
    "--ping-interval-ms",
    "100",
    "--start-timeout",
    "5",
    "--warm-pool",
    "0",
    "--max-sessions-per-runtime",
    str(QUOTA),
    "--session-rate-per-runtime",
    "1000",
)


def rss(server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def srv(module_server):
    server = module_server("lifecycle-agents", args=ARGS)
    return {
        "server": server,
        "control": server.client("bedrock-agentcore-control", validate=False),
        "data": server.client("bedrock-agentcore"),
        "s3": server.s3_client(),
    }


def deploy_hostile(srv, mode: str = "calm") -> dict:
    return deploy_agent(
        srv["control"],
        srv["s3"],
        hostile_agent_zip(),
        name=unique_name("hostile"),
        environmentVariables={"PING_MODE": mode},
        lifecycleConfiguration={"idleRuntimeSessionTimeout": 600, "maxLifetime": 600},
    )


@pytest.mark.parametrize("mode", ["big", "endless", "hang"])
def test_a_hostile_ping_at_start_meets_the_start_timeout(srv, mode):
    server = srv["server"]
    runtime = deploy_hostile(srv, mode)
    before = rss(server)
    expect_error(
        invoke,
        "RuntimeClientError",
        424,
        data=srv["data"],
        runtime_arn=runtime["agentRuntimeArn"],
        session_id=new_session_id("ping"),
        payload={},
    )
    assert live_sessions(server, runtime["agentRuntimeId"]) == []
    assert rss(server) - before < RSS_SLACK, (before, rss(server))


@pytest.mark.parametrize("mode", ["big", "endless", "hang"])
def test_a_live_session_turning_hostile_on_ping_is_ended(srv, mode):
    server, data = srv["server"], srv["data"]
    runtime = deploy_hostile(srv)
    session = new_session_id("turn")
    invoke_json(data, runtime["agentRuntimeArn"], session, {"hello": 1})
    before = rss(server)
    answer = invoke_json(data, runtime["agentRuntimeArn"], session, {"hostile": mode})
    assert answer["echo"]["hostile"] == mode
    # Three failed /ping polls end it; maxLifetime (600 s) is far away.
    wait_session_gone(server, runtime["agentRuntimeId"], session, timeout=END_DEADLINE)
    assert rss(server) - before < RSS_SLACK, (before, rss(server))


def test_max_lifetime_holds_while_ping_hangs(srv):
    server, data = srv["server"], srv["data"]
    runtime = deploy_agent(
        srv["control"],
        srv["s3"],
        hostile_agent_zip(),
        name=unique_name("lifetime"),
        lifecycleConfiguration={"idleRuntimeSessionTimeout": 600, "maxLifetime": 2},
    )
    session = new_session_id("life")
    invoke_json(data, runtime["agentRuntimeArn"], session, {"hostile": "hang"})
    wait_session_gone(server, runtime["agentRuntimeId"], session, timeout=END_DEADLINE)


def test_status_outside_http_becomes_runtime_client_error(srv):
    runtime = deploy_hostile(srv)
    err = expect_error(
        invoke,
        "RuntimeClientError",
        424,
        data=srv["data"],
        runtime_arn=runtime["agentRuntimeArn"],
        session_id=new_session_id("s999"),
        payload={"status": 999},
    )
    assert "999" in json.dumps(err, default=str)


def test_an_agent_starting_sessions_of_itself_hits_the_quota(srv):
    server, data = srv["server"], srv["data"]
    # Invoking itself is a grant its role must carry (the default role has none).
    role = unique_name("spawner_role")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "bedrock-agentcore:InvokeAgentRuntime", "Resource": "*"}
        ],
    }
    put = native(
        server, "PUT", f"/berth/v1/roles/{role}", body=json.dumps({"policies": [policy]}).encode()
    )
    assert put.status == 200, (put.status, put.body)
    runtime = deploy_agent(
        srv["control"],
        srv["s3"],
        spawner_agent_zip(),
        name=unique_name("spawner"),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
    )
    session = new_session_id("spawn")
    answer = invoke_json(
        data,
        runtime["agentRuntimeArn"],
        session,
        {"op": "spawn", "count": 60, "arn": runtime["agentRuntimeArn"]},
    )
    codes = answer["codes"]
    # The caller's own session holds one place: QUOTA - 1 children fit, the next is refused.
    assert codes[: QUOTA - 1] == ["ok"] * (QUOTA - 1), codes
    assert codes[QUOTA - 1 :] == ["ServiceQuotaExceededException", 402], codes
    assert len(live_sessions(server, runtime["agentRuntimeId"])) == QUOTA
    # From outside too; another runtime is not affected by this one's cap.
    expect_error(
        invoke,
        "ServiceQuotaExceededException",
        402,
        data=data,
        runtime_arn=runtime["agentRuntimeArn"],
        session_id=new_session_id("outside"),
        payload={},
    )
    other = deploy_hostile(srv)
    invoke_json(data, other["agentRuntimeArn"], new_session_id("other"), {})
    # Stopping sessions frees places.
    for entry in live_sessions(server, runtime["agentRuntimeId"]):
        data.stop_runtime_session(
            agentRuntimeArn=runtime["agentRuntimeArn"], runtimeSessionId=entry["sessionId"]
        )
    poll(
        lambda: live_sessions(server, runtime["agentRuntimeId"]),
        lambda s: s == [],
        timeout=END_DEADLINE,
        what="the spawned sessions to stop",
    )
    invoke_json(data, runtime["agentRuntimeArn"], new_session_id("again"), {"op": "noop"})


def test_new_sessions_past_the_rate_are_throttled(module_server):
    server = module_server(
        "lifecycle-rate",
        args=("--warm-pool", "0", "--session-rate-per-runtime", "0.001"),
    )
    control = server.client("bedrock-agentcore-control")
    data = server.client("bedrock-agentcore")
    runtime = deploy_agent(control, server.s3_client(), hostile_agent_zip(), name=unique_name("rate"))
    first = new_session_id("rate")
    invoke_json(data, runtime["agentRuntimeArn"], first, {})
    expect_error(
        invoke,
        "ThrottlingException",
        429,
        data=data,
        runtime_arn=runtime["agentRuntimeArn"],
        session_id=new_session_id("rate"),
        payload={},
    )
    # The live session itself is not throttled.
    invoke_json(data, runtime["agentRuntimeArn"], first, {})
    assert live_session(server, runtime["agentRuntimeId"], first) is not None
