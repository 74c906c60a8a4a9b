"""The `berth` client commands for running agents, against the session server:
`berth invoke`, `berth sessions list|stop` and `berth logs`.

Each test runs the real binary with a private config dir (where `berth invoke` remembers the
session per runtime) and the test credentials in the environment, as a user would after
`eval "$(berth credentials --export)"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    berth_binary,
    invoke_json,
    live_session,
    new_session_id,
    poll,
    run_cli,
)

pytestmark = pytest.mark.build


@pytest.fixture
def cli(berth, tmp_path):
    """`cli(*args)` runs `berth ARGS` against the session server; returns the CompletedProcess."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}

    def run(*args: str, check: bool = True):
        done = run_cli(berth, *args, env=env)
        if check:
            assert done.returncode == 0, f"berth {' '.join(args)}: {done.stderr}"
        return done

    run.env = env
    return run


def popen_cli(berth, cli, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(
        cli.env,
        BERTH_ENDPOINT_URL=berth.url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        NO_COLOR="1",
    )
    return subprocess.Popen(
        [str(berth_binary()), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def session_of(stderr: str) -> str:
    """The `session: ID` line `berth invoke` prints on stderr."""
    for line in stderr.splitlines():
        if line.startswith("session: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no session line in {stderr!r}")


def test_invoke_wraps_text_remembers_the_session_and_passes_the_user_id(berth, probe, cli):
    name = probe["agentRuntimeName"]
    done = cli("invoke", name, "hello there", "--user-id", "alice")
    answer = json.loads(done.stdout)
    # Plain text goes to the agent as {"prompt": TEXT}.
    assert answer["prompt"] == "hello there"
    assert answer["userId"] == "alice"
    session = session_of(done.stderr)
    assert answer["sessionId"] == session

    # Without --session the remembered one is used: the same sandbox answers.
    again = json.loads(cli("invoke", probe["agentRuntimeId"], '{"op": "whoami"}').stdout)
    assert (again["token"], again["counter"]) == (answer["token"], 2)
    fresh = cli("invoke", name, '{"op": "whoami"}', "--new-session")
    assert json.loads(fresh.stdout)["token"] != answer["token"]
    assert session_of(fresh.stderr) != session

    # `berth sessions list` shows it with its version, endpoint, user and state.
    table = cli("sessions", "list", name).stdout
    row = next(line for line in table.splitlines() if session in line)
    for column in (probe["agentRuntimeId"], "DEFAULT", "alice", "IDLE"):
        assert column in row, row
    listed = json.loads(cli("sessions", "list", "--json").stdout)
    entry = next(s for s in listed if s["sessionId"] == session)
    assert entry["runtimeId"] == probe["agentRuntimeId"]
    assert (entry["version"], entry["endpoint"], entry["userId"]) == (1, "DEFAULT", "alice")
    assert entry["startedAt"] <= entry["lastActivityAt"]


def test_invoke_prints_sse_events_as_they_arrive(berth, probe, cli):
    count, interval = 5, 0.3
    proc = popen_cli(
        berth,
        cli,
        "invoke",
        probe["agentRuntimeId"],
        json.dumps({"op": "stream", "count": count, "interval": interval}),
        "--session",
        new_session_id("cli-sse"),
    )
    arrivals = []
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode().strip()
            if line:
                arrivals.append((time.monotonic(), json.loads(line)))
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert [event["index"] for _, event in arrivals] == list(range(count))
    spread = arrivals[-1][0] - arrivals[0][0]
    # Printed as they arrive, not all at the end.
    assert spread >= interval * (count - 1) * 0.5, spread


def test_invoke_reports_an_agent_failure(probe, cli):
    done = cli(
        "invoke",
        probe["agentRuntimeId"],
        '{"op": "exit"}',
        "--session",
        new_session_id("x"),
        check=False,
    )
    assert done.returncode != 0
    assert "RuntimeClientError" in done.stderr and "424" in done.stderr, done.stderr


def test_sessions_stop_ends_the_session(berth, data, probe, cli):
    session = new_session_id("cli-stop")
    before = invoke_json(data, probe["agentRuntimeArn"], session, {})
    done = cli("sessions", "stop", probe["agentRuntimeName"], session)
    assert session in done.stdout
    assert live_session(berth, probe["agentRuntimeId"], session) is None
    after = invoke_json(data, probe["agentRuntimeArn"], session, {})
    assert after["token"] != before["token"]
    cli("sessions", "stop", probe["agentRuntimeId"], session)
    # Stopping a session that is not live is an error.
    again = cli("sessions", "stop", probe["agentRuntimeId"], session, check=False)
    assert again.returncode != 0


def test_logs_show_the_agent_output_live_followed_and_after_the_end(berth, data, probe, cli):
    name = probe["agentRuntimeName"]
    session = new_session_id("cli-logs")
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    invoke_json(data, probe["agentRuntimeArn"], session, {"op": "print", "text": first})

    assert session in cli("logs", name).stdout.split()
    shown = cli("logs", name, "--session", session).stdout
    # The agent printed the marker on stdout and on stderr: both are kept.
    assert shown.count(first) == 2, shown

    follower = popen_cli(berth, cli, "logs", name, "--session", session, "--follow")
    seen = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(follower.stdout.readline, b"")), daemon=True
    )
    reader.start()
    try:
        invoke_json(data, probe["agentRuntimeArn"], session, {"op": "print", "text": second})
        poll(
            lambda: b"".join(seen).decode(errors="replace"),
            lambda text: second in text,
            timeout=30,
            what="--follow to print the new output",
        )
        # Following ends with the session.
        data.stop_runtime_session(
            agentRuntimeArn=probe["agentRuntimeArn"], runtimeSessionId=session
        )
        assert follower.wait(timeout=30) == 0
    finally:
        follower.kill()
        follower.wait()
        reader.join(5)
        follower.stdout.close()
        follower.stderr.close()
    assert first in b"".join(seen).decode(errors="replace")

    # The log outlives the session.
    kept = cli("logs", name, "--session", session).stdout
    assert first in kept and second in kept, kept
    missing = cli("logs", name, "--session", new_session_id("never"), check=False)
    assert missing.returncode != 0
