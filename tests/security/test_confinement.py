"""Confined sessions (issue 10, item 2): hostile agents deployed through the real server try to
leave their sandbox.

The agent is `agents/confine` (ctypes system calls, so the kernel's own errno comes back). Each
attack of the issue is reproduced and shown refused:

- a key one runtime adds to its user keyring cannot be found or read by another runtime: `keyctl`,
  `add_key` and `request_key` fail with EPERM, and every sandbox has a uid of its own anyway;
- `unshare(CLONE_NEWUSER)` fails;
- the sandbox sees no `/home`, `/root`, `/work`, `/var` and not Berth's data directory;
- two sandboxes run as different uids and cannot signal each other (shown on a server with
  `--isolation process` too, where both share the host's PID namespace and only the uid separates
  them);
- writing 800 MB to `/tmp` and to `/mnt/session` stops with ENOSPC at the sandbox's limit (512 MiB
  each by default), while nothing of it reaches the host's disk.

The system call numbers in the agent are x86-64's.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from berth_harness import (
    BerthServer,
    deploy_agent,
    invoke_json,
    live_session,
    new_session_id,
    zip_tree,
)

pytestmark = [
    pytest.mark.build,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the agent uses x86-64 syscall numbers"),
]

AGENT = Path(__file__).resolve().parent / "agents" / "confine"
#: The default size of a sandbox's /tmp and /mnt/session.
LIMIT_MIB = 512


def deploy(control, s3, name: str | None = None) -> dict:
    return deploy_agent(control, s3, zip_tree(AGENT), name=name)


class Agent:
    """One session of a deployed runtime."""

    def __init__(self, data, runtime: dict, tag: str):
        self.data = data
        self.arn = runtime["agentRuntimeArn"]
        self.runtime_id = runtime["agentRuntimeId"]
        self.session = new_session_id(tag)

    def __call__(self, op: str, **payload) -> dict:
        return invoke_json(self.data, self.arn, self.session, {"op": op, **payload})


@pytest.fixture(scope="module")
def runtime_a(control, s3) -> dict:
    return deploy(control, s3)


@pytest.fixture(scope="module")
def runtime_b(control, s3) -> dict:
    return deploy(control, s3)


def test_keyrings_are_not_shared_across_runtimes(data, runtime_a, runtime_b):
    a = Agent(data, runtime_a, "keys-a")
    b = Agent(data, runtime_b, "keys-b")
    name, secret = f"berth-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

    added = a("add_key", name=name, secret=secret)
    assert added["result"] == {"ok": False, "errno": "EPERM"}, added
    # Not even the id of its own user keyring: no keyring is reachable at all.
    assert a("keyring_id")["result"] == {"ok": False, "errno": "EPERM"}

    found = b("find_key", name=name)["result"]
    assert found["found"] == {"ok": False, "errno": "EPERM"}, found
    assert found.get("value") is None
    assert secret not in str(found)

    # Keyrings are per uid, and the two runtimes' agents have different ones.
    assert a("whoami")["uid"] != b("whoami")["uid"]


def test_unshare_of_a_user_namespace_fails(data, runtime_a):
    agent = Agent(data, runtime_a, "unshare")
    result = agent("unshare")["result"]
    assert result["syscall"] == {"ok": False, "errno": "EPERM"}, result
    if "os.unshare" in result:
        assert result["os.unshare"] == "EPERM", result


def test_the_sandbox_sees_no_host_tree(berth, data, runtime_a):
    agent = Agent(data, runtime_a, "tree")
    paths = [
        "/home",
        "/root",
        "/work",
        "/var",
        "/opt",
        "/run",
        str(berth.data_dir / "berth.db"),
        str(berth.data_dir / "sessions"),
    ]
    seen = agent("exists", paths=paths)["result"]
    assert {p: False for p in paths} == seen
    # The data dir exists only as the path down to the version's code and environment (this
    # server's data dir is under /tmp, so the rest of the path is the sandbox's own /tmp).
    assert agent("listdir", path=str(berth.data_dir))["result"] == ["builds"]
    assert agent("listdir", path=str(berth.data_dir / "builds"))["result"] == ["code", "envs"]
    # What an agent needs is there.
    assert all(agent("exists", paths=["/usr/bin", "/etc/passwd", "/tmp", "/mnt/session"])["result"].values())


def host_pid_of_agent(server, runtime_id: str, session: str) -> int:
    """The host pid of a session's agent: the session list names its sandbox's init (namespaced),
    whose only child is the agent; in process mode it names the agent itself."""
    entry = live_session(server, runtime_id, session)
    assert entry, f"session {session} is not live"
    pid = entry["pid"]
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children and _is_init(pid) else pid


def _is_init(pid: int) -> bool:
    # Namespaced: init runs as root; the agent it forked does not.
    return Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0] == "0"


def test_two_sandboxes_have_different_uids_and_cannot_signal_each_other(berth, data, runtime_a):
    a = Agent(data, runtime_a, "sig-a")
    b = Agent(data, runtime_a, "sig-b")
    ua, ub = a("whoami"), b("whoami")
    assert ua["token"] != ub["token"], "the two sessions share a sandbox"
    assert ua["uid"] != ub["uid"], (ua, ub)
    assert ua["uid"] >= 1_000_000 and ub["uid"] >= 1_000_000

    victim = host_pid_of_agent(berth, runtime_a["agentRuntimeId"], b.session)
    # Namespaced: the victim's host pid does not even exist in a's PID namespace.
    for sig in (0, 9):
        assert a("kill", pid=victim, sig=sig)["result"] in ("ESRCH", "EPERM")
    assert b("whoami")["token"] == ub["token"], "the victim was killed"


@pytest.fixture(scope="module")
def process_server(tmp_path_factory):
    """A server with `--isolation process` whose data dir other uids can traverse (the agents reach
    their code by host path in this mode)."""
    root = Path(tempfile.mkdtemp(prefix="berth-confine-", dir="/var/tmp"))
    root.chmod(0o755)
    log = tmp_path_factory.mktemp("confine-process") / "berth.log"
    server = BerthServer(root / "data", log, args=("--isolation", "process", "--warm-pool", "0"))
    server.start()
    yield server
    server.stop()
    server.reap_group()
    shutil.rmtree(root, ignore_errors=True)


def test_process_isolation_still_separates_signals_by_uid(process_server):
    control = process_server.client("bedrock-agentcore-control")
    data = process_server.client("bedrock-agentcore")
    runtime = deploy(control, process_server.s3_client())
    a = Agent(data, runtime, "psig-a")
    b = Agent(data, runtime, "psig-b")
    ua, ub = a("whoami"), b("whoami")
    assert ua["uid"] != ub["uid"], (ua, ub)
    # Same PID namespace: the pid is b's real one, and only the uid stops the signal.
    assert ub["pid"] == host_pid_of_agent(process_server, runtime["agentRuntimeId"], b.session)
    for sig in (0, 9):
        assert a("kill", pid=ub["pid"], sig=sig)["result"] == "EPERM"
    assert b("whoami")["token"] == ub["token"], "the victim was killed"


def _bytes_under(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


@pytest.mark.timeout(300)
def test_disk_writes_stop_at_the_limit_inside_the_sandbox(berth, runtime_a):
    # 1 GiB of writes take a second or two, far longer on a loaded machine.
    patient = berth.client("bedrock-agentcore", read_timeout=240)
    agent = Agent(patient, runtime_a, "fill")
    token = agent("whoami")["token"]
    before = _bytes_under(berth.data_dir)
    for path in ("/tmp/fill", "/mnt/session/fill"):
        result = agent("fill", path=path, mib=800, keep=True)["result"]
        assert result["error"] == "ENOSPC", (path, result)
        assert LIMIT_MIB - 2 <= result["written_mib"] <= LIMIT_MIB, (path, result)
    # 1 GiB sits in the sandbox's two tmpfs mounts, none of it on the disk that holds the data dir.
    grown = _bytes_under(berth.data_dir) - before
    assert grown < 64 << 20, f"the data dir grew by {grown} bytes"
    # The agent is alive and answering, and frees its space again.
    assert agent("whoami")["token"] == token
    assert agent("fill", path="/tmp/fill", mib=1)["result"] == {"written_mib": 1, "error": None}
