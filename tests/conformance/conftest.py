"""Fixtures for the Python conformance suite: a real `berth serve` and unmodified boto3 clients.

- `berth`: one server for the whole session (tests use unique names, so they share it).
- `berth_server`: a factory for private servers (crash/restart tests); all stopped at teardown.
- `control`, `data`, `s3`: boto3 clients for the session server; `control_unvalidated` has
  botocore's client-side parameter validation off, to reach the server's own validation.
- `artifact`: examples/hello-agent zipped and uploaded once per session.
- `data_unvalidated`: the data-plane client without client-side validation.
- `probe`: the probe agent (agents/probe) deployed once on the session server, READY.
- `berth_lifecycle`: a second shared server for lifecycle tests: short lifecycle timeouts
  allowed, /ping every 100 ms, a 4 s start timeout, no warm pool (so every sandbox of a
  runtime belongs to a session the test opened).

The helpers (`wait_status`, `unique_name`, ...) live in berth_harness.py and are re-exported
here; tests import them from `berth_harness`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from berth_harness import (  # noqa: F401  (re-exported for tests and plugins)
    ACCOUNT,
    ARTIFACT_BUCKET,
    REGION,
    BerthServer,
    deploy_agent,
    hello_agent_zip,
    unique_name,
    wait_status,
)

# Servers started in this session, so a failing test's report can carry their logs.
_SERVERS: list[BerthServer] = []


@pytest.fixture(scope="session")
def berth(tmp_path_factory) -> BerthServer:
    """The shared session server."""
    root = tmp_path_factory.mktemp("berth-session")
    server = BerthServer(root / "data", root / "berth.log")
    _SERVERS.append(server)
    server.start()
    yield server
    server.stop()
    server.reap_group()


@pytest.fixture
def berth_server(tmp_path):
    """Factory: `berth_server(data_dir=None, name="private", args=())` starts a private server
    (`args`: extra `berth serve` flags).

    Pass the same `data_dir` again to restart on existing state. Every server started
    through the factory is stopped (SIGTERM, then SIGKILL) and reaped at teardown.
    """
    started: list[BerthServer] = []

    def start(
        data_dir: Path | None = None, name: str = "private", args: tuple = ()
    ) -> BerthServer:
        index = len(started)
        server = BerthServer(
            Path(data_dir) if data_dir else tmp_path / f"{name}-data",
            tmp_path / f"{name}-{index}.log",
            args=args,
        )
        started.append(server)
        _SERVERS.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
        server.reap_group()


@pytest.fixture(scope="session")
def control(berth):
    """boto3 `bedrock-agentcore-control` client for the session server."""
    return berth.client("bedrock-agentcore-control")


@pytest.fixture(scope="session")
def control_unvalidated(berth):
    """Like `control`, with botocore's client-side parameter validation off."""
    return berth.client("bedrock-agentcore-control", validate=False)


@pytest.fixture(scope="session")
def data(berth):
    """boto3 `bedrock-agentcore` (data plane) client for the session server."""
    return berth.client("bedrock-agentcore")


@pytest.fixture(scope="session")
def data_unvalidated(berth):
    """Like `data`, with botocore's client-side parameter validation off."""
    return berth.client("bedrock-agentcore", validate=False)


@pytest.fixture(scope="session")
def s3(berth):
    """boto3 S3 client for the session server's artifact store (path-style)."""
    return berth.s3_client()


@pytest.fixture(scope="session")
def artifact_zip() -> bytes:
    """The hello-agent deployment zip."""
    return hello_agent_zip()


@pytest.fixture(scope="session")
def artifact(s3, artifact_zip) -> dict:
    """Upload the hello-agent zip once; returns `{"bucket": ..., "prefix": ...}`."""
    digest = hashlib.sha256(artifact_zip).hexdigest()[:16]
    key = f"hello-agent/{digest}/deployment_package.zip"
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=artifact_zip)
    head = s3.head_object(Bucket=ARTIFACT_BUCKET, Key=key)
    assert head["ContentLength"] == len(artifact_zip)
    return {"bucket": ARTIFACT_BUCKET, "prefix": key}


@pytest.fixture(scope="session")
def probe(control, s3) -> dict:
    """agents/probe deployed on the session server; the READY GetAgentRuntime response."""
    return deploy_agent(control, s3, "probe")


#: `berth serve` flags of the lifecycle server.
LIFECYCLE_ARGS = (
    "--allow-short-lifecycle",
    "--ping-interval-ms",
    "100",
    "--start-timeout",
    "4",
    "--warm-pool",
    "0",
)


@pytest.fixture(scope="session")
def berth_lifecycle(tmp_path_factory) -> BerthServer:
    """A shared server for lifecycle and start-failure tests (see LIFECYCLE_ARGS)."""
    root = tmp_path_factory.mktemp("berth-lifecycle")
    server = BerthServer(root / "data", root / "berth.log", args=LIFECYCLE_ARGS)
    _SERVERS.append(server)
    server.start()
    yield server
    server.stop()
    server.reap_group()


_TEST_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_TEST_STARTED] = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of each server the failing test could have used to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        started = item.stash.get(_TEST_STARTED, 0.0)
        for index, server in enumerate(_SERVERS):
            if (server.alive or server.started_at >= started) and server.log_path.exists():
                report.sections.append(
                    (f"berth log {index} ({server.log_path})", server.log_tail(60))
                )
