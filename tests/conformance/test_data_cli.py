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
import sys
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


# ----------------------------------------------------------------------------- CLI holes


def test_credentials_export_sets_the_region_so_memory_client_needs_none(berth, cli, tmp_path):
    done = run_cli(
        berth,
        "credentials",
        "--export",
        env={**cli.env, "BERTH_ACCESS_KEY_ID": ACCESS_KEY_ID, "BERTH_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY},
    )
    assert done.returncode == 0, done.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines()
    )
    assert exports["AWS_REGION"] == "us-east-1", done.stdout
    assert exports["AWS_DEFAULT_REGION"] == "us-east-1", done.stdout
    # What `eval "$(berth credentials --export)"` gives a shell is enough for the SDK's
    # MemoryClient() with no region argument.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(exports, HOME=str(tmp_path))
    script = (
        "from bedrock_agentcore.memory import MemoryClient\n"
        "c = MemoryClient()\n"
        "print(c.region_name, type(c.list_memories()).__name__)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] == "us-east-1", run.stdout


def test_invoke_refuses_a_payload_that_looks_like_json_but_does_not_parse(berth, probe, cli):
    name = probe["agentRuntimeName"]
    session = new_session_id("badjson")
    for payload in ('{"op": "whoami",}', "[1, 2", "{prompt: hi}"):
        done = cli("invoke", name, payload, "--session", session, check=False)
        assert done.returncode != 0, done.stdout
        assert "looks like JSON but does not parse" in done.stderr, done.stderr
        assert done.stdout == ""
    # Nothing was sent: no session was opened for it.
    assert live_session(berth, probe["agentRuntimeId"], session) is None
    # Text that does not look like JSON is still a prompt.
    answer = json.loads(cli("invoke", name, "plain words {not json}", "--new-session").stdout)
    assert answer["prompt"] == "plain words {not json}"


def test_invoke_exits_non_zero_when_the_stream_ends_in_an_error_event(probe, cli):
    done = cli("invoke", probe["agentRuntimeName"], '{"op": "crash_stream"}', "--new-session", check=False)
    assert done.returncode != 0, done.stdout
    assert '"index": 0' in done.stdout or '"index":0' in done.stdout, done.stdout
    assert "ended in an error event" in done.stderr, done.stderr
    # A stream that ends normally still exits 0.
    ok = cli("invoke", probe["agentRuntimeName"], '{"op": "stream", "count": 2, "interval": 0}', "--new-session")
    assert ok.returncode == 0


def test_logs_show_terminal_escapes_visibly_unless_raw(berth, probe, cli):
    name = probe["agentRuntimeName"]
    hostile = "\x1b[2J\x1b]0;owned\x07red\x1b[31m\r\x9b6n"
    done = cli("invoke", name, json.dumps({"op": "print", "text": hostile}), "--new-session")
    session = session_of(done.stderr)

    def logs(*extra):
        return poll(
            lambda: subprocess.run(
                [str(berth_binary()), "logs", name, "--session", session, *extra],
                env=popen_env(berth, cli),
                capture_output=True,
                timeout=60,
            ),
            lambda d: d.returncode == 0 and b"red" in d.stdout,
            timeout=30,
            what="the agent's output in berth logs",
        ).stdout

    shown = logs()
    assert b"\x1b" not in shown and b"\x07" not in shown and b"\r" not in shown, shown
    assert b"\xc2\x9b" not in shown, shown
    assert b"\\x1b[2J\\x1b]0;owned\\x07red\\x1b[31m\\x0d\\u{9b}6n" in shown, shown
    raw = logs("--raw")
    assert hostile.encode() in raw, raw


def popen_env(berth, cli) -> dict:
    """The CLI's environment for a command run without the `cli` fixture."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(
        cli.env,
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        BERTH_ACCESS_KEY_ID=ACCESS_KEY_ID,
        BERTH_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        BERTH_ENDPOINT_URL=berth.url,
    )
    return env


@pytest.mark.parametrize(
    "args",
    [
        ("runtimes", "list", "--json"),
        ("sessions", "list", "--json"),
        ("credentials", "--export"),
        ("runtimes", "list"),
    ],
)
def test_a_closed_stdout_ends_the_command_quietly(berth, probe, cli, args):
    # `berth ... | head` where head has already exited: the first write gets EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = popen_env(berth, cli)
    try:
        done = subprocess.run(
            [str(berth_binary()), *args],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert b"panicked" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
