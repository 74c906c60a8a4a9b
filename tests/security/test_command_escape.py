"""InvokeAgentRuntimeCommand is agent code too (issue 13, item 4): a hostile command, sent by
whoever may call the operation, stays in its session's sandbox like the agent it runs beside.

The command runs `/bin/sh -c` with the agent's uid, seccomp filter and namespaces (agents/probe
from the conformance suite is the agent). It tries to read Berth's data directory and the host's
trees, another session's files and processes, and to make namespaces of its own.
"""

from __future__ import annotations

import uuid

import pytest
from berth_harness import invoke_json, new_session_id

pytestmark = pytest.mark.build


def run(data, arn: str, session: str, command: str) -> tuple[str, str, int]:
    resp = data.invoke_agent_runtime_command(
        agentRuntimeArn=arn, runtimeSessionId=session, body={"command": command}
    )
    out, err, code = "", "", None
    for event in resp["stream"]:
        chunk = event["chunk"]
        delta = chunk.get("contentDelta", {})
        out += delta.get("stdout", "")
        err += delta.get("stderr", "")
        if "contentStop" in chunk:
            code = chunk["contentStop"]["exitCode"]
    assert code is not None, "no contentStop"
    return out, err, code


def test_the_command_runs_as_the_agents_unprivileged_uid(data, probe):
    arn, session = probe["agentRuntimeArn"], new_session_id("esc")
    me = invoke_json(data, arn, session, {"op": "whoami"})
    out, _, code = run(data, arn, session, "id -u; id -G; hostname")
    assert code == 0
    uid, groups, hostname = out.split("\n")[:3]
    assert uid == str(me["uid"]) and uid != "0"
    assert groups == uid  # no supplementary groups, gid = uid
    assert hostname == me["hostname"]


def test_the_command_cannot_see_the_data_dir_or_the_hosts_trees(berth, data, probe):
    arn, session = probe["agentRuntimeArn"], new_session_id("esc")
    targets = [
        str(berth.data_dir / "berth.db"),
        str(berth.data_dir / "sessions"),
        str(berth.data_dir / "logs"),
        "/home",
        "/root",
        "/work",
        "/var",
        "/run",
    ]
    script = "; ".join(f"test -e '{t}' && echo 'SEEN {t}'" for t in targets) + "; true"
    out, _, code = run(data, arn, session, script)
    assert code == 0
    assert "SEEN" not in out, out
    # Everything under the data dir's path is the version's code and environment, nothing else.
    out, _, _ = run(data, arn, session, f"ls -A '{berth.data_dir}'")
    assert out.split() == ["builds"]


def test_the_command_cannot_reach_another_sessions_files_or_processes(data, probe):
    arn = probe["agentRuntimeArn"]
    victim, intruder = new_session_id("victim"), new_session_id("intruder")
    secret = f"secret-{uuid.uuid4().hex}"
    for path in (f"/tmp/{secret}", f"/mnt/session/{secret}"):
        written = invoke_json(data, arn, victim, {"op": "write", "path": path, "content": secret})
        assert written["result"]["ok"], written
    assert invoke_json(data, arn, victim, {"op": "spawn", "tag": secret})["result"] > 0
    # The victim's own command sees all of it (the check below can fail).
    out, _, _ = run(data, arn, victim, "ls /tmp /mnt/session; cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert out.count(secret) >= 3, out
    # The intruder's command does not name the secret, so any trace of it in the output leaked.
    out, err, _ = run(
        data,
        arn,
        intruder,
        "ls -A /tmp /mnt/session; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; "
        "grep -rl secret- /tmp /mnt/session /dev/shm 2>/dev/null; true",
    )
    assert secret not in out and secret not in err, out


def test_the_command_cannot_make_namespaces_or_become_root(data, probe):
    arn, session = probe["agentRuntimeArn"], new_session_id("esc")
    for command in ("unshare -r true", "unshare -n true", "unshare -m true", "su -c true root"):
        out, err, code = run(data, arn, session, command)
        assert code != 0, (command, out, err)
