"""Small holes of issue 11, each at its cause: ids validated before they reach a path, kept log
names that cannot collide, and a crashed session's id starting a fresh sandbox at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from berth_harness import (
    invoke_json,
    live_session,
    native,
    new_session_id,
    read_sse,
    invoke,
    wait_session_gone,
)

pytestmark = pytest.mark.build


def test_logs_api_refuses_path_traversal_in_ids(berth, tmp_path):
    secret = tmp_path / "victim"
    secret.mkdir()
    (secret / "x.log").write_text("TOP-SECRET-LOG-CONTENT\n")
    logs_dir = berth.data_dir / "logs"
    rel = os.path.relpath(secret, logs_dir)
    encoded = rel.replace("/", "%2F").replace(".", "%2E")
    for path, query in [
        (f"/berth/v1/runtimes/{encoded}/logs", "session=x"),
        (f"/berth/v1/runtimes/{encoded}/logs", ""),
    ]:
        resp = native(berth, "GET", path, query=query)
        assert resp.status == 400, resp
        assert resp.error_type == "ValidationException", resp
        assert b"TOP-SECRET" not in resp.body
    # A session id may hold any printable character; it is escaped into one file name, never a
    # path, so it finds nothing.
    resp = native(berth, "GET", "/berth/v1/runtimes/agent-AbCdE12345/logs", query="session=..%2F..%2Fx")
    assert resp.status == 404, resp
    resp = native(berth, "GET", "/berth/v1/runtimes/agent-AbCdE12345/logs", query="session=a%09b")
    assert resp.status == 400, resp


def test_sessions_differing_in_punctuation_keep_separate_logs(berth, data, probe):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    base = new_session_id("logs")
    sessions = {f"{base}.alice": "dot-alice-wrote-this", f"{base}_alice": "underscore-alice-wrote-this"}
    for session, text in sessions.items():
        invoke_json(data, arn, session, {"op": "print", "text": text})
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
        wait_session_gone(berth, rid, session, timeout=60)
    listed = native(berth, "GET", f"/berth/v1/runtimes/{rid}/logs").json()["sessions"]
    for session, text in sessions.items():
        assert session in listed, listed
        from urllib.parse import quote

        resp = native(berth, "GET", f"/berth/v1/runtimes/{rid}/logs", query=f"session={quote(session, safe='')}")
        assert resp.status == 200, resp
        log = resp.body.decode()
        assert text in log, log
        others = [t for s, t in sessions.items() if s != session]
        assert not any(o in log for o in others), log


def test_reinvoking_right_after_a_crash_mid_stream_starts_a_fresh_sandbox(berth, data, probe):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    session = new_session_id("crash")
    first = invoke_json(data, arn, session, {"op": "whoami"})
    resp = invoke(data, arn, session, {"op": "crash_stream"})
    events = read_sse(resp["response"])
    assert events and isinstance(events[-1][1], dict), events
    # At once, with no wait for the supervisor to notice: a new sandbox, not a 424.
    again = invoke_json(data, arn, session, {"op": "whoami"})
    assert again["token"] != first["token"], (first, again)
    assert live_session(berth, rid, session) is not None
