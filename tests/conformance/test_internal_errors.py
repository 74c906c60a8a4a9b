"""A store that fails: the client gets a 500 InternalServerException (never a 404 or a refusal),
and the server's log has one line for it carrying the request id the client was given.

The failure is real: the test drops a table from the server's SQLite database under it, so
every query on that table fails inside the server.
"""

from __future__ import annotations

import time

import sqlite3

from berth_harness import expect_error, new_session_id, runtime_arn


def _break_runtimes_table(server) -> None:
    db = sqlite3.connect(server.data_dir / "berth.db", timeout=30)
    try:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DROP TABLE runtimes")
        db.commit()
    finally:
        db.close()


def _log_lines_with(server, request_id: str) -> list[str]:
    """The log lines naming the request, once its `request failed` line is written: the server's
    log writer is asynchronous, so the line may land just after the response (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        text = server.log_path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if request_id in line]
        if any("request failed" in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_store_failure_is_a_500_logged_once_with_the_request_id(berth_server):
    server = berth_server()
    control = server.client("bedrock-agentcore-control")
    data = server.client("bedrock-agentcore")
    assert control.list_agent_runtimes()["agentRuntimes"] == []
    _break_runtimes_table(server)

    # GetAgentRuntime reads the runtime row: the store fails.
    resp = expect_error(
        control.get_agent_runtime,
        "InternalServerException",
        500,
        agentRuntimeId="missing_runtime-0123456789",
    )
    assert "no such table" not in resp["Error"]["Message"], "the cause is logged, not sent"
    rid = resp["ResponseMetadata"]["RequestId"]
    lines = _log_lines_with(server, rid)
    failed = [line for line in lines if "request failed" in line]
    assert len(failed) == 1, f"one log line for the 500 {rid}:\n" + "\n".join(lines)
    assert "InternalServerException" in failed[0] and "no such table" in failed[0], failed[0]

    # StopRuntimeSession used to answer a store failure with ResourceNotFoundException.
    resp = expect_error(
        data.stop_runtime_session,
        "InternalServerException",
        500,
        agentRuntimeArn=runtime_arn("missing_runtime-0123456789"),
        runtimeSessionId=new_session_id(),
    )
    rid = resp["ResponseMetadata"]["RequestId"]
    failed = [line for line in _log_lines_with(server, rid) if "request failed" in line]
    assert len(failed) == 1 and "no such table" in failed[0], server.log_tail()
