"""B13's key agent: answers each invocation with the model gateway key Berth gave its sandbox.

Berth issues every sandbox a key of its own (`ANTHROPIC_API_KEY`, with `ANTHROPIC_BASE_URL` pointing
at the sandbox's gateway); the key is also accepted on Berth's public listener while that sandbox
lives, so the harness can drive load at the gateway with it from outside. Standard library only.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"status": "Healthy"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply({"key": os.environ.get("ANTHROPIC_API_KEY", ""),
                    "baseUrl": os.environ.get("ANTHROPIC_BASE_URL", "")})


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
