"""Isolation between sessions: one session cannot read another's files, see its processes, or
reach its ports; a fork bomb or a memory hog in one session hurts neither the others nor Berth.

Two sessions of the same runtime (agents/probe, the same code and environment) are the hardest
case: the *victim* leaves secrets everywhere it can (its /tmp, its session storage, a process
whose command line carries a secret, an abstract unix socket) and the *intruder* looks for them
in every place it can think of, including the host paths where Berth keeps the victim's files
and every address of the host.

The resource tests run on the `berth_tight` server, whose sessions are limited to 128 MiB and
64 processes (`--session-memory-mib 128 --session-pids 64`).
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from berth_harness import (
    deploy_agent,
    expect_error,
    invoke,
    invoke_json,
    live_session,
    new_session_id,
    poll,
    sandbox_id_of,
    wait_no_leftovers,
    wait_session_gone,
)

pytestmark = pytest.mark.build


def host_addresses() -> list:
    """Every IPv4 and global/ULA IPv6 address of this host (where Berth and its agents run)."""
    addresses = {"127.0.0.1", "::1"}
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    for previous, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            addresses.add(previous.split()[-1])
    for line in Path("/proc/net/if_inet6").read_text().splitlines():
        raw = line.split()[0]
        address = ipaddress.IPv6Address(int(raw, 16))
        if not address.is_link_local:  # needs a scope id, and is host-local anyway
            addresses.add(str(address))
    return sorted(addresses)


class Victim:
    """A session that plants secrets; `intruder` is another session of the same runtime."""

    def __init__(self, data, runtime):
        self.data = data
        self.arn = runtime["agentRuntimeArn"]
        self.session = new_session_id("victim")
        self.secret = f"secret-{uuid.uuid4().hex}"
        self.me = self.call({"op": "whoami"})
        home = self.me["home"]
        self.paths = [
            f"/tmp/{self.secret}",
            f"/mnt/session/{self.secret}",
            f"{home}/{self.secret}.home",
        ]
        for path in self.paths:
            written = self.call({"op": "write", "path": path, "content": self.secret})
            assert written["result"]["ok"], written
        assert self.call({"op": "spawn", "tag": self.secret})["result"] > 0
        assert self.call({"op": "abstract_listen", "name": self.secret})["result"]["ok"]

    def call(self, payload: dict) -> dict:
        return invoke_json(self.data, self.arn, self.session, payload)


@pytest.fixture(scope="module")
def victim(data, probe) -> Victim:
    return Victim(data, probe)


@pytest.fixture(scope="module")
def intruder(data, probe, victim):
    session = new_session_id("intruder")

    def call(payload: dict) -> dict:
        answer = invoke_json(data, probe["agentRuntimeArn"], session, payload)
        assert answer["token"] != victim.me["token"], "the intruder shares the victim's sandbox"
        return answer

    return call


def test_files_of_another_session_are_out_of_reach(berth, victim, intruder):
    # The victim sees its own files: the probe works and the secrets exist.
    for path in victim.paths:
        assert victim.call({"op": "read", "path": path})["result"]["value"] == victim.secret

    for directory in ("/tmp", "/mnt/session", intruder({"op": "whoami"})["home"]):
        listing = intruder({"op": "listdir", "path": directory})["result"]
        assert listing["ok"], listing
        assert not any(victim.secret in name for name in listing["value"]), (directory, listing)
    for path in victim.paths:
        got = intruder({"op": "read", "path": path})["result"]
        assert not got["ok"], (path, got)

    # The victim's /tmp and /mnt/session are tmpfs mounts of its own sandbox: nothing of them is
    # on the host's disk, under the data dir or anywhere else the intruder could look.
    on_host = sorted((berth.data_dir / "sessions").glob(f"**/{victim.secret}*"))
    assert not on_host, on_host
    for sandbox_dir in sorted((berth.data_dir / "sessions").glob("*")):
        for name in ("tmp", "storage", "rootfs/tmp", "rootfs/mnt/session"):
            path = sandbox_dir / name / victim.secret
            got = intruder({"op": "read", "path": str(path)})["result"]
            assert not got["ok"], (str(path), got)
    listing = intruder({"op": "listdir", "path": str(berth.data_dir / "sessions")})["result"]
    assert not listing["ok"] or not listing["value"], listing
    # The root credentials Berth keeps beside its database are out of reach as well.
    got = intruder({"op": "read", "path": str(berth.data_dir / "berth.db")})["result"]
    assert not got["ok"], got


def test_processes_of_another_session_are_invisible(berth, probe, victim, intruder):
    mine = victim.call({"op": "procs"})["result"]
    assert any(victim.secret in p["cmdline"] for p in mine), mine

    seen = intruder({"op": "procs"})["result"]
    assert not any(victim.secret in p["cmdline"] for p in seen), seen
    # The intruder sees only its own small process tree, not the host's or Berth's.
    assert len(seen) <= 4, seen
    assert not any(Path(p["cmdline"].split(" ")[0]).name == "berth" for p in seen), seen
    victim_pid = live_session(berth, probe["agentRuntimeId"], victim.session)["pid"]
    got = intruder({"op": "read", "path": f"/proc/{victim_pid}/cmdline"})["result"]
    assert not got["ok"] or victim.secret not in got["value"], got


def test_ports_and_sockets_of_another_session_are_unreachable(berth, victim, intruder):
    # 127.0.0.1:8080 inside the intruder's sandbox is the intruder's own agent.
    own = intruder({"op": "self_invoke"})["result"]
    assert own["ok"], own
    assert own["value"]["token"] != victim.me["token"]

    # Abstract unix sockets live in the network namespace too.
    assert victim.call({"op": "abstract_connect", "name": victim.secret})["result"]["ok"]
    got = intruder({"op": "abstract_connect", "name": victim.secret})["result"]
    assert not got["ok"], got

    # No direct route to any address of the host: not Berth's port, not 8080.
    berth_port = urlsplit(berth.url).port
    targets = [[address, port] for address in host_addresses() for port in (berth_port, 8080)]
    for attempt in intruder({"op": "connect", "targets": targets})["result"]:
        if attempt["target"][0] in ("127.0.0.1", "::1") and attempt["target"][1] == 8080:
            continue  # the intruder's own agent, checked above
        assert not attempt["ok"], attempt

    # The egress proxy refuses host-local destinations (Berth itself, other agents).
    proxied = [["localhost", berth_port], *targets]
    for attempt in intruder({"op": "proxy", "targets": proxied})["result"]:
        status = attempt.get("value", "")
        assert not (attempt["ok"] and " 200" in status), attempt


def test_the_berth_api_inside_a_sandbox_refuses_session_admin(probe, victim, intruder):
    # Berth exposes its data plane inside sandboxes with credentials scoped to the runtime; those
    # must not list sessions (which would reveal the victim's id) or read another session's log.
    listing = intruder({"op": "api", "path": "/berth/v1/sessions"})["result"]
    assert listing["ok"], listing
    assert listing["value"]["status"] == 403, listing
    assert victim.session not in listing["value"]["body"]
    logs = intruder(
        {
            "op": "api",
            "path": f"/berth/v1/runtimes/{probe['agentRuntimeId']}/logs",
            "query": f"session={victim.session}",
        }
    )["result"]
    assert logs["ok"] and logs["value"]["status"] == 403, logs


# ----------------------------------------------------------------------------- resource limits

@pytest.fixture(scope="module")
def limited(berth_tight):
    """The probe on the `berth_tight` server (128 MiB and 64 pids per session), with a sibling
    session open before any abuse starts."""
    control = berth_tight.client("bedrock-agentcore-control")
    data = berth_tight.client("bedrock-agentcore")
    runtime = deploy_agent(control, berth_tight.s3_client(), "probe")
    sibling = new_session_id("sibling")
    first = invoke_json(data, runtime["agentRuntimeArn"], sibling, {})
    return {
        "server": berth_tight,
        "control": control,
        "data": data,
        "runtime": runtime,
        "sibling": sibling,
        "sibling_token": first["token"],
    }


def assert_unharmed(limited) -> None:
    """The sibling session still answers from its own sandbox, and the control plane answers."""
    arn = limited["runtime"]["agentRuntimeArn"]
    answer = invoke_json(limited["data"], arn, limited["sibling"], {})
    assert answer["token"] == limited["sibling_token"]
    runtimes = limited["control"].list_agent_runtimes()["agentRuntimes"]
    assert limited["runtime"]["agentRuntimeId"] in [r["agentRuntimeId"] for r in runtimes]


def test_a_fork_bomb_is_contained_by_the_pids_limit(limited):
    server, data, runtime = limited["server"], limited["data"], limited["runtime"]
    session = new_session_id("bomb")
    # The children keep their pid slots (they sleep), so the limit stays exhausted while the
    # sibling and the server are checked.
    bomb = {"op": "forkbomb", "limit": 1000}
    answer = invoke_json(data, runtime["agentRuntimeArn"], session, bomb)
    result = answer["result"]
    assert result["forked"] < 64, result
    assert result["error"] and "Resource temporarily unavailable" in result["error"], result
    assert_unharmed(limited)

    pid = live_session(server, runtime["agentRuntimeId"], session)["pid"]
    sandbox = sandbox_id_of(pid)
    data.stop_runtime_session(agentRuntimeArn=runtime["agentRuntimeArn"], runtimeSessionId=session)
    # Every forked child goes down with the sandbox.
    wait_no_leftovers(server, lambda sid: sid == sandbox, pids=[pid])
    assert_unharmed(limited)


def test_a_memory_hog_is_contained_by_the_memory_limit(limited):
    server, data, runtime = limited["server"], limited["data"], limited["runtime"]
    session = new_session_id("hog")
    before = invoke_json(data, runtime["agentRuntimeArn"], session, {})
    pid = live_session(server, runtime["agentRuntimeId"], session)["pid"]
    sandbox = sandbox_id_of(pid)
    # 1 GiB in a 128 MiB sandbox: the kernel kills the agent, and the caller is told.
    expect_error(
        invoke,
        "RuntimeClientError",
        424,
        data=data,
        runtime_arn=runtime["agentRuntimeArn"],
        session_id=session,
        payload={"op": "hog", "mib": 1024},
    )
    assert_unharmed(limited)
    wait_session_gone(server, runtime["agentRuntimeId"], session, timeout=30)
    wait_no_leftovers(server, lambda sid: sid == sandbox, pids=[pid])

    def fresh_token():
        return invoke_json(data, runtime["agentRuntimeArn"], session, {})["token"]

    # The same session id gets a new sandbox afterwards.
    poll(fresh_token, lambda token: token != before["token"], timeout=30, what="a fresh sandbox")
