"""The AWS SDK for Rust against the session's `berth serve`.

`tests/rust-sdk` (the `berth-rust-sdk-check` binary, built with the workspace) drives the
unmodified public crates `aws-sdk-bedrockagentcore` and `aws-sdk-bedrockagentcorecontrol`:
a runtime from S3 through its life cycle and endpoints, tags, invocations in JSON and SSE,
StopRuntimeSession, the errors each plane answers, a limited key, and memory events. The Rust
SDK parses every answer into typed outputs: a required member missing or a timestamp in another
form fails the call, where boto3 would pass the dictionary on. What each check covers is said in
tests/rust-sdk/src/main.rs.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    BUILD_TIMEOUT,
    REGION,
    ROLE_ARN,
    SECRET_ACCESS_KEY,
    access_key_allowing,
    agent_zip,
    berth_binary,
    python_runtime,
    upload_artifact,
)

#: Every check the binary runs, in its order: none may be skipped or renamed silently.
CHECKS = [
    "create a runtime from S3 and wait until READY",
    "list runtimes (paginated) and versions",
    "invoke: a JSON answer, the same session twice",
    "invoke: an SSE answer read as it streams",
    "invoke: unknown qualifier, RuntimeClientError",
    "StopRuntimeSession",
    "update to v2; DEFAULT and a named endpoint moved from v1 to v2",
    "tag, list tags, untag",
    "control-plane errors",
    "a key allowed only GetAgentRuntime",
    "memory: create, events, sessions, actors, delete",
    "delete the runtime",
]


def _binary():
    # Built by `cargo build --workspace` next to the server under test.
    path = berth_binary().parent / "berth-rust-sdk-check"
    if not path.is_file():
        pytest.fail(f"{path} is missing: cargo build --workspace builds it (tests/rust-sdk)")
    return path


@pytest.mark.build
@pytest.mark.timeout(3 * BUILD_TIMEOUT + 300)
def test_rust_sdk(berth, s3):
    binary = _binary()
    location = upload_artifact(s3, agent_zip("probe"), name="rust-probe")
    # The limited key: one call allowed, the others denied.
    limited_id, limited_secret = access_key_allowing(berth, "bedrock-agentcore:GetAgentRuntime")
    # Nothing of the developer's AWS set-up may reach the SDK: only what is set here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(
        BERTH_RS_ENDPOINT=berth.url,
        BERTH_RS_REGION=REGION,
        BERTH_RS_KEY_ID=ACCESS_KEY_ID,
        BERTH_RS_SECRET=SECRET_ACCESS_KEY,
        BERTH_RS_LIMITED_KEY_ID=limited_id,
        BERTH_RS_LIMITED_SECRET=limited_secret,
        BERTH_RS_BUCKET=location["bucket"],
        BERTH_RS_KEY=location["prefix"],
        BERTH_RS_PYTHON_RUNTIME=python_runtime(),
        BERTH_RS_ROLE_ARN=ROLE_ARN,
        BERTH_RS_BUILD_TIMEOUT=str(int(BUILD_TIMEOUT)),
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = subprocess.run(
        [str(binary)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3 * BUILD_TIMEOUT + 240,
    )
    output = f"{result.stdout}\n{result.stderr}"
    lines = re.findall(r"^(ok|not ok) (.+)$", result.stdout, re.M)
    failed = [name for verdict, name in lines if verdict == "not ok"]
    assert not failed, output
    assert [name for _, name in lines] == CHECKS, output
    assert result.returncode == 0, output
