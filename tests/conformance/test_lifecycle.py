"""Session lifecycle: idle expiry, HealthyBusy survival, max lifetime, stop, crash mid-stream.

These run on the `berth_tight` server (conftest.TIGHT_ARGS): lifecycle timeouts below
AgentCore's 60 s minimum are allowed, `/ping` is polled every 100 ms and there is no warm pool,
so every sandbox of a runtime belongs to a session a test opened. Each test deploys its own
runtime of agents/probe (the build is cached, so that costs about a second).

After each ending, NOTHING may be left: no agent process (its host pid is gone and no process
sits in the sandbox's cgroup), no mount of the session's work dir, no cgroup directory, no work
directory under `<data-dir>/sessions/`. The start-timeout and crash-on-start endings are checked
the same way in test_data_errors.py, server shutdown in test_quickstart.py.

Waits poll a real condition against a deadline; the only time-based assertions are lower
bounds (a session must not end before its timeout), which a slow machine cannot break.
"""

from __future__ import annotations

import threading
import time

import pytest
from berth_harness import (
    agent_zip,
    deploy_agent,
    expect_validation,
    invoke,
    invoke_json,
    live_session,
    live_sessions,
    new_session_id,
    poll,
    read_sse,
    runtime_args,
    runtime_sandboxes,
    sandbox_id_of,
    unique_name,
    upload_artifact,
    wait_no_leftovers,
    wait_session_gone,
)

pytestmark = pytest.mark.build

IDLE = 2
#: How long an ending may take to be noticed and carried out on a loaded machine.
END_DEADLINE = 30


@pytest.fixture(scope="module")
def clients(berth_tight):
    # boto3 refuses lifecycle values below 60 itself; the server's own rule (relaxed by
    # --allow-short-lifecycle) is what these tests exercise.
    return {
        "control": berth_tight.client("bedrock-agentcore-control", validate=False),
        "data": berth_tight.client("bedrock-agentcore"),
        "s3": berth_tight.s3_client(),
    }


@pytest.fixture
def runtime(clients):
    """Factory: a fresh READY probe runtime with the given lifecycle configuration."""

    def make(idle: int = IDLE, max_lifetime: int = 60) -> dict:
        return deploy_agent(
            clients["control"],
            clients["s3"],
            "probe",
            lifecycleConfiguration={
                "idleRuntimeSessionTimeout": idle,
                "maxLifetime": max_lifetime,
            },
        )

    return make


class Opened:
    """A session the test opened: its id, the agent's first answer, its host pid and sandbox."""

    def __init__(self, server, data, runtime: dict, spawn_child: bool = True):
        self.server = server
        self.runtime = runtime
        self.session = new_session_id("life")
        self.first = invoke_json(data, runtime["agentRuntimeArn"], self.session, {})
        if spawn_child:
            # A grandchild of init must go down with the sandbox too.
            invoke_json(data, runtime["agentRuntimeArn"], self.session, {"op": "spawn", "tag": "x"})
        self.opened_at = time.monotonic()
        listed = live_session(server, runtime["agentRuntimeId"], self.session)
        assert listed is not None, live_sessions(server)
        self.pid = listed["pid"]
        self.sandbox = sandbox_id_of(self.pid)

    def assert_nothing_left(self) -> None:
        wait_no_leftovers(self.server, lambda sid: sid == self.sandbox, pids=[self.pid])
        # No warm pool on this server: no sandbox of the runtime may remain at all.
        wait_no_leftovers(self.server, runtime_sandboxes(self.runtime["agentRuntimeId"]))

    def assert_fresh_sandbox_next(self, data) -> None:
        again = invoke_json(data, self.runtime["agentRuntimeArn"], self.session, {})
        assert again["token"] != self.first["token"]
        assert again["counter"] == 1


def test_short_lifecycle_needs_the_server_option(control_unvalidated, artifact, clients):
    # Without --allow-short-lifecycle the API keeps AgentCore's minimum of 60 seconds.
    expect_validation(
        control_unvalidated.create_agent_runtime,
        "idleRuntimeSessionTimeout",
        **runtime_args(
            artifact,
            unique_name("short"),
            lifecycleConfiguration={"idleRuntimeSessionTimeout": 2, "maxLifetime": 6},
        ),
    )
    # With it, the same request is accepted.
    location = upload_artifact(clients["s3"], agent_zip("probe"), "probe")
    created = clients["control"].create_agent_runtime(
        **runtime_args(
            location,
            unique_name("short"),
            lifecycleConfiguration={"idleRuntimeSessionTimeout": 2, "maxLifetime": 6},
        )
    )
    got = clients["control"].get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    assert got["lifecycleConfiguration"] == {"idleRuntimeSessionTimeout": 2, "maxLifetime": 6}


def test_idle_session_expires_and_leaves_nothing(berth_tight, clients, runtime):
    opened = Opened(berth_tight, clients["data"], runtime(idle=IDLE, max_lifetime=60))
    gone_at = wait_session_gone(
        berth_tight, opened.runtime["agentRuntimeId"], opened.session, END_DEADLINE
    )
    # Not before the idle timeout (measured from the end of the last answer).
    assert gone_at - opened.opened_at >= IDLE * 0.75
    opened.assert_nothing_left()
    opened.assert_fresh_sandbox_next(clients["data"])


def test_healthy_busy_keeps_the_session_past_the_idle_timeout(berth_tight, clients, runtime):
    busy_seconds = 3 * IDLE
    rt = runtime(idle=IDLE, max_lifetime=60)
    opened = Opened(berth_tight, clients["data"], rt, spawn_child=False)
    # The agent registers background work and answers at once: no request is in flight, only
    # /ping's HealthyBusy keeps the session.
    started = time.monotonic()
    busy = {"op": "busy", "seconds": busy_seconds}
    invoke_json(clients["data"], rt["agentRuntimeArn"], opened.session, busy)
    states = set()

    def still_there():
        entry = live_session(berth_tight, rt["agentRuntimeId"], opened.session)
        assert entry is not None, (
            f"busy session ended {time.monotonic() - started:.1f} s after going busy "
            f"(idle timeout {IDLE} s, busy for {busy_seconds} s)"
        )
        assert entry["pid"] == opened.pid
        states.add(entry["state"])
        return time.monotonic() - started

    # Watch it through well past the idle timeout.
    poll(still_there, lambda elapsed: elapsed >= IDLE * 1.75, timeout=END_DEADLINE, what="time")
    assert "BUSY" in states, states
    same = invoke_json(clients["data"], rt["agentRuntimeArn"], opened.session, {})
    assert same["token"] == opened.first["token"]
    # Once the work is done the session is idle again and expires.
    gone_at = wait_session_gone(berth_tight, rt["agentRuntimeId"], opened.session, END_DEADLINE)
    assert gone_at - started >= busy_seconds * 0.9
    opened.assert_nothing_left()


def test_max_lifetime_ends_even_a_busy_session(berth_tight, clients, runtime):
    max_lifetime = 6
    rt = runtime(idle=IDLE, max_lifetime=max_lifetime)
    opened = Opened(berth_tight, clients["data"], rt)
    busy = {"op": "busy", "seconds": 600}
    invoke_json(clients["data"], rt["agentRuntimeArn"], opened.session, busy)
    gone_at = wait_session_gone(berth_tight, rt["agentRuntimeId"], opened.session, END_DEADLINE)
    assert gone_at - opened.opened_at >= max_lifetime * 0.75
    opened.assert_nothing_left()
    opened.assert_fresh_sandbox_next(clients["data"])


def test_stop_cuts_the_stream_ends_the_session_at_once_and_leaves_nothing(
    berth_tight, clients, runtime
):
    rt = runtime(idle=60, max_lifetime=600)
    opened = Opened(berth_tight, clients["data"], rt)
    resp = invoke(
        clients["data"], rt["agentRuntimeArn"], opened.session, {"op": "stream", "count": 300}
    )
    outcome = {}

    def read():
        try:
            outcome["events"] = read_sse(resp["response"], chunk_size=16)
        except Exception as err:  # the cut stream
            outcome["error"] = repr(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    poll(
        lambda: live_session(berth_tight, rt["agentRuntimeId"], opened.session),
        lambda entry: entry and entry["inFlight"] >= 1,
        timeout=END_DEADLINE,
        what="the stream to be in flight",
    )
    clients["data"].stop_runtime_session(
        agentRuntimeArn=rt["agentRuntimeArn"], runtimeSessionId=opened.session
    )
    # StopRuntimeSession returns once the session is over: no poll needed.
    assert live_session(berth_tight, rt["agentRuntimeId"], opened.session) is None
    reader.join(END_DEADLINE)
    assert not reader.is_alive(), "the stream outlived StopRuntimeSession"
    if "events" in outcome:
        assert len(outcome["events"]) < 300, "the stream was not cut"
    opened.assert_nothing_left()
    opened.assert_fresh_sandbox_next(clients["data"])


def test_crash_mid_stream_ends_the_session_and_leaves_nothing(berth_tight, clients, runtime):
    rt = runtime(idle=60, max_lifetime=600)
    opened = Opened(berth_tight, clients["data"], rt)
    resp = invoke(clients["data"], rt["agentRuntimeArn"], opened.session, {"op": "crash_stream"})
    events = [event for _, event in read_sse(resp["response"], chunk_size=16)]
    assert events[0]["index"] == 0
    assert events[-1].get("error"), events
    wait_session_gone(berth_tight, rt["agentRuntimeId"], opened.session, END_DEADLINE)
    opened.assert_nothing_left()
    opened.assert_fresh_sandbox_next(clients["data"])

