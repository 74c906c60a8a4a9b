"""The egress proxy refuses private, CGNAT and metadata addresses, and lets the operator allow them.

The test builds its own network namespace with a veth pair; inside it holds a private (10.x), a
CGNAT (100.64.x), the IPv4 metadata (169.254.169.254) and the IPv6 metadata (fd00:ec2::254)
address, with a listener on all of them. The host only gets /32 and /128 routes to them through the
veth, removed with the namespace at teardown: nothing is ever sent to a real private or metadata
address. An agent (stdlib only, so no dependency download) asks the egress proxy to CONNECT to
each: a default server answers 403 and logs the denial, a server started with `--egress-allow`
for them lets them through.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from berth_harness import (
    deploy_agent,
    invoke_json,
    new_session_id,
    poll,
    zip_files,
)

PORT = 8097
TARGETS = ["10.213.7.2", "100.64.213.2", "169.254.169.254", "fd00:ec2::254"]
#: A documentation-range address (not denied by default) that lives only in the test namespace:
#: stands for "the public internet" in the VPC test.
PUBLIC_STANDIN = "198.51.100.7"

AGENT = r'''
import json, os, socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def via_proxy(host, port):
    proxy = os.environ["HTTPS_PROXY"].split("://", 1)[-1].rstrip("/")
    ph, pp = proxy.rsplit(":", 1)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with socket.create_connection((ph, int(pp)), timeout=10) as s:
            s.settimeout(15)
            s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(1024)
                if not chunk:
                    break
                head += chunk
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            body = ""
            if " 200" in status:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                body = data.decode(errors="replace")
            return {"status": status, "body": body[-200:]}
    except Exception as e:
        return {"error": type(e).__name__ + ": " + str(e)}

class H(BaseHTTPRequestHandler):
    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send({"status": "Healthy"})
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self._send({t: via_proxy(t, req["port"]) for t in req["targets"]})
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), H).serve_forever()
'''

LISTENER = r'''
import socket, sys, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    with c:
        c.settimeout(5)
        try:
            c.recv(1024)
        except OSError:
            pass
        c.sendall(b"HTTP/1.0 200 OK\r\n\r\negress-target-reached\n")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


#: Held while the host routes the target addresses: this module and test_container_confinement
#: (which uses this fixture) may run on two pytest-xdist workers at once, and the host can route
#: each address through one namespace only.
ROUTES_LOCK = Path(tempfile.gettempdir()) / "berth-test-egress-routes.lock"


@pytest.fixture(scope="module")
def target_netns():
    """A namespace holding the target addresses, reachable from the host through a veth pair."""
    if os.geteuid() != 0:
        pytest.fail("the egress tests need root to create a network namespace")
    with ROUTES_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _target_netns()


def _target_netns():
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"berth-egress-{tag}", f"beg{tag}h", f"beg{tag}n"
    routes: list[tuple[str, ...]] = []
    listener = None
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", "fe80::b1/64", "dev", host_if, "nodad")
        _ip("link", "set", host_if, "up")
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("addr", "add", "fe80::b2/64", "dev", ns_if, "nodad", ns=ns)
        for addr in [*TARGETS, PUBLIC_STANDIN]:
            if ":" in addr:
                _ip("-6", "addr", "add", f"{addr}/128", "dev", ns_if, "nodad", ns=ns)
            else:
                _ip("addr", "add", f"{addr}/32", "dev", ns_if, ns=ns)
        _ip("link", "set", ns_if, "up", ns=ns)
        _ip("route", "add", "default", "dev", ns_if, ns=ns)
        _ip("-6", "route", "add", "default", "via", "fe80::b1", "dev", ns_if, ns=ns)
        for addr in [*TARGETS, PUBLIC_STANDIN]:
            family, prefix = ("-6", "128") if ":" in addr else ("-4", "32")
            _ip(family, "route", "add", f"{addr}/{prefix}", "dev", host_if)
            routes.append((family, "route", "del", f"{addr}/{prefix}", "dev", host_if))
        listener = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c", LISTENER, str(PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        # The namespace answers the host directly: the refusals below are the proxy's doing.
        for addr in TARGETS:
            out = poll(
                lambda a=addr: subprocess.run(
                    ["python3", "-c", _DIRECT, a, str(PORT)], capture_output=True, text=True
                ).stdout,
                lambda o: "egress-target-reached" in o,
                timeout=15,
                what=f"the test namespace to answer on {addr}",
            )
            assert "egress-target-reached" in out
        yield ns
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for route in routes:
            subprocess.run(["ip", *route], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


_DIRECT = r'''
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print(s.recv(200).decode(errors="replace"))
except OSError as e:
    print("error", e)
'''


def _deploy(server, **extra) -> str:
    control = server.client("bedrock-agentcore-control")
    resp = deploy_agent(
        control,
        server.s3_client(),
        zip_files({"agent.py": AGENT}),
        name=f"egress_{uuid.uuid4().hex[:8]}",
        **extra,
    )
    return resp["agentRuntimeArn"]


def _attempt(server, arn: str, targets=TARGETS) -> dict:
    data = server.client("bedrock-agentcore")
    return invoke_json(data, arn, new_session_id("egress"), {"targets": targets, "port": PORT})


def test_private_cgnat_and_metadata_addresses_are_refused(target_netns, berth_server):
    server = berth_server(name="egress-default")
    arn = _deploy(server)
    result = _attempt(server, arn)
    for addr in TARGETS:
        assert "403" in result[addr].get("status", ""), (addr, result)
        assert "egress-target-reached" not in json.dumps(result[addr])
    runtime_id = arn.rsplit("/", 1)[-1]
    log = poll(
        lambda: server.log_path.read_text(errors="replace"),
        lambda text: text.count("egress denied") >= len(TARGETS),
        timeout=10,
        what="the denials in berth's log",
    )
    denials = [l for l in log.splitlines() if "egress denied" in l]
    assert any(runtime_id in l and "169.254.169.254" in l and "metadata" in l for l in denials), denials
    assert any("fd00:ec2::254" in l for l in denials), denials


def test_allow_listed_targets_are_reached(target_netns, berth_server):
    server = berth_server(
        name="egress-allowed",
        args=(
            "--egress-allow",
            "10.213.7.2/32,100.64.213.2",
            "--egress-allow",
            "169.254.169.254",
            "--egress-allow",
            "fd00:ec2::254/128",
        ),
    )
    arn = _deploy(server)
    result = _attempt(server, arn)
    for addr in TARGETS:
        assert "200" in result[addr].get("status", ""), (addr, result)
        assert "egress-target-reached" in result[addr]["body"], (addr, result)


def test_vpc_runtimes_reach_only_the_allow_list(target_netns, berth_server):
    server = berth_server(name="egress-vpc", args=("--egress-allow", "10.213.7.2"))
    vpc = {
        "networkMode": "VPC",
        "networkModeConfig": {
            "securityGroups": ["sg-0123456789abcdef0"],
            "subnets": ["subnet-0123456789abcdef0"],
        },
    }
    vpc_arn = _deploy(server, networkConfiguration=vpc)
    public_arn = _deploy(server)
    targets = ["10.213.7.2", PUBLIC_STANDIN, "100.64.213.2"]
    vpc_result = _attempt(server, vpc_arn, targets)
    public_result = _attempt(server, public_arn, targets)
    assert "200" in vpc_result["10.213.7.2"].get("status", ""), vpc_result
    assert "403" in vpc_result[PUBLIC_STANDIN].get("status", ""), vpc_result
    assert "403" in vpc_result["100.64.213.2"].get("status", ""), vpc_result
    assert "200" in public_result["10.213.7.2"].get("status", ""), public_result
    assert "200" in public_result[PUBLIC_STANDIN].get("status", ""), public_result
    assert "403" in public_result["100.64.213.2"].get("status", ""), public_result
