"""The HTTP edge under hostile clients: bodies that cannot be authenticated are never read,
idle sockets do not lock anybody out, half-sent requests are closed, bodies are held to their
operation's limit and to a budget of in-flight bytes.

Everything goes to the test's own server on loopback; every loop is bounded.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import select
import socket
import time
from urllib.parse import urlsplit

import pytest
from berth_harness import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, raw_request

MIB = 1024 * 1024
UPLOAD = 100 * 1000 * 1000  # AgentCore's payload limit, as an attacker would claim it
DEADLINE = 30.0


def _addr(server) -> tuple[str, int]:
    split = urlsplit(server.url)
    return split.hostname, split.port


def _rss_bytes(server) -> int:
    with open(f"/proc/{server.proc.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def _signed_headers(
    server,
    method: str,
    path: str,
    body: bytes,
    *,
    access_key: str = ACCESS_KEY_ID,
    secret_key: str = SECRET_ACCESS_KEY,
    region: str = REGION,
    service: str = "bedrock-agentcore",
    signed_at: dt.datetime | None = None,
    extra: dict | None = None,
) -> dict:
    """The headers botocore's signer puts on `method path` with `body`."""
    from unittest import mock

    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=server.url + path, data=body, headers=dict(extra or {}))
    auth = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = auth(Credentials(access_key, secret_key), service, region)
    if signed_at is not None:
        with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
            signer.add_auth(request)
    else:
        signer.add_auth(request)
    return dict(request.headers.items())


def _head(server, method: str, path: str, headers: dict, length: int) -> bytes:
    """A request head as it goes on the wire; `Host` is what botocore signed."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.url).netloc}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and raw bytes of the response on `sock` (read until the head and a little more)."""
    sock.settimeout(DEADLINE)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data, "the server closed the connection without answering"
    status = int(data.split(b" ", 2)[1])
    return status, data


def _send_until_refused(sock: socket.socket, limit: int) -> int:
    """Sends zeros until the server stops taking them or `limit` bytes went out; bytes sent."""
    block = b"\0" * MIB
    sent = 0
    sock.settimeout(DEADLINE)
    try:
        while sent < limit:
            sent += sock.send(block)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    return sent


def test_unauthenticated_uploads_are_refused_before_being_read(berth_server):
    server = berth_server(name="edge-unauth")
    path = "/runtimes/nosuch-abcdefghij/invocations"
    skewed = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    attacks = [
        ({}, "MissingAuthenticationTokenException"),
        ({"Authorization": "AWS4-HMAC-SHA256 garbage"}, "IncompleteSignatureException"),
        (_signed_headers(server, "POST", path, b"", access_key="AKIAUNKNOWN000000000"),
         "UnrecognizedClientException"),
        (_signed_headers(server, "POST", path, b"", region="eu-west-1"), "InvalidSignatureException"),
        (_signed_headers(server, "POST", path, b"", signed_at=skewed), "InvalidSignatureException"),
        (_signed_headers(server, "POST", path, b"", service="lambda"), "InvalidSignatureException"),
        ({}, "MissingAuthenticationTokenException"),
        (_signed_headers(server, "POST", path, b"", access_key="AKIAUNKNOWN000000001"),
         "UnrecognizedClientException"),
    ]
    assert len(attacks) == 8
    before = _rss_bytes(server)
    socks = []
    try:
        for headers, code in attacks:
            sock = socket.create_connection(_addr(server), timeout=DEADLINE)
            socks.append(sock)
            # The head and the first MiB of a 100 MB body (or what of it goes in before the
            # refusal closes the connection); the answer must not wait for the rest.
            sock.sendall(_head(server, "POST", path, headers, UPLOAD))
            _send_until_refused(sock, MIB)
            status, data = _read_response(sock)
            assert status == 403, data[:400]
            assert f"x-amzn-errortype: {code}".lower().encode() in data.lower(), data[:400]
        # The server has answered and stopped reading: the rest of each body does not go in.
        for sock in socks:
            sent = _send_until_refused(sock, UPLOAD)
            assert sent < UPLOAD // 2, f"the server took {sent} bytes of an unauthenticated body"
        grown = _rss_bytes(server) - before
        assert grown < 32 * MIB, f"server RSS grew by {grown // MIB} MiB"
    finally:
        for sock in socks:
            sock.close()
    # The server still serves signed requests.
    assert raw_request(server.url, "POST", "/runtimes/", body=b"{}").status == 200


def _raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"the test needs {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _closed_by_peer(socks: list[socket.socket]) -> int:
    """How many of `socks` the server has closed (poll, not select: descriptors pass 1024)."""
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    closed = 0
    for fd, _ in poller.poll(0):
        s = socket.socket(fileno=os.dup(fd))
        try:
            # A silent socket turns readable only when the server closes it.
            closed += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except ConnectionResetError:
            closed += 1
        except BlockingIOError:
            pass
        finally:
            s.close()
    return closed


@pytest.mark.parametrize(
    "args",
    [
        # The default limit holds them all.
        ("--header-timeout-ms", "300000", "--idle-timeout-ms", "300000"),
        # At the limit, silent sockets give way to newcomers.
        ("--max-connections", "500", "--header-timeout-ms", "300000", "--idle-timeout-ms", "300000"),
    ],
    ids=["default-limit", "limit-500"],
)
def test_idle_connections_do_not_stop_a_signed_request(berth_server, args):
    _raise_open_files(4096)
    server = berth_server(name="edge-idle", args=args)
    idle = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(_addr(server), timeout=DEADLINE))
        control = server.client("bedrock-agentcore-control", retries={"total_max_attempts": 1})
        assert control.list_agent_runtimes()["ResponseMetadata"]["HTTPStatusCode"] == 200
        closed = _closed_by_peer(idle)
        if "--max-connections" in args:
            # 2,001 connections for 500 places: 1,501 silent ones give way (closed as the
            # server's connection tasks see it; poll until then, bounded).
            deadline = time.monotonic() + DEADLINE
            while closed < 1500 and time.monotonic() < deadline:
                closed = _closed_by_peer(idle)
            assert closed >= 1500, f"only {closed} idle sockets were shed"
        else:
            assert closed == 0, f"{closed} idle sockets were closed below the limit"
    finally:
        for sock in idle:
            sock.close()


def _wait_closed(sock: socket.socket) -> bytes:
    """Reads until the server closes `sock` (bounded by DEADLINE); what it sent before."""
    sock.settimeout(DEADLINE)
    received = b""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except socket.timeout:
            break
        if not chunk:
            return received
        received += chunk
    pytest.fail("the server kept the connection open")


def test_a_half_sent_request_is_closed_by_the_header_timeout(berth_server):
    server = berth_server(
        name="edge-slowloris", args=("--header-timeout-ms", "500", "--idle-timeout-ms", "300000")
    )
    sock = socket.create_connection(_addr(server), timeout=DEADLINE)
    try:
        sock.sendall(b"POST /runtimes/ HTTP/1.1\r\nHost: berth\r\nX-Slow: ")
        received = _wait_closed(sock)
        assert b"200 OK" not in received
    finally:
        sock.close()
    # A request sent whole on a fresh connection is still served.
    assert raw_request(server.url, "POST", "/runtimes/", body=b"{}").status == 200


def test_an_idle_kept_alive_connection_is_closed(berth_server):
    server = berth_server(
        name="edge-keepalive", args=("--idle-timeout-ms", "500", "--header-timeout-ms", "300000")
    )
    body = b"{}"
    headers = _signed_headers(server, "POST", "/runtimes/", body, extra={"Content-Type": "application/json"})
    sock = socket.create_connection(_addr(server), timeout=DEADLINE)
    try:
        sock.sendall(_head(server, "POST", "/runtimes/", headers, len(body)) + body)
        status, _ = _read_response(sock)
        assert status == 200
        _wait_closed(sock)
    finally:
        sock.close()


def test_an_oversize_body_for_a_small_operation_is_refused(berth_server):
    server = berth_server(name="edge-oversize", args=("--small-body-mib", "1"))
    big = b'{"agentRuntimeName": "' + b"n" * (2 * MIB) + b'"}'
    resp = raw_request(server.url, "PUT", "/runtimes/", body=big)
    assert (resp.status, resp.error_type) == (400, "ValidationException"), resp
    assert b"limit" in resp.body
    # The same size is fine for an invocation: it fails on the runtime, not on the size.
    resp = raw_request(server.url, "POST", "/runtimes/nosuch-abcdefghij/invocations", body=big)
    assert (resp.status, resp.error_type) == (404, "ResourceNotFoundException"), resp
    # S3: a small operation (a bucket tagging document) in S3's own error format.
    resp = raw_request(
        server.url,
        "PUT",
        "/edge-bucket",
        query="tagging=",
        body=big,
        service="s3",
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
    )
    assert resp.status == 400 and b"<Code>EntityTooLarge</Code>" in resp.body, resp


def test_bodies_over_the_in_flight_budget_are_throttled(berth_server):
    server = berth_server(
        name="edge-budget",
        args=("--body-budget-mib", "4", "--large-body-mib", "4", "--small-body-mib", "1"),
    )
    path = "/runtimes/nosuch-abcdefghij/invocations"
    body = b"\0" * (4 * MIB)
    headers = _signed_headers(server, "POST", path, body)

    def hold() -> socket.socket:
        sock = socket.create_connection(_addr(server), timeout=DEADLINE)
        sock.sendall(_head(server, "POST", path, headers, len(body)) + body[:MIB])
        return sock

    # A signed request whose body is still arriving holds the whole budget.
    holder = hold()
    try:
        # Poll (bounded) until the server has reserved it: a small request is then throttled. A
        # probe in flight at the moment the holder arrives makes the holder the throttled one;
        # then it is sent again.
        deadline = time.monotonic() + DEADLINE
        while True:
            resp = raw_request(server.url, "POST", "/runtimes/", body=b"{}")
            if resp.status == 429 or time.monotonic() > deadline:
                break
            if select.select([holder], [], [], 0)[0]:
                holder.close()
                holder = hold()
        assert (resp.status, resp.error_type) == (429, "ThrottlingException"), resp
        resp = raw_request(
            server.url,
            "PUT",
            "/edge-bucket",
            query="tagging=",
            body=b"<Tagging/>",
            service="s3",
            headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
        )
        assert resp.status == 503 and b"<Code>SlowDown</Code>" in resp.body, resp
        # Once the held body completes, its bytes come back.
        holder.sendall(body[MIB:])
        status, _ = _read_response(holder)
        assert status == 404
    finally:
        holder.close()
    assert raw_request(server.url, "POST", "/runtimes/", body=b"{}").status == 200
