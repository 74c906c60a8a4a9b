"""A probe agent for the conformance suite: it reports what it can see and does what it is told.

Written only against the public SDK (`bedrock_agentcore.runtime.BedrockAgentCoreApp`), like any
user's agent. Each invocation is a JSON object whose ``op`` picks the behaviour; every answer
carries ``token``, a random value drawn at import time, so the suite can tell sandboxes apart
(pids inside PID namespaces are small numbers that repeat from one sandbox to the next), and
``counter``, the number of invocations this process has served.

Ops (``{"op": ...}``, default ``whoami``):

- ``whoami``: token, counter, pid, hostname, uid, session and user id, HOME, proxy settings,
  and the ``prompt`` it was sent
- ``print``: writes ``text`` to stdout and to stderr (for the agent log)
- ``headers``: the HTTP headers of the request as the agent received it
- ``stream``: ``count`` SSE events ``interval`` seconds apart (``text/event-stream``)
- ``crash_stream``: one SSE event, then the process exits at once (a crash mid-stream)
- ``exit``: the process exits at once, without answering
- ``busy``: registers an async task for ``seconds`` and answers at once, so ``/ping`` reports
  ``HealthyBusy`` while the work runs in the background
- ``write`` / ``read`` / ``listdir``: file access at ``path``
- ``procs``: every process visible in ``/proc`` with its command line
- ``spawn``: starts a sleeping child process whose command line carries ``tag``
- ``connect``: plain TCP connects to ``targets`` (``[[host, port], ...]``)
- ``proxy``: ``CONNECT host:port`` through the egress proxy named by ``HTTPS_PROXY``
- ``abstract_listen`` / ``abstract_connect``: an abstract unix socket called ``name``
- ``self_invoke``: ``POST http://127.0.0.1:8080/invocations`` from inside, bypassing any proxy
- ``forkbomb``: forks sleeping children until the kernel refuses (at most ``limit``)
- ``hog``: allocates and touches ``mib`` MiB of memory
- ``api``: a request to Berth's API as exposed inside the sandbox (``BERTH_ENDPOINT_URL``),
  SigV4-signed with the credentials Berth injected
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

TOKEN = uuid.uuid4().hex
_counter_lock = threading.Lock()
_counter = 0
# Keeps listeners and children referenced for the life of the process.
_kept = []


def _next_count():
    global _counter
    with _counter_lock:
        _counter += 1
        return _counter


def _identity(context):
    return {
        "token": TOKEN,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "uid": os.getuid(),
        "sessionId": getattr(context, "session_id", None),
        "userId": _header(context, "x-amzn-bedrock-agentcore-runtime-user-id"),
        "home": os.environ.get("HOME"),
        "httpsProxy": os.environ.get("HTTPS_PROXY"),
    }


def _header(context, name):
    request = getattr(context, "request", None)
    headers = getattr(request, "headers", None)
    return headers.get(name) if headers is not None else None


def _stream(count, interval):
    for index in range(count):
        yield {"index": index, "token": TOKEN, "sent": time.time()}
        if index + 1 < count:
            time.sleep(interval)


def _crash_stream():
    yield {"index": 0, "token": TOKEN}
    # Give the first event time to leave the process before it dies.
    time.sleep(0.3)
    os._exit(3)


def _busy(seconds):
    task_id = app.add_async_task("background", {"seconds": seconds})

    def work():
        time.sleep(seconds)
        app.complete_async_task(task_id)

    threading.Thread(target=work, daemon=True).start()


def _try(fn):
    try:
        return {"ok": True, "value": fn()}
    except Exception as err:  # the suite wants to see every refusal, whatever its type
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _write(path, content):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(content)
    return path


def _procs():
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError as err:
            cmdline = f"<{type(err).__name__}>"
        out.append({"pid": int(name), "cmdline": cmdline})
    return out


def _spawn(tag):
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)", tag],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _kept.append(child)
    return child.pid


def _connect(host, port):
    with socket.create_connection((host, port), timeout=3):
        return "connected"


def _proxy(host, port):
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if not proxy:
        raise RuntimeError("no HTTPS_PROXY in the environment")
    address = proxy.split("://", 1)[-1].rstrip("/")
    proxy_host, proxy_port = address.rsplit(":", 1)
    with socket.create_connection((proxy_host, int(proxy_port)), timeout=5) as conn:
        conn.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        conn.settimeout(15)
        head = b""
        while b"\r\n" not in head:
            chunk = conn.recv(1024)
            if not chunk:
                break
            head += chunk
        return head.split(b"\r\n", 1)[0].decode(errors="replace")


def _abstract_listen(name):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(8)
    _kept.append(sock)
    return name


def _abstract_connect(name):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + name)
        return "connected"
    finally:
        sock.close()


def _self_invoke():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        "http://127.0.0.1:8080/invocations",
        data=json.dumps({"op": "whoami"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(request, timeout=10) as resp:
        return json.loads(resp.read())


def _forkbomb(limit):
    forked = 0
    error = None
    for _ in range(limit):
        try:
            pid = os.fork()
        except OSError as err:
            error = f"{type(err).__name__}: {err}"
            break
        if pid == 0:
            # The child holds its pid slot for a while, then leaves without cleanup.
            time.sleep(120)
            os._exit(0)
        forked += 1
    return {"forked": forked, "error": error}


def _hog(mib):
    chunks = []
    for _ in range(mib):
        chunks.append(bytearray(b"x" * (1024 * 1024)))
    _kept.append(chunks)
    return len(chunks)


def _berth_api(method, path, query):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = os.environ["BERTH_ENDPOINT_URL"] + path + (f"?{query}" if query else "")
    signed = AWSRequest(method=method, url=url, data=b"")
    credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    region = os.environ.get("AWS_REGION", "us-east-1")
    SigV4Auth(credentials, "bedrock-agentcore", region).add_auth(signed)
    request = urllib.request.Request(url, method=method, headers=dict(signed.headers.items()))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as resp:
            return {"status": resp.status, "body": resp.read(4000).decode(errors="replace")}
    except urllib.error.HTTPError as err:
        return {
            "status": err.code,
            "errorType": err.headers.get("x-amzn-ErrorType"),
            "body": err.read(2000).decode(errors="replace"),
        }


@app.entrypoint
def invoke(payload, context):
    """Dispatch on ``payload["op"]``; see the module docstring."""
    count = _next_count()
    if not isinstance(payload, dict):
        payload = {}
    op = payload.get("op", "whoami")
    answer = {"op": op, "counter": count, **_identity(context)}

    if op == "whoami":
        answer["prompt"] = payload.get("prompt")
        return answer
    if op == "stream":
        return _stream(int(payload.get("count", 5)), float(payload.get("interval", 0.2)))
    if op == "crash_stream":
        return _crash_stream()
    if op == "exit":
        os._exit(int(payload.get("code", 7)))
    if op == "busy":
        _busy(float(payload["seconds"]))
        return answer
    if op == "write":
        answer["result"] = _try(lambda: _write(payload["path"], payload["content"]))
    elif op == "read":
        answer["result"] = _try(lambda: _read(payload["path"]))
    elif op == "listdir":
        answer["result"] = _try(lambda: sorted(os.listdir(payload["path"])))
    elif op == "procs":
        answer["result"] = _procs()
    elif op == "spawn":
        answer["result"] = _spawn(payload["tag"])
    elif op == "connect":
        answer["result"] = [
            {"target": [host, port], **_try(lambda h=host, p=port: _connect(h, p))}
            for host, port in payload["targets"]
        ]
    elif op == "proxy":
        answer["result"] = [
            {"target": [host, port], **_try(lambda h=host, p=port: _proxy(h, p))}
            for host, port in payload["targets"]
        ]
    elif op == "abstract_listen":
        answer["result"] = _try(lambda: _abstract_listen(payload["name"]))
    elif op == "abstract_connect":
        answer["result"] = _try(lambda: _abstract_connect(payload["name"]))
    elif op == "self_invoke":
        answer["result"] = _try(_self_invoke)
    elif op == "forkbomb":
        answer["result"] = _forkbomb(int(payload.get("limit", 1000)))
    elif op == "headers":
        request = getattr(context, "request", None)
        answer["result"] = {k.lower(): v for k, v in request.headers.items()} if request else None
    elif op == "print":
        print(payload["text"], flush=True)
        print(payload["text"], file=sys.stderr, flush=True)
        answer["result"] = True
    elif op == "api":
        method, path, query = payload.get("method", "GET"), payload["path"], payload.get("query")
        answer["result"] = _try(lambda: _berth_api(method, path, query))
    elif op == "hog":
        answer["result"] = _hog(int(payload["mib"]))
    else:
        raise ValueError(f"unknown op {op!r}")
    return answer


if __name__ == "__main__":
    # PORT: process isolation hands each agent its own host port (8080 in namespace sandboxes).
    app.run(port=int(os.environ.get("PORT", "8080")))
