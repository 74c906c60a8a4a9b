"""Container agents are confined like zip agents (issue 17, acceptance 3).

The hostile agent of test_confinement.py (`agents/confine`), built into a starter-toolkit-style
image (tests/conformance/images.py: Debian base, the SDK from the package index, a non-root
`USER`), pushed with skopeo to Berth's registry and deployed by its ECR-style URI, tries the same
escapes: keyrings, user namespaces, the host's tree, other sessions' processes, filling disks. The
image's root replaces the host's system directories, so "no host tree" here means: the image's
own files and the sandbox's mounts, nothing of the host or of Berth's data directory.
"""

from __future__ import annotations

import platform
import uuid
from pathlib import Path

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    ACCOUNT,
    REGION,
    ROLE_ARN,
    SECRET_ACCESS_KEY,
    unique_name,
    wait_status,
)
from test_confinement import LIMIT_MIB, Agent, _bytes_under, host_pid_of_agent
from test_egress import AGENT as EGRESS_AGENT
from test_egress import TARGETS, _attempt, target_netns  # noqa: F401  (target_netns: a fixture)

import images

pytestmark = [
    pytest.mark.build,
    # Building the image (and, run alone on a fresh checkout, the Debian base) takes minutes.
    pytest.mark.timeout(900),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the agent uses x86-64 syscall numbers"),
]

AGENT = Path(__file__).resolve().parent / "agents" / "confine" / "agent.py"


@pytest.fixture(scope="module")
def confine_image(berth, tmp_path_factory) -> str:
    """The confine agent as an image in the server's registry; its ECR-style URI."""
    out = tmp_path_factory.mktemp("confine-image") / "oci"
    layout = images.build_agent_image(
        AGENT.read_text(), "localhost/berth-test/confine:latest", out, cmd=["python", "-m", "agent"]
    )
    host = berth.url.split("://", 1)[1].rstrip("/")
    auth = images.authfile(out.parent / "auth.json", host, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    images.skopeo_copy(f"oci:{layout}", f"docker://{host}/security/confine:v1", dest_auth=auth)
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/security/confine:v1"


def deploy_image(control, uri: str) -> dict:
    created = control.create_agent_runtime(
        agentRuntimeName=unique_name("confine_img"),
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": uri}},
        roleArn=ROLE_ARN,
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    return wait_status(control, created["agentRuntimeId"], "1", timeout=300)


@pytest.fixture(scope="module")
def image_a(control, confine_image) -> dict:
    return deploy_image(control, confine_image)


@pytest.fixture(scope="module")
def image_b(control, confine_image) -> dict:
    return deploy_image(control, confine_image)


def test_keyrings_are_not_shared_across_image_runtimes(data, image_a, image_b):
    a = Agent(data, image_a, "ikeys-a")
    b = Agent(data, image_b, "ikeys-b")
    name, secret = f"berth-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert a("add_key", name=name, secret=secret)["result"] == {"ok": False, "errno": "EPERM"}
    found = b("find_key", name=name)["result"]
    assert found["found"] == {"ok": False, "errno": "EPERM"}, found
    assert secret not in str(found)
    assert a("whoami")["uid"] != b("whoami")["uid"]


def test_unshare_of_a_user_namespace_fails_in_an_image(data, image_a):
    result = Agent(data, image_a, "iunshare")("unshare")["result"]
    assert result["syscall"] == {"ok": False, "errno": "EPERM"}, result


def test_an_image_sandbox_sees_the_image_and_nothing_of_the_host(berth, data, image_a):
    agent = Agent(data, image_a, "itree")
    # The image's own tree: Debian's directories, its user's home, its app.
    assert agent("listdir", path="/home")["result"] == ["bedrock_agentcore"]
    assert "agent.py" in agent("listdir", path="/app")["result"]
    assert agent("listdir", path="/root")["result"] is None, "root's home is not the agent's to list"
    # Nothing of the host or of Berth's data dir.
    paths = ["/work", str(berth.data_dir), str(Path(__file__).resolve()), "/root/.cargo"]
    assert agent("exists", paths=paths)["result"] == {p: False for p in paths}
    root = set(agent("listdir", path="/")["result"])
    assert "work" not in root and "tmp" in root and "app" in root, root
    # The sandbox's own mounts are there as for every agent.
    assert all(agent("exists", paths=["/tmp", "/mnt/session", "/proc/self", "/dev/null"])["result"].values())


def test_image_sandboxes_have_different_uids_and_cannot_signal_each_other(berth, data, image_a):
    a = Agent(data, image_a, "isig-a")
    b = Agent(data, image_a, "isig-b")
    ua, ub = a("whoami"), b("whoami")
    assert ua["token"] != ub["token"], "the two sessions share a sandbox"
    assert ua["uid"] != ub["uid"] and min(ua["uid"], ub["uid"]) >= 1_000_000, (ua, ub)
    victim = host_pid_of_agent(berth, image_a["agentRuntimeId"], b.session)
    for sig in (0, 9):
        assert a("kill", pid=victim, sig=sig)["result"] in ("ESRCH", "EPERM")
    assert b("whoami")["token"] == ub["token"], "the victim was killed"


@pytest.mark.timeout(300)
def test_writes_stop_at_the_limits_in_an_image_sandbox(berth, image_a):
    patient = berth.client("bedrock-agentcore", read_timeout=240)
    agent = Agent(patient, image_a, "ifill")
    token = agent("whoami")["token"]
    before = _bytes_under(berth.data_dir)
    # /tmp and /mnt/session as for zip agents, and the image's writable layer (/var/tmp is in it).
    for path in ("/tmp/fill", "/mnt/session/fill", "/var/tmp/fill"):
        result = agent("fill", path=path, mib=800)["result"]
        assert result["error"] == "ENOSPC", (path, result)
        assert LIMIT_MIB - 8 <= result["written_mib"] <= LIMIT_MIB, (path, result)
    grown = _bytes_under(berth.data_dir) - before
    assert grown < 64 << 20, f"the data dir grew by {grown} bytes"
    assert agent("whoami")["token"] == token


def test_an_image_agent_gets_no_private_cgnat_or_metadata_address(target_netns, berth_server, tmp_path):
    server = berth_server(name="egress-image")
    layout = images.build_agent_image(
        EGRESS_AGENT, "localhost/berth-test/egress:latest", tmp_path / "oci", cmd=["python", "agent.py"]
    )
    host = server.url.split("://", 1)[1].rstrip("/")
    auth = images.authfile(tmp_path / "auth.json", host, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    images.skopeo_copy(f"oci:{layout}", f"docker://{host}/security/egress:v1", dest_auth=auth)
    runtime = deploy_image(
        server.client("bedrock-agentcore-control"),
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/security/egress:v1",
    )
    result = _attempt(server, runtime["agentRuntimeArn"])
    for addr in TARGETS:
        assert "403" in result[addr].get("status", ""), (addr, result)
        assert "egress-target-reached" not in str(result[addr])
