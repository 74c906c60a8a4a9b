"""Hostile agents for the lifecycle tests, built inline (no SDK on the hot path: they speak the
AgentCore HTTP contract themselves, so they can break it on purpose).

`hostile_agent_zip()`: a plain http.server agent on PORT (default 8080). Its behaviour comes from
the runtime's environment variable PING_MODE and from invocations:

- `/ping`: `{"status": "Healthy"}` while calm; once hostile (PING_MODE=big|endless from the start,
  or after an invocation `{"hostile": "big"|"endless"|"hang"}`): `big` sends a 1 GiB body with a
  Content-Length, `endless` a chunked body that never ends, `hang` never answers.
- `/invocations`: `{"status": 999}` answers with HTTP status 999; anything else echoes the
  payload with status 200.

`spawner_agent_zip()`: an SDK agent that uses the credentials Berth injected to invoke its own
runtime with `count` new session ids and reports each outcome's error code.
"""

from __future__ import annotations

from berth_harness import zip_files

from pathlib import Path

HOSTILE = r'''
import json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"mode": os.environ.get("PING_MODE", "calm")}
CHUNK = b"\0" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/ping":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        mode = STATE["mode"]
        try:
            if mode == "big":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(1 << 30))
                self.end_headers()
                for _ in range((1 << 30) // len(CHUNK)):
                    self.wfile.write(CHUNK)
            elif mode == "endless":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            elif mode == "hang":
                time.sleep(3600)
            else:
                body = b'{"status": "Healthy"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except OSError:
            pass  # Berth hung up on a body it will not read: that is the point

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(n) or b"{}")
        if "hostile" in payload:
            STATE["mode"] = payload["hostile"]
        status = int(payload.get("status", 200))
        body = json.dumps({"echo": payload, "pid": os.getpid()}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
'''

SPAWNER = r'''
import json, os, uuid

import boto3
from botocore.config import Config
from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


@app.entrypoint
def main(payload):
    if payload.get("op") != "spawn":
        return {"pid": os.getpid()}
    client = boto3.client(
        "bedrock-agentcore",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )
    codes = []
    for _ in range(int(payload["count"])):
        try:
            client.invoke_agent_runtime(
                agentRuntimeArn=payload["arn"],
                runtimeSessionId=f"child-{uuid.uuid4().hex}-{uuid.uuid4().hex[:8]}",
                payload=b'{"op": "noop"}',
            )["response"].read()
            codes.append("ok")
        except client.exceptions.ClientError as err:
            codes.append(err.response["Error"]["Code"])
            if err.response["Error"]["Code"] == "ServiceQuotaExceededException":
                codes.append(err.response["ResponseMetadata"]["HTTPStatusCode"])
                break
    return {"codes": codes}


app.run()
'''


def hostile_agent_zip() -> bytes:
    return zip_files({"agent.py": HOSTILE})


def spawner_agent_zip() -> bytes:
    # The probe's requirements, so the environment build is shared with it.
    probe_reqs = Path(__file__).resolve().parent.parent / "conformance/agents/probe/requirements.txt"
    return zip_files({"agent.py": SPAWNER, "requirements.txt": probe_reqs.read_text()})
