"""Fixtures for the Python conformance suite: a real `berth serve` and unmodified boto3 clients.

- `berth`: one server for the whole session (tests use unique names, so they share it).
- `berth_server`: a factory for private servers (crash/restart tests); all stopped at teardown.
- `module_server`: a factory for servers with special flags shared by one test module.
- `control`, `data`, `s3`: boto3 clients for the session server; `control_unvalidated` has
  botocore's client-side parameter validation off, to reach the server's own validation.
- `artifact`: examples/hello-agent zipped and uploaded once per session.
- `data_unvalidated`: the data-plane client without client-side validation.
- `probe`: the probe agent (agents/probe) deployed once on the session server, READY.
- `berth_tight`: a second shared server with tight timeouts and limits (TIGHT_ARGS: short
  lifecycle timeouts allowed, /ping every 100 ms, a 10 s start timeout, no warm pool, 128 MiB
  and 64 pids per session) for lifecycle, start-failure and resource-limit tests.

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
    BUILD_TIMEOUT,
    REGION,
    BerthServer,
    deploy_agent,
    hello_agent_zip,
    unique_name,
    wait_status,
)

# Servers started in this session, so a failing test's report can carry their logs.
_SERVERS: list[BerthServer] = []


#: `berth serve` flags of the shared server: the whole suite's sessions pile up on a few runtimes
#: (idle ones live for 15 minutes), and the quotas are not what it tests (tests/security does).
SHARED_ARGS = (
    "--max-sessions",
    "1000",
    "--max-sessions-per-runtime",
    "1000",
    "--session-rate",
    "1000",
    "--session-rate-per-runtime",
    "1000",
)


@pytest.fixture(scope="session")
def berth(tmp_path_factory) -> BerthServer:
    """The shared session server."""
    root = tmp_path_factory.mktemp("berth-session")
    server = BerthServer(root / "data", root / "berth.log", args=SHARED_ARGS)
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


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """Factory: `module_server(name, args=(), **options)` starts a server shared by one test
    module (extra `berth serve` flags in `args`, BerthServer options such as
    `test_credentials=False`); stopped and reaped when the module is done."""
    started: list[BerthServer] = []

    def start(name: str, args: tuple = (), **options) -> BerthServer:
        root = tmp_path_factory.mktemp(f"berth-{name}")
        server = BerthServer(root / "data", root / "berth.log", args=args, **options)
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


#: `berth serve` flags of the `berth_tight` server.
TIGHT_ARGS = (
    # Lifecycle timeouts of seconds (AgentCore's minimum is 60 s), noticed within 100 ms.
    "--allow-short-lifecycle",
    "--ping-interval-ms",
    "100",
    # Short, but long enough for a healthy agent to start on a loaded 2-core machine.
    "--start-timeout",
    "10",
    # Every sandbox of a runtime then belongs to a session a test opened.
    "--warm-pool",
    "0",
    # Small enough for a fork bomb or a memory hog to hit; the probe agent fits easily.
    "--session-memory-mib",
    "128",
    "--session-pids",
    "64",
)


@pytest.fixture(scope="session")
def berth_tight(tmp_path_factory) -> BerthServer:
    """A second shared server with tight timeouts and limits (see TIGHT_ARGS), for lifecycle,
    start-failure and resource-limit tests."""
    root = tmp_path_factory.mktemp("berth-tight")
    server = BerthServer(root / "data", root / "berth.log", args=TIGHT_ARGS)
    _SERVERS.append(server)
    server.start()
    yield server
    server.stop()
    server.reap_group()


_TEST_STARTED = pytest.StashKey[float]()

#: The deadline of a test marked `build` that sets none of its own. pytest-timeout's deadline
#: covers the test's fixtures too, and a module's first test carries that module's builds (the
#: Strands agents take minutes on a loaded machine), so pytest.ini's 120 s is too short for them.
BUILD_TEST_TIMEOUT = max(600, int(BUILD_TIMEOUT * 2))


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("build") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(BUILD_TEST_TIMEOUT))


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
