"""The AWS SDK for JavaScript v3 against the session's `berth serve` (issue 13, item 2).

Each `tests/js/*.test.mjs` file runs as one `node --test` process with the server's endpoint
and the suite's credentials in its environment; the packages are the unmodified public
`@aws-sdk/client-bedrock-agentcore`, `-control` and `client-s3` pinned by
tests/js/package-lock.json and installed by scripts/setup-node.sh. What each file covers is
said at its top; tests/js/lib.mjs holds the clients and helpers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    ARTIFACT_BUCKET,
    BUILD_TIMEOUT,
    REGION,
    REPO,
    ROLE_ARN,
    SECRET_ACCESS_KEY,
    STATE_TIMEOUT,
    access_key_allowing,
    agent_zip,
    poll,
    python_runtime,
)

JS_DIR = REPO / "tests" / "js"
SCRIPTS = sorted(JS_DIR.glob("*.test.mjs"))
PACKAGES = (
    "@aws-sdk/client-bedrock-agentcore",
    "@aws-sdk/client-bedrock-agentcore-control",
    "@aws-sdk/client-s3",
)
#: The only permission of the limited key: errors.test.mjs shows one call allowed, others denied.
LIMITED_ACTION = "bedrock-agentcore:GetAgentRuntime"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found on PATH: run scripts/setup-node.sh (Node.js 20 or newer)")
    for package in PACKAGES:
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"{package} is not installed in tests/js: run scripts/setup-node.sh")
    return node


EXPORT_LINE = re.compile(r"^export (AWS_[A-Z0-9_]+)=(\S+)\s*$")


def printed_exports(server) -> dict:
    """The `export AWS_...=...` lines `berth serve` printed on start (its log holds its stdout):
    the environment a user `eval`s; the JS clients take endpoints and region from it alone."""
    want = {
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": server.url,
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL": server.url,
        "AWS_ENDPOINT_URL_S3": server.url,
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": server.url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    }

    def read() -> dict:
        exports = {}
        for line in server.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = EXPORT_LINE.match(line)
            if match:
                exports.setdefault(match.group(1), match.group(2))
        return exports

    # The harness returns once the endpoint line is read; the lines after it may still be on
    # their way into the log.
    return poll(read, lambda exports: exports == want, timeout=STATE_TIMEOUT, what="the export lines")


@pytest.fixture(scope="module")
def js_env(berth, tmp_path_factory) -> tuple[dict, Path]:
    """The environment of every `node --test` run (endpoint, credentials, agent zip, limited
    key) and a directory for their TAP reports."""
    root = tmp_path_factory.mktemp("js-sdk")
    probe = root / "probe.zip"
    probe.write_bytes(agent_zip("probe"))
    limited_id, limited_secret = access_key_allowing(berth, LIMITED_ACTION)
    exports = printed_exports(berth)
    # Nothing of the developer's AWS set-up may reach the SDK: only what is set here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(exports)
    env.update(
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        BERTH_JS_LIMITED_KEY_ID=limited_id,
        BERTH_JS_LIMITED_SECRET=limited_secret,
        BERTH_JS_PROBE_ZIP=str(probe),
        BERTH_JS_PYTHON_RUNTIME=python_runtime(),
        BERTH_JS_ROLE_ARN=ROLE_ARN,
        BERTH_JS_BUCKET=ARTIFACT_BUCKET,
        BERTH_TEST_BUILD_TIMEOUT=str(int(BUILD_TIMEOUT)),
        NO_COLOR="1",
    )
    return env, root


def test_js_suite_is_present():
    assert [s.name for s in SCRIPTS] == [
        "command.test.mjs",
        "control.test.mjs",
        "data.test.mjs",
        "errors.test.mjs",
        "eval.test.mjs",
        "identity.test.mjs",
        "memory.test.mjs",
        "s3.test.mjs",
    ]


#: Builds dominate: control.test.mjs waits for two, the others for at most one.
NODE_TIMEOUT = 3 * BUILD_TIMEOUT + 120


#: The files that wait for artifact builds (the `build` mark, so `-m "not build"` skips them).
BUILDING = {"control.test.mjs", "data.test.mjs"}


@pytest.mark.timeout(NODE_TIMEOUT + 60)
@pytest.mark.parametrize(
    "script",
    [
        pytest.param(s, id=s.name.removesuffix(".test.mjs"),
                     marks=[pytest.mark.build] if s.name in BUILDING else [])
        for s in SCRIPTS
    ],
)
def test_js_sdk(script: Path, js_env: tuple[dict, Path]):
    node = _node()
    env, reports = js_env
    tap = reports / f"{script.stem}.tap"
    result = subprocess.run(
        [
            node,
            "--test",
            "--test-reporter=spec",
            "--test-reporter-destination=stdout",
            "--test-reporter=tap",
            f"--test-reporter-destination={tap}",
            script.name,
        ],
        cwd=JS_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
    )
    output = f"{result.stdout}\n{result.stderr}"
    summary = tap.read_text() if tap.exists() else ""
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|cancelled) (\d+)$", summary, re.M)}
    assert result.returncode == 0, output
    # A file whose tests did not run (an import error, no tests) must not pass silently.
    assert counts.get("tests", 0) > 0 and counts["pass"] == counts["tests"], (counts, output)
    assert counts.get("fail", 0) == 0 and counts.get("cancelled", 0) == 0, (counts, output)
