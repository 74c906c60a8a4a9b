"""Shutdown and recovery (issue 11 item 3).

- SIGTERM with a client holding a half-sent request and an invocation stuck in an agent: the
  server stops accepting, drains for --shutdown-drain-seconds, cancels, exits, and a new server
  starts on the same data dir (the lock was released).
- SIGKILL with live sessions (one with a child process of its own), a warm sandbox and a build
  running pip, then a restart on the same data dir: no cgroup, work dir or process of the old
  run is left, while another Berth on another data dir keeps its session.

Waits poll conditions against deadlines; nothing asserts on elapsed time.
"""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from berth_harness import (
    deploy_agent,
    invoke,
    invoke_json,
    leftovers,
    live_session,
    new_session_id,
    poll,
    read_sse,
    runtime_args,
    runtime_sandboxes,
    unique_name,
    upload_artifact,
    wait_no_leftovers,
    zip_files,
)

pytestmark = pytest.mark.build

DRAIN = 3
#: Drain, bounded teardown and a loaded machine's slack: a deadline for a condition, not a timing.
EXIT_DEADLINE = 90


def exited(server, timeout=EXIT_DEADLINE):
    return poll(
        lambda: server.proc.poll(),
        lambda rc: rc is not None,
        timeout=timeout,
        what="the server to exit",
    )


def test_sigterm_with_stuck_client_and_stuck_invocation_exits_and_releases_the_lock(
    berth_server, tmp_path
):
    server = berth_server(args=("--shutdown-drain-seconds", str(DRAIN), "--warm-pool", "0"))
    control = server.client("bedrock-agentcore-control")
    data = server.client("bedrock-agentcore", read_timeout=300)
    runtime = deploy_agent(control, server.s3_client(), "probe")
    arn, rid = runtime["agentRuntimeArn"], runtime["agentRuntimeId"]
    session = new_session_id("stuck")
    outcome = {}

    def stuck_stream():
        try:
            resp = invoke(data, arn, session, {"op": "stream", "count": 100000, "interval": 1})
            outcome["events"] = read_sse(resp["response"])
        except Exception as err:  # the stream is cut at shutdown: either way it must end
            outcome["error"] = repr(err)

    reader = threading.Thread(target=stuck_stream, daemon=True)
    reader.start()
    poll(
        lambda: live_session(server, rid, session),
        lambda s: s is not None,
        timeout=120,
        what="the stuck invocation's session",
    )
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    half = socket.create_connection((host, port), timeout=10)
    half.sendall(b"POST /runtimes/x/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    try:
        server.proc.send_signal(signal.SIGTERM)
        exited(server)
        reader.join(timeout=60)
        assert not reader.is_alive(), "the stuck stream did not end"
        # The old run's sandbox is gone, and the data dir can be served again.
        again = berth_server(data_dir=server.data_dir, name="again")
        wait_no_leftovers(again, runtime_sandboxes(rid))
        answer = invoke_json(again.client("bedrock-agentcore"), arn, new_session_id("after"), {})
        assert answer["token"]
    finally:
        half.close()


SLOW_SETUP = """
import time
time.sleep(3600)  # a build that never ends: killed with the server's run
from setuptools import setup
setup(name="slowpkg", version="1.0")
"""


def running_from(directory: Path) -> list:
    """Processes whose executable lies under `directory`, each as "pid@start-time: argv0".

    The start time (field 22 of /proc/pid/stat) makes an entry name one process even if its pid
    is reused, so a restarted server's own processes never match the old run's."""
    found = []
    prefix = str(directory.resolve()) + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            started = (proc / "stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            continue
        if argv0.startswith(prefix):
            found.append(f"{proc.name}@{started}: {argv0}")
    return found


def tagged(tag: str) -> list:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and tag.encode() in (proc / "cmdline").read_bytes():
                out.append(proc.name)
        except OSError:
            continue
    return out


def test_sigkill_then_restart_leaves_nothing_of_the_old_run(berth_server):
    # Another Berth, on its own data dir, with a live session: it must not be touched.
    other = berth_server(name="other", args=("--warm-pool", "0"))
    other_data = other.client("bedrock-agentcore")
    other_rt = deploy_agent(other.client("bedrock-agentcore-control"), other.s3_client(), "probe")
    other_session = new_session_id("other")
    other_token = invoke_json(other_data, other_rt["agentRuntimeArn"], other_session, {})["token"]

    server = berth_server(name="victim", args=("--warm-pool", "1"))
    control = server.client("bedrock-agentcore-control")
    data = server.client("bedrock-agentcore")
    runtime = deploy_agent(control, server.s3_client(), "probe")
    arn, rid = runtime["agentRuntimeArn"], runtime["agentRuntimeId"]
    tag = f"orphan-{uuid.uuid4().hex}"
    sessions = [new_session_id("kill") for _ in range(2)]
    for s in sessions:
        invoke_json(data, arn, s, {})
    invoke_json(data, arn, sessions[0], {"op": "spawn", "tag": tag})
    assert tagged(tag)

    # A build stuck in pip (a local package whose setup.py never returns).
    slow = zip_files(
        {
            "agent.py": "print('never runs')\n",
            "requirements.txt": "./slowpkg\n",
            "slowpkg/setup.py": SLOW_SETUP,
        }
    )
    location = upload_artifact(server.s3_client(), slow, "slow")
    control.create_agent_runtime(**runtime_args(location, unique_name("slow")))
    builds = server.data_dir / "builds"
    old_builds = poll(
        lambda: running_from(builds),
        lambda found: found,
        timeout=300,
        what="pip to run from the data dir's builds",
    )

    old_builds = set(old_builds) | set(running_from(builds))
    server.kill()
    assert leftovers(server, runtime_sandboxes(rid)), "the kill left nothing to sweep"

    again = berth_server(data_dir=server.data_dir, name="victim-again", args=("--warm-pool", "0"))
    assert leftovers(again, runtime_sandboxes(rid)) == []
    assert tagged(tag) == []
    # The restarted server resumes the unfinished build in the same place; the old run's
    # processes must be gone, whatever the new one has started since.
    assert old_builds & set(running_from(builds)) == set()
    assert list((server.data_dir / "sessions").iterdir()) == []
    # The other Berth's session is the same sandbox as before.
    assert invoke_json(other_data, other_rt["agentRuntimeArn"], other_session, {})["token"] == other_token
    assert live_session(other, other_rt["agentRuntimeId"], other_session) is not None
