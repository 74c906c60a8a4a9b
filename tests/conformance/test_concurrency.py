"""Fifty sessions at once on this 2-core machine, each in its own sandbox.

Fifty threads invoke fifty new session ids at the same moment; every session must be answered
by its own sandbox (agents/probe reports a token drawn when its process started: pids inside
PID namespaces are small numbers that repeat) and all fifty must be live together. A second
concurrent round then checks that each session is still served by the same sandbox.
"""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
from berth_harness import invoke_json, live_sessions, new_session_id

pytestmark = pytest.mark.build

SESSIONS = 50


@pytest.mark.timeout(300)
def test_fifty_sessions_at_once_each_in_its_own_sandbox(berth, probe):
    client = berth.client(
        "bedrock-agentcore", max_pool_connections=SESSIONS + 8, read_timeout=240
    )
    arn = probe["agentRuntimeArn"]
    sessions = [new_session_id(f"c{index:02d}") for index in range(SESSIONS)]
    start = threading.Barrier(SESSIONS)

    def first_call(session: str) -> dict:
        start.wait(timeout=60)
        return invoke_json(client, arn, session, {"op": "whoami"})

    with concurrent.futures.ThreadPoolExecutor(SESSIONS) as pool:
        first = list(pool.map(first_call, sessions))

    assert [a["sessionId"] for a in first] == sessions
    assert len({a["token"] for a in first}) == SESSIONS, "some sessions shared a sandbox"
    assert len({a["hostname"] for a in first}) == SESSIONS
    assert all(a["counter"] == 1 for a in first)

    live = {s["sessionId"]: s for s in live_sessions(berth, probe["agentRuntimeId"])}
    assert set(sessions) <= set(live), f"only {len(set(sessions) & set(live))} of them are live"
    assert len({live[s]["pid"] for s in sessions}) == SESSIONS

    with concurrent.futures.ThreadPoolExecutor(SESSIONS) as pool:
        second = list(pool.map(lambda s: invoke_json(client, arn, s, {"op": "whoami"}), sessions))
    assert [a["token"] for a in second] == [a["token"] for a in first]
    assert all(a["counter"] == 2 for a in second)

    # Give the machine back to the rest of the suite.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda s: client.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=s),
                sessions,
            )
        )
    remaining = {s["sessionId"] for s in live_sessions(berth, probe["agentRuntimeId"])}
    assert not remaining & set(sessions)
