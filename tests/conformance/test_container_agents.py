"""Container agents: an image built like the starter toolkit builds one, pushed with skopeo to
Berth's registry, deployed by the first seed's own `update_runtime` with an ECR-style URI, served
(JSON and SSE), and rolled back to the zip version with one call.

The image is built offline on this machine (tests/conformance/images.py: a debootstrap Debian
base, buildah, packages from the package index cached once).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    ACCOUNT,
    REGION,
    SECRET_ACCESS_KEY,
    assert_status,
    deploy_agent,
    hello_agent_zip,
    new_session_id,
    run_cli,
    unique_name,
    wait_endpoint,
    wait_not_found,
    wait_status,
)

import images

#: A fresh checkout builds the Debian base (debootstrap) and the agent image first: minutes.
pytestmark = pytest.mark.timeout(900)

#: The agent inside the image: the SDK's app, answering JSON or streaming SSE, and telling
#: where it runs so the test can tell the image's files from the host's.
IMAGE_AGENT = '''
import os
from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


def where():
    with open("/etc/debian_version") as f:
        debian = f.read().strip()
    return {"debian": debian, "cwd": os.getcwd(), "uid": os.getuid(), "from": "image"}


@app.entrypoint
async def invoke(payload):
    if payload.get("stream"):
        async def events():
            for word in payload.get("prompt", "").split():
                yield {"word": word}
            yield {"done": True, **where()}
        return events()
    return {"result": payload.get("prompt", ""), **where()}


if __name__ == "__main__":
    app.run()
'''


@dataclass
class DeployState:
    """The seed's pipeline state, as its deploy code uses it."""

    ecr_uri: str
    previous_version: str = ""
    version: str = ""


# The first seed's function, as written.
def update_runtime(state: DeployState, config: dict) -> DeployState:
    client = boto3.client('bedrock-agentcore-control', region_name=config['region'])
    current = client.get_agent_runtime(agentRuntimeId=config['agent_id'])

    # Record previous version for rollback
    endpoints = client.list_agent_runtime_endpoints(agentRuntimeId=config['agent_id'])
    for ep in endpoints.get('runtimeEndpoints', []):
        if ep.get('name', '') == 'staging':
            state.previous_version = ep.get('liveVersion', '')

    resp = client.update_agent_runtime(
        agentRuntimeId=config['agent_id'],
        agentRuntimeArtifact={'containerConfiguration': {'containerUri': state.ecr_uri}},
        roleArn=current['roleArn'],
        networkConfiguration=current['networkConfiguration'],
        environmentVariables=config['env_vars'],
    )
    state.version = resp.get('agentRuntimeVersion')
    return state


@pytest.fixture(scope="module")
def agent_image(tmp_path_factory) -> Path:
    """The starter-toolkit-style image as an OCI layout."""
    out = tmp_path_factory.mktemp("image") / "oci"
    return images.build_agent_image(IMAGE_AGENT, "localhost/berth-test/agent:latest", out)


def registry_host(berth) -> str:
    return berth.url.split("://", 1)[1].rstrip("/")


def push(berth, layout: Path, repo: str, tag: str, tmp_path: Path) -> str:
    """Pushes the layout to Berth's registry with skopeo; returns the ECR-style URI."""
    host = registry_host(berth)
    auth = images.authfile(tmp_path / "auth.json", host, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    images.skopeo_copy(f"oci:{layout}", f"docker://{host}/{repo}:{tag}", dest_auth=auth)
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}:{tag}"


def invoke(data, arn, qualifier, payload, session=None):
    resp = data.invoke_agent_runtime(
        agentRuntimeArn=arn,
        qualifier=qualifier,
        runtimeSessionId=session or new_session_id("img"),
        payload=json.dumps(payload).encode(),
    )
    return resp, resp["response"].read().decode()


def test_the_seeds_update_runtime_deploys_an_image_that_serves_and_rolls_back(
    berth, control, data, s3, agent_image, tmp_path, monkeypatch
):
    # A runtime on a zip version, with the seed's `staging` endpoint on it.
    zip_version = deploy_agent(control, s3, hello_agent_zip(), name=unique_name("seedimg"))
    runtime_id = zip_version["agentRuntimeId"]
    arn = zip_version["agentRuntimeArn"]
    created = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name="staging", agentRuntimeVersion="1"
    )
    assert_status(created, 202)
    wait_endpoint(control, runtime_id, "staging")

    repo = f"seed/{unique_name('agent').lower().replace('_', '-')}"
    uri = push(berth, agent_image, repo, "v1", tmp_path)

    # The seed's code builds its own client from the environment, as it would on AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", berth.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    state = update_runtime(
        DeployState(ecr_uri=uri),
        {"region": REGION, "agent_id": runtime_id, "env_vars": {"DEPLOYED_BY": "seed"}},
    )
    assert state.previous_version == "1"
    assert state.version == "2"
    ready = wait_status(control, runtime_id, "2", timeout=300)
    assert ready["agentRuntimeArtifact"] == {"containerConfiguration": {"containerUri": uri}}

    # Blue/green: staging moves to the image version.
    control.update_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, endpointName="staging", agentRuntimeVersion=state.version
    )
    wait_endpoint(control, runtime_id, "staging", live_version="2")

    resp, body = invoke(data, arn, "staging", {"prompt": "hello from the seed"})
    assert resp["contentType"].startswith("application/json"), resp["contentType"]
    answer = json.loads(body)
    assert answer["result"] == "hello from the seed"
    assert answer["from"] == "image"
    assert answer["cwd"] == "/app"
    assert answer["debian"].startswith("12"), answer
    assert answer["uid"] != 0, "agents never run as root"

    resp, body = invoke(data, arn, "staging", {"prompt": "one two three", "stream": True})
    assert resp["contentType"].startswith("text/event-stream"), resp["contentType"]
    events = [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]
    assert [e["word"] for e in events if "word" in e] == ["one", "two", "three"]
    assert events[-1]["done"] is True and events[-1]["from"] == "image"

    # Rollback is a single call, to the version the pipeline recorded.
    control.update_agent_runtime_endpoint(
        agentRuntimeId=runtime_id,
        endpointName="staging",
        agentRuntimeVersion=state.previous_version,
    )
    wait_endpoint(control, runtime_id, "staging", live_version="1")
    _, body = invoke(data, arn, "staging", {"prompt": "back on zip"})
    answer = json.loads(body)
    assert answer["result"] == "back on zip" and "from" not in answer, answer


def test_an_image_the_registry_does_not_have_fails_the_version_clearly(berth, control, data, s3):
    zip_version = deploy_agent(control, s3, hello_agent_zip(), name=unique_name("noimg"))
    runtime_id = zip_version["agentRuntimeId"]
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/nobody/absent:v9"
    resp = control.update_agent_runtime(
        agentRuntimeId=runtime_id,
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": uri}},
        roleArn=zip_version["roleArn"],
        networkConfiguration=zip_version["networkConfiguration"],
    )
    failed = wait_status(control, runtime_id, resp["agentRuntimeVersion"], want=("UPDATE_FAILED",))
    assert "not found" in failed["failureReason"].lower(), failed["failureReason"]
    assert "nobody/absent" in failed["failureReason"], failed["failureReason"]


#: The external registry's host as deploy code names it: an ECR-style host the operator maps to it.
EXTERNAL_HOST = "111122223333.dkr.ecr.us-west-2.amazonaws.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def external_registry(tmp_path):
    """Debian's docker-registry on loopback with htpasswd basic auth: (address, user, password)."""
    user, password = "deployer", "registry-secret-42"
    htpasswd = images.run("htpasswd", "-Bbn", user, password)
    (tmp_path / "htpasswd").write_text(htpasswd + "\n")
    port = free_port()
    (tmp_path / "config.yml").write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'store'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {tmp_path / 'htpasswd'}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(tmp_path / "config.yml")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "registry.log", "w"),
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "registry.log").read_text()
        assert time.monotonic() < deadline, "docker-registry never answered"
        time.sleep(0.05)
    yield address, user, password
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_an_image_from_an_external_registry_with_auth_is_pulled_and_served(
    berth_server, external_registry, agent_image, tmp_path
):
    address, user, password = external_registry
    auth = images.authfile(tmp_path / "ext-auth.json", address, user, password)
    images.skopeo_copy(f"oci:{agent_image}", f"docker://{address}/team/agent:v1", dest_auth=auth)

    def server_with(secret: str, name: str):
        config = tmp_path / f"{name}.toml"
        config.write_text(
            f'[hosts."{EXTERNAL_HOST}"]\n'
            f'url = "http://{address}"\n'
            f'credentials = {{ basic = {{ username = "{user}", password = "{secret}" }} }}\n'
        )
        return berth_server(name=name, args=("--registries", str(config)))

    server = server_with(password, "mapped")
    control = server.client("bedrock-agentcore-control")
    data = server.client("bedrock-agentcore")
    uri = f"{EXTERNAL_HOST}/team/agent:v1"
    created = control.create_agent_runtime(
        agentRuntimeName=unique_name("external"),
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": uri}},
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/berth-conformance",
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    ready = wait_status(control, created["agentRuntimeId"], "1", timeout=300)
    _, body = invoke(data, ready["agentRuntimeArn"], "DEFAULT", {"prompt": "from afar"})
    answer = json.loads(body)
    assert answer["result"] == "from afar" and answer["from"] == "image"

    # The operator sees the cached image and who pins it; pruning keeps it while pinned and
    # removes it, layers too, once its runtime is gone.
    def cli_json(*args):
        done = run_cli(server, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    cached = cli_json("images", "list")
    assert len(cached) == 1, cached
    assert cached[0]["usedBy"] == [{"runtimeId": ready["agentRuntimeId"], "version": 1}]
    assert cached[0]["reference"].endswith("team/agent:v1"), cached
    assert cached[0]["platform"] == "linux/amd64", cached
    layers_dir = server.data_dir / "images" / "layers" / "sha256"
    unpacked = [p for p in layers_dir.iterdir() if p.is_dir()]
    assert len(unpacked) == cached[0]["layers"], unpacked
    assert cli_json("images", "prune") == {"images": [], "layers": []}
    control.delete_agent_runtime(agentRuntimeId=ready["agentRuntimeId"])
    wait_not_found(control.get_agent_runtime, agentRuntimeId=ready["agentRuntimeId"])
    pruned = cli_json("images", "prune")
    assert pruned["images"] == [cached[0]["digest"]], pruned
    assert len(pruned["layers"]) == cached[0]["layers"], pruned
    assert cli_json("images", "list") == []
    assert not [p for p in layers_dir.iterdir() if p.is_dir()]

    # The same registry with a wrong password: the version fails and says why.
    denied = server_with("not-the-password", "denied")
    control = denied.client("bedrock-agentcore-control")
    created = control.create_agent_runtime(
        agentRuntimeName=unique_name("denied"),
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": uri}},
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/berth-conformance",
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    failed = wait_status(control, created["agentRuntimeId"], "1", want=("CREATE_FAILED",))
    assert "denied" in failed["failureReason"].lower(), failed["failureReason"]


def test_berth_deploy_builds_a_dockerfile_pushes_it_here_and_serves_it(berth, data, control, tmp_path):
    base = images.debian_base()
    ctx = tmp_path / "agent"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(images.DOCKERFILE.format(base=base, cmd=json.dumps(images.STARTER_CMD)))
    (ctx / "requirements.txt").write_text("\n".join(images.IMAGE_REQUIREMENTS) + "\n")
    (ctx / "agent.py").write_text(IMAGE_AGENT)
    import shutil

    shutil.copytree(images.wheels(), ctx / "wheels", ignore=shutil.ignore_patterns(".complete"))
    # The CLI runs the host's buildah as a user would; its storage here is the suite's, where the
    # Debian base image is.
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{images.STORAGE}"\n'
        f'runroot = "{tmp_path / "run"}"\n'
    )
    name = unique_name("cliimg")
    # (No OCI runtime is installed here: buildah runs RUN steps chrooted, by its own variable.)
    done = run_cli(berth, "deploy", str(ctx), "--name", name,
                   env={"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"},
                   timeout=600)
    assert done.returncode == 0, done.stderr
    assert "pushing" in done.stderr and "buildah" in done.stderr, done.stderr
    # The CLI prints the new version's runtime ARN.
    arn = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("arn:"))
    runtime_id = arn.rsplit("/", 1)[-1]
    got = control.get_agent_runtime(agentRuntimeId=runtime_id)
    uri = got["agentRuntimeArtifact"]["containerConfiguration"]["containerUri"]
    assert uri.startswith(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name.lower()}:v"), uri
    _, body = invoke(data, got["agentRuntimeArn"], "DEFAULT", {"prompt": "built by berth deploy"})
    assert json.loads(body)["from"] == "image"
