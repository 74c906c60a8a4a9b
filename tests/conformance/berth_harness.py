"""Start, stop and talk to a real `berth serve` process from the conformance suite.

Kept apart from conftest.py so tests can import the helpers by name
(`from berth_harness import wait_status`); conftest.py only wires them into fixtures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

import wire_check

# Every AgentCore response any client of this test process receives is checked against the
# service model (wire_check.py), so a drift fails the test that met it.
wire_check.install()

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "000000000000"
# Test-only credentials in the shapes of real ones (20 and 40 characters); the server is
# started with them and every client signs with them.
ACCESS_KEY_ID = "AKIABERTHCONFORMANCE"
SECRET_ACCESS_KEY = "berthConformanceSecretKey/0123456789abcd"
assert len(ACCESS_KEY_ID) == 20 and len(SECRET_ACCESS_KEY) == 40

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/berth-conformance"
ARTIFACT_BUCKET = "berth-conformance"

#: How long a build (CREATING -> READY) may take; the first build installs the SDK.
BUILD_TIMEOUT = float(os.environ.get("BERTH_TEST_BUILD_TIMEOUT", "300"))
#: How long an asynchronous state change without a build (deletion, failure) may take.
STATE_TIMEOUT = float(os.environ.get("BERTH_TEST_STATE_TIMEOUT", "60"))
#: Interval between polls of a status; the deadline, not the interval, bounds the wait.
POLL_INTERVAL = 0.2

ENDPOINT_LINE = re.compile(r"^export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL=(\S+)\s*$")
RUNTIME_ID = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,47}-[a-zA-Z0-9]{10}$")
ENDPOINT_ID = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,99}-[a-zA-Z0-9]{10}$")
ISO8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

RUNTIME_STATUSES = {
    "CREATING",
    "CREATE_FAILED",
    "UPDATING",
    "UPDATE_FAILED",
    "READY",
    "DELETING",
    "DELETE_FAILED",
}
FAILED_STATUSES = {"CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"}
TRANSITIONAL_STATUSES = {"CREATING", "UPDATING", "DELETING"}


def berth_binary() -> Path:
    """The server binary under test: `$BERTH_BIN`, else the workspace's debug build."""
    return Path(os.environ.get("BERTH_BIN", REPO / "target" / "debug" / "berth"))


def python_runtime() -> str:
    """The `codeConfiguration.runtime` enum value matching this machine's Python."""
    override = os.environ.get("BERTH_TEST_PYTHON_RUNTIME")
    if override:
        return override
    minor = sys.version_info.minor
    return (
        f"PYTHON_3_{minor}" if sys.version_info.major == 3 and 10 <= minor <= 14 else "PYTHON_3_12"
    )


# ----------------------------------------------------------------------------- server


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if pytest dies, so no server outlives a run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: teardown still stops the server


@contextlib.contextmanager
def postgres_database():
    """A throwaway PostgreSQL cluster with one database (`berth-pgtest`, built next to the berth
    binary): yields its URL; the cluster stops and its directory goes when the block ends."""
    binary = berth_binary().parent / "berth-pgtest"
    if not binary.exists():
        pytest.fail(f"{binary} not found: run `cargo build -p berth-pgtest`")
    proc = subprocess.Popen(
        [str(binary)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        url = proc.stdout.readline().strip()
        if not url:
            proc.wait(timeout=60)
            pytest.fail(f"berth-pgtest could not start PostgreSQL: {proc.stderr.read()[-2000:]}")
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class BerthServer:
    """One `berth serve` child process on an OS-assigned port with its own data dir."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        binary: Path | None = None,
        args: Iterable[str] = (),
        test_credentials: bool = True,
    ):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.binary = binary or berth_binary()
        #: Extra `berth serve` flags (`--start-timeout 3`...), kept across restarts.
        self.args = list(args)
        #: Start with the suite's root credentials (`BERTH_ACCESS_KEY_ID`...); when False the
        #: server generates its own into the data dir, as on a user's first start, and only
        #: clients that read them from there (the CLI) can talk to it.
        self.test_credentials = test_credentials
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self._ready = threading.Event()
        # Held while a log line is written; notified after each, for `wait_for_log`.
        self._log_lock = threading.Condition()
        self._log = None
        self._readers: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "BerthServer":
        """Start the process and wait until it prints its endpoint URL."""
        if not self.binary.exists():
            pytest.fail(
                f"berth binary not found at {self.binary}: run `cargo build -p berth` "
                "or set BERTH_BIN"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The server must not pick up the developer's real AWS settings.
        for key in list(env):
            if key.startswith("AWS_"):
                del env[key]
        env.update(
            BERTH_LOG=os.environ.get("BERTH_LOG", "info"),
            # Logs go to a file, not a terminal: no colour escapes.
            NO_COLOR="1",
        )
        if self.test_credentials:
            env.update(BERTH_ACCESS_KEY_ID=ACCESS_KEY_ID, BERTH_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
        else:
            env.pop("BERTH_ACCESS_KEY_ID", None)
            env.pop("BERTH_SECRET_ACCESS_KEY", None)
        self._ready.clear()
        self.url = None
        self.started_at = time.monotonic()
        self._log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        self._write_log(
            f"--- starting {self.binary} serve (data dir {self.data_dir}) {' '.join(self.args)}\n"
        )
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            # Own process group, so teardown can also reap whatever the server spawned
            # (builds, agents) if it leaves them behind after a crash.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._join_readers()
                pytest.fail(
                    f"berth exited with {self.proc.returncode} before printing its endpoint:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(
                    f"berth printed no endpoint line within {timeout} s:\n" + self.log_tail()
                )
        return self

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; always reaps. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._write_log(f"--- berth ignored SIGTERM for {grace} s, sending SIGKILL\n")
                self.proc.kill()
                self.proc.wait()
        self._finish()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server process only (a crash); its children are left as a crash leaves them."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._finish()

    def reap_group(self) -> bool:
        """SIGKILL anything left in the server's process group; True if something was left."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- clients ---------------------------------------------------------------------

    def client(self, service: str, *, validate: bool = True, **config):
        """A boto3 client for this server, signed with the test credentials.

        Retries are off so the suite sees every error the server returns.
        `validate=False` turns off botocore's client-side parameter validation, to reach
        the server's own validation.
        """
        assert self.url, "server not started"
        options = dict(
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=60,
            parameter_validation=validate,
        )
        options.update(config)
        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        return session.client(
            service, endpoint_url=self.url, config=botocore.config.Config(**options)
        )

    def s3_client(self, **config):
        """An S3 client for the server's artifact store (path-style addressing)."""
        return self.client("s3", s3={"addressing_style": "path"}, **config)

    # -- logs ------------------------------------------------------------------------

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _drain(self, stream, is_stdout: bool) -> None:
        prefix = "" if is_stdout else "[stderr] "
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self._write_log(prefix + line)
            if is_stdout and not self._ready.is_set():
                match = ENDPOINT_LINE.match(line.strip())
                if match:
                    self.url = match.group(1)
                    self._ready.set()
        stream.close()

    def _write_log(self, text: str) -> None:
        with self._log_lock:
            if self._log is not None and not self._log.closed:
                self._log.write(text)
                self._log.flush()
            self._log_lock.notify_all()

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The log once it holds `text`. The server writes its log lines from a background thread
        and stdout and stderr are read by two threads, so a line the server wrote before its
        endpoint line may reach the log after it. Fails after `timeout` seconds."""
        seen = ""
        with open(self.log_path, encoding="utf-8", errors="replace") as log, self._log_lock:

            def found() -> bool:
                # Only what was written since the last look is read.
                nonlocal seen
                seen += log.read()
                return text in seen

            if not self._log_lock.wait_for(found, timeout=timeout):
                pytest.fail(f"{text!r} not in the server log within {timeout} s:\n" + self.log_tail())
        return seen

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def _finish(self) -> None:
        self._join_readers()
        self._write_log(f"--- berth exited with {self.proc.returncode}\n")
        with self._log_lock:
            if self._log is not None:
                self._log.close()


# ----------------------------------------------------------------------------- helpers


def unique_name(prefix: str = "t") -> str:
    """A runtime/endpoint name that matches `[a-zA-Z][a-zA-Z0-9_]{0,47}` and is unique."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def client_token() -> str:
    """A client token that satisfies the model (33-256 chars, alphanumerics and dashes)."""
    return f"tok-{uuid.uuid4().hex}"


def runtime_arn(runtime_id: str) -> str:
    return f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{runtime_id}"


def endpoint_arn(runtime_id: str, name: str) -> str:
    return f"{runtime_arn(runtime_id)}/runtime-endpoint/{name}"


def code_artifact(artifact: dict, **overrides) -> dict:
    """`agentRuntimeArtifact` for the hello-agent zip described by `artifact`."""
    s3 = {"bucket": artifact["bucket"], "prefix": artifact["prefix"]}
    config = {
        "code": {"s3": s3},
        "runtime": python_runtime(),
        "entryPoint": ["agent.py"],
    }
    config.update(overrides)
    return {"codeConfiguration": config}


def runtime_args(artifact: dict, name: str | None = None, **extra) -> dict:
    """Keyword arguments for a valid `create_agent_runtime` call."""
    args = {
        "agentRuntimeName": name or unique_name(),
        "agentRuntimeArtifact": code_artifact(artifact),
        "roleArn": ROLE_ARN,
        "networkConfiguration": {"networkMode": "PUBLIC"},
    }
    args.update(extra)
    return args


def update_args(artifact: dict, **extra) -> dict:
    """Keyword arguments (minus the id) for a valid `update_agent_runtime` call."""
    args = {
        "agentRuntimeArtifact": code_artifact(artifact),
        "roleArn": ROLE_ARN,
        "networkConfiguration": {"networkMode": "PUBLIC"},
    }
    args.update(extra)
    return args


def create_runtime(control, artifact: dict, **extra) -> dict:
    """Create a runtime and check the status code; returns the response."""
    resp = control.create_agent_runtime(**runtime_args(artifact, **extra))
    assert_status(resp, 202)
    return resp


def assert_status(resp: dict, status: int) -> None:
    """The HTTP status boto3 saw, and a request id on the response."""
    meta = resp["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == status, meta
    assert meta.get("RequestId"), f"no x-amzn-RequestId header: {meta.get('HTTPHeaders')}"


def assert_recent(value, *, slack: float = 600.0) -> None:
    """A timezone-aware datetime within `slack` seconds of now."""
    assert isinstance(value, dt.datetime), f"{value!r} is not a datetime"
    assert value.tzinfo is not None, f"{value!r} has no timezone"
    delta = abs((dt.datetime.now(dt.timezone.utc) - value).total_seconds())
    assert delta < slack, f"{value!r} is {delta:.0f} s away from now"


def expect_error(call: Callable, code: str, status: int | None = None, **kwargs) -> dict:
    """Call `call(**kwargs)`, require a ClientError with `code` (and HTTP `status`).

    Returns the parsed error response (`Error`, `ResponseMetadata`, modelled fields such
    as `reason` and `fieldList`).
    """
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    got = response["Error"]["Code"]
    meta = response["ResponseMetadata"]
    assert got == code, (
        f"expected {code}, got {got} (HTTP {meta.get('HTTPStatusCode')}): "
        f"{response['Error'].get('Message')}"
    )
    if status is not None:
        assert meta["HTTPStatusCode"] == status, meta
    assert meta.get("RequestId"), f"no x-amzn-RequestId on error: {meta.get('HTTPHeaders')}"
    return response


def expect_validation(call: Callable, field: str | None = None, **kwargs) -> dict:
    """Require a 400 ValidationException with `reason` and a `fieldList` naming `field`."""
    response = expect_error(call, "ValidationException", 400, **kwargs)
    assert response.get("reason"), f"ValidationException without reason: {response}"
    if field is not None:
        assert response.get("reason") == "FieldValidationFailed", response
        fields = response.get("fieldList")
        assert isinstance(fields, list) and fields, f"no fieldList: {response}"
        for entry in fields:
            assert entry.get("name") and entry.get("message"), entry
        names = [entry["name"] for entry in fields]
        assert any(field.lower() in name.lower() for name in names), (
            f"fieldList {names} does not name {field!r}"
        )
    return response


def poll(
    probe: Callable[[], object],
    done: Callable[[object], bool],
    *,
    timeout: float,
    what: str,
):
    """Call `probe` until `done(result)`; fails with the last result after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if done(last):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(POLL_INTERVAL)


def wait_status(
    control,
    runtime_id: str,
    version: str | None = None,
    want: Iterable[str] = ("READY",),
    timeout: float = BUILD_TIMEOUT,
) -> dict:
    """Poll GetAgentRuntime (for `version`, else the latest) until its status is in `want`.

    A failed status not in `want` ends the wait at once with the failure reason.
    """
    want = set(want)
    kwargs = {"agentRuntimeId": runtime_id}
    if version is not None:
        kwargs["agentRuntimeVersion"] = version

    def done(resp):
        status = resp["status"]
        if status in want:
            return True
        if status in FAILED_STATUSES:
            pytest.fail(
                f"runtime {runtime_id} version {resp.get('agentRuntimeVersion')} is {status}: "
                f"{resp.get('failureReason')}"
            )
        return False

    return poll(
        lambda: control.get_agent_runtime(**kwargs),
        done,
        timeout=timeout,
        what=f"runtime {runtime_id} v{version or 'latest'} to be {sorted(want)}",
    )


def wait_endpoint(
    control,
    runtime_id: str,
    name: str,
    *,
    live_version: str | None = None,
    want: Iterable[str] = ("READY",),
    timeout: float = BUILD_TIMEOUT,
) -> dict:
    """Poll GetAgentRuntimeEndpoint until its status is in `want` (and `liveVersion` matches)."""
    want = set(want)

    def done(resp):
        if resp["status"] in FAILED_STATUSES and resp["status"] not in want:
            pytest.fail(f"endpoint {name} is {resp['status']}: {resp.get('failureReason')}")
        return resp["status"] in want and (
            live_version is None or resp.get("liveVersion") == live_version
        )

    return poll(
        lambda: control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name),
        done,
        timeout=timeout,
        what=f"endpoint {name} of {runtime_id} to be {sorted(want)} at v{live_version}",
    )


def wait_not_found(call: Callable, *, timeout: float = STATE_TIMEOUT, **kwargs) -> None:
    """Poll `call(**kwargs)` until it raises ResourceNotFoundException."""

    def probe():
        try:
            return call(**kwargs).get("status", "found")
        except ClientError as err:
            return err.response["Error"]["Code"]

    poll(probe, lambda r: r == "ResourceNotFoundException", timeout=timeout, what="not found")


def list_all(method: Callable, key: str, page_size: int | None = None, **kwargs) -> list[list]:
    """Walk every page of a list operation by hand; returns the pages' items."""
    pages = []
    token = None
    seen_tokens = set()
    while True:
        args = dict(kwargs)
        if page_size is not None:
            args["maxResults"] = page_size
        if token:
            args["nextToken"] = token
        resp = method(**args)
        assert_status(resp, 200)
        items = resp[key]
        if page_size is not None:
            assert len(items) <= page_size, f"page of {len(items)} > maxResults {page_size}"
        pages.append(items)
        token = resp.get("nextToken")
        if not token:
            return pages
        assert token not in seen_tokens, f"nextToken {token!r} repeated: paging loops"
        seen_tokens.add(token)
        assert len(pages) < 10_000, "paging does not end"


def zip_tree(source: Path) -> bytes:
    """A directory as a deployment zip (files at the archive root, no caches)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(source).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(source).as_posix())
    return buffer.getvalue()


def hello_agent_zip() -> bytes:
    """examples/hello-agent as a deployment zip (files at the archive root)."""
    return zip_tree(REPO / "examples" / "hello-agent")


# ----------------------------------------------------------------------------- raw signed requests


class RawResponse:
    """What a raw request got back: status, headers (case-insensitive) and body."""

    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def error_type(self) -> str | None:
        """`x-amzn-ErrorType` without the `:<docs-url>` suffix AWS sometimes appends."""
        value = self.headers.get("x-amzn-ErrorType")
        return value.split(":", 1)[0] if value else None

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-amzn-RequestId")

    def json(self):
        import json

        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.error_type} {self.body[:300]!r}>"


def _upper_escapes(text: str) -> str:
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), text)


def raw_request(
    base_url: str,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: dict | None = None,
    sign: bool = True,
    access_key: str = ACCESS_KEY_ID,
    secret_key: str = SECRET_ACCESS_KEY,
    region: str = REGION,
    service: str = "bedrock-agentcore",
    signed_path: str | None = None,
    signed_query: str | None = None,
    signed_body: bytes | None = None,
    signed_headers: dict | None = None,
    signed_at: dt.datetime | None = None,
    timeout: float = 30.0,
) -> RawResponse:
    """Send one request with SigV4 computed by botocore's own signer.

    `path` and `query` go on the wire exactly as given (already percent-encoded). The
    `signed_*` arguments sign something other than what is sent, to tamper with a request
    after signing; `signed_at` signs with another clock.
    """
    from unittest import mock
    from urllib.parse import urlsplit

    import urllib3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    # urllib3 upper-cases percent-escapes on the wire (`%2e` -> `%2E`); sign what is sent.
    path, query = _upper_escapes(path), _upper_escapes(query)
    signed_path = _upper_escapes(signed_path) if signed_path is not None else None
    signed_query = _upper_escapes(signed_query) if signed_query is not None else None
    send_headers = {"Content-Type": "application/json"} if body else {}
    send_headers.update(headers or {})
    if sign:
        to_sign = dict(send_headers)
        to_sign.update(signed_headers or {})
        sign_path = signed_path if signed_path is not None else path
        sign_query = signed_query if signed_query is not None else query
        url = base_url + sign_path + (f"?{sign_query}" if sign_query else "")
        request = AWSRequest(
            method=method,
            url=url,
            data=signed_body if signed_body is not None else body,
            headers=to_sign,
        )
        signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
        if signed_at is not None:
            with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
                signer.add_auth(request)
        else:
            signer.add_auth(request)
        for key in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if key in request.headers:
                send_headers[key] = request.headers[key]
        for key, value in (signed_headers or {}).items():
            # A header signed with one value but sent with another (tampering) keeps the
            # sent value; headers only signed are sent as signed.
            send_headers.setdefault(key, value)

    split = urlsplit(base_url)
    pool = urllib3.HTTPConnectionPool(
        split.hostname, split.port, timeout=urllib3.Timeout(total=timeout), retries=False
    )
    try:
        target = path + (f"?{query}" if query else "")
        resp = pool.urlopen(
            method,
            target,
            body=body if body or method in ("PUT", "POST") else None,
            headers=send_headers,
            redirect=False,
            preload_content=True,
        )
        return RawResponse(resp.status, resp.headers, resp.data)
    finally:
        pool.close()


# ----------------------------------------------------------------------------- agents, invocations

#: Test agents, one directory each (agent.py + requirements.txt). Every requirements.txt but
#: `otel`'s (which adds the OTel SDK and its OTLP exporter) is the same, so they share one built
#: environment per server.
AGENTS_DIR = Path(__file__).resolve().parent / "agents"


def agent_zip(name: str) -> bytes:
    """`agents/<name>` as a deployment zip."""
    source = AGENTS_DIR / name
    assert (source / "agent.py").is_file(), f"no test agent {name}"
    return zip_tree(source)


def zip_files(files: dict) -> bytes:
    """A deployment zip from `{archive path: text or bytes}`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def upload_artifact(s3, body: bytes, name: str = "agent") -> dict:
    """Put `body` into the artifact bucket under a content-addressed key.

    Returns `{"bucket": ..., "prefix": ...}` for `code_artifact`.
    """
    digest = hashlib.sha256(body).hexdigest()[:16]
    key = f"{name}/{digest}/deployment_package.zip"
    try:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=body)
    return {"bucket": ARTIFACT_BUCKET, "prefix": key}


def deploy_agent(
    control,
    s3,
    agent,
    *,
    name: str | None = None,
    want: Iterable[str] = ("READY",),
    timeout: float = BUILD_TIMEOUT,
    entry_point: str | list = "agent.py",
    **extra,
) -> dict:
    """Upload an agent (`agents/<agent>` by name, or zip bytes), create a runtime with boto3 and
    wait until its first version reaches a status in `want`.

    `entry_point` is the file to run, or the whole `entryPoint` list
    (`["opentelemetry-instrument", "agent.py"]`). `extra` goes to `create_agent_runtime`
    (`lifecycleConfiguration=...`). Returns the final GetAgentRuntime response.
    """
    body = agent_zip(agent) if isinstance(agent, str) else agent
    label = agent if isinstance(agent, str) else "inline"
    location = upload_artifact(s3, body, label)
    args = runtime_args(location, name or unique_name(label.replace("-", "_")), **extra)
    args["agentRuntimeArtifact"]["codeConfiguration"]["entryPoint"] = (
        [entry_point] if isinstance(entry_point, str) else list(entry_point)
    )
    created = control.create_agent_runtime(**args)
    assert_status(created, 202)
    return wait_status(control, created["agentRuntimeId"], "1", want=want, timeout=timeout)


def new_session_id(tag: str = "s") -> str:
    """A fresh runtime session id (the data plane wants 33 to 256 characters)."""
    return f"{tag}-{uuid.uuid4().hex}-{uuid.uuid4().hex[:8]}"


def invoke(data, runtime_arn: str, session_id: str | None, payload, **kwargs) -> dict:
    """InvokeAgentRuntime with a JSON payload (a dict) or raw bytes; returns boto3's response."""
    body = payload if isinstance(payload, (bytes, bytearray)) else json.dumps(payload).encode()
    if session_id is not None:
        kwargs["runtimeSessionId"] = session_id
    return data.invoke_agent_runtime(agentRuntimeArn=runtime_arn, payload=body, **kwargs)


def invoke_json(data, runtime_arn: str, session_id: str | None, payload, **kwargs) -> dict:
    """Invoke and decode a JSON answer (checks status 200 and the content type)."""
    resp = invoke(data, runtime_arn, session_id, payload, **kwargs)
    assert resp["statusCode"] == 200, resp
    assert resp["contentType"].startswith("application/json"), resp["contentType"]
    return json.loads(resp["response"].read())


def read_sse(body, chunk_size: int = 16) -> list:
    """Read an SSE body in small chunks; returns `(arrival time, event)` per `data:` event.

    The time is when the chunk completing the event arrived (`time.monotonic()`); `event` is
    the decoded JSON of the data line, or the raw text when it is not JSON. Reading stops at
    the end of the stream; a broken stream raises.
    """
    events = []
    pending = b""
    for chunk in body.iter_chunks(chunk_size=chunk_size):
        now = time.monotonic()
        pending += chunk
        while b"\n\n" in pending:
            frame, pending = pending.split(b"\n\n", 1)
            data = [
                line[5:].lstrip()
                for line in frame.split(b"\n")
                if line.startswith(b"data:")
            ]
            if not data:
                continue
            text = b"\n".join(data).decode()
            try:
                events.append((now, json.loads(text)))
            except ValueError:
                events.append((now, text))
    assert not pending.strip(), f"stream ended inside an event: {pending!r}"
    return events


# ----------------------------------------------------------------------------- native API


def native(server: BerthServer, method: str, path: str, query: str = "", **kwargs) -> RawResponse:
    """A signed request to Berth's native API (`/berth/v1/...`)."""
    return raw_request(server.url, method, path, query=query, **kwargs)


def access_key_allowing(server: BerthServer, action: str) -> tuple:
    """A new access key (`POST /berth/v1/keys`) whose one policy allows `action` on everything;
    returns `(access key id, secret)`."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
    }
    name = "allow-" + action.split(":")[-1]
    made = native(
        server, "POST", "/berth/v1/keys", body=json.dumps({"policy": policy, "name": name}).encode()
    )
    assert made.status == 201, made
    key = made.json()
    return key["accessKeyId"], key["secretAccessKey"]


def live_sessions(server: BerthServer, runtime_id: str | None = None) -> list:
    """`GET /berth/v1/sessions[?runtime=ID]`: the live sessions."""
    query = f"runtime={runtime_id}" if runtime_id else ""
    resp = native(server, "GET", "/berth/v1/sessions", query=query)
    assert resp.status == 200, resp
    return resp.json()["sessions"]


def live_session(server: BerthServer, runtime_id: str, session_id: str) -> dict | None:
    """The live session `session_id` of `runtime_id`, or None."""
    for entry in live_sessions(server, runtime_id):
        if entry["sessionId"] == session_id:
            return entry
    return None


def wait_session_gone(
    server: BerthServer, runtime_id: str, session_id: str, timeout: float
) -> float:
    """Poll the session list until `session_id` is gone; returns when (`time.monotonic()`)."""
    poll(
        lambda: live_session(server, runtime_id, session_id),
        lambda entry: entry is None,
        timeout=timeout,
        what=f"session {session_id} to end",
    )
    return time.monotonic()


# ----------------------------------------------------------------------------- sandbox leftovers

CGROUP_ROOT = Path("/sys/fs/cgroup")


def sandbox_id_of(pid: int) -> str:
    """The sandbox id of a live sandbox process, from its cgroup path (`.../berth/<id>`, or
    `.../berth/<instance>/<id>` under a server's instance parent: the sandbox is the leaf)."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    for line in text.splitlines():
        path = line.split(":", 2)[2]
        parts = path.strip("/").split("/")
        if "berth" in parts and parts.index("berth") + 1 < len(parts):
            return parts[-1]
    raise AssertionError(f"process {pid} is in no berth cgroup:\n{text}")


def _berth_cgroup_dirs() -> list:
    dirs = []
    for parent in [CGROUP_ROOT / "berth", *CGROUP_ROOT.glob("*/berth")]:
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir():
                    # A server's instance parent holds its sandboxes one level further down.
                    dirs.append(child)
                    dirs.extend(grand for grand in child.iterdir() if grand.is_dir())
    return dirs


def leftovers(server: BerthServer, match: Callable[[str], bool], pids: Iterable[int] = ()) -> list:
    """What is left of the sandboxes whose id satisfies `match`: processes, cgroups, mounts, dirs.

    `pids` are host pids known to have belonged to them (checked for existence too).
    """
    found = []
    for pid in pids:
        if Path(f"/proc/{pid}").exists():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                state = "?"
            found.append(f"process {pid} still exists (state {state})")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "cgroup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split(":", 2)[2].strip("/").split("/")
            if "berth" in parts:
                index = parts.index("berth")
                if index + 1 < len(parts) and match(parts[-1]):
                    found.append(f"process {proc.name} in cgroup {line}")
                    break
    for cgroup in _berth_cgroup_dirs():
        if match(cgroup.name):
            found.append(f"cgroup {cgroup}")
    sessions_dir = server.data_dir / "sessions"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        for field in line.split(" ")[3:5]:
            if field.startswith(str(sessions_dir) + "/"):
                name = field[len(str(sessions_dir)) + 1 :].split("/", 1)[0]
                if match(name):
                    found.append(f"mount {line}")
    if sessions_dir.is_dir():
        for entry in sessions_dir.iterdir():
            if match(entry.name):
                found.append(f"directory {entry}")
    return found


def wait_no_leftovers(
    server: BerthServer,
    match: Callable[[str], bool],
    pids: Iterable[int] = (),
    timeout: float = STATE_TIMEOUT,
) -> None:
    """Poll until nothing is left of the matching sandboxes (teardown runs after the session
    leaves the list)."""
    pids = list(pids)
    poll(
        lambda: leftovers(server, match, pids),
        lambda found: not found,
        timeout=timeout,
        what="the sandbox to be torn down completely",
    )


def runtime_sandboxes(runtime_id: str) -> Callable[[str], bool]:
    """Matches the sandbox ids of a runtime's sessions and warm sandboxes.

    Berth names a sandbox `<runtime id (first 40 chars)>-<hash>-<random>`.
    """
    prefix = runtime_id[:40] + ("-" if len(runtime_id) <= 40 else "")
    return lambda sandbox_id: sandbox_id.startswith(prefix)


# ----------------------------------------------------------------------------- the berth CLI


def run_cli(server: BerthServer, *args: str, env: dict | None = None, timeout: float = 120.0):
    """Run `berth ARGS` as a client of `server`; returns the CompletedProcess (text)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    full_env.update(
        BERTH_ENDPOINT_URL=server.url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        NO_COLOR="1",
    )
    full_env.update(env or {})
    return subprocess.run(
        [str(berth_binary()), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
