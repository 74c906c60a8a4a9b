"""An agent that does not speak HTTP on ``/invocations``.

The SDK's ``BedrockAgentCoreApp`` always answers proper HTTP, so this agent keeps the app for its
entrypoint but serves port 8080 itself from a raw socket: ``GET /ping`` gets a valid
``Healthy`` answer (so the session starts), and any other request gets bytes that are not an
HTTP response. With ``GARBAGE_PING=1`` in the environment ``/ping`` gets garbage too, so the
agent never becomes healthy.
"""

import json
import os
import socket
import threading

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

GARBAGE = b"\x00\x01 this is not HTTP \xff\xfe\r\n\r\n"


@app.entrypoint
def invoke(payload):
    """What a well-behaved version of this agent would answer; never served over HTTP."""
    return {"ok": True}


def _read_head(conn):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _serve(conn, garbage_ping):
    with conn:
        head = _read_head(conn)
        if head.startswith(b"GET /ping") and not garbage_ping:
            body = json.dumps({"status": "Healthy", "time_of_last_update": 0}).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
        else:
            conn.sendall(GARBAGE)


def main():
    garbage_ping = os.environ.get("GARBAGE_PING") == "1"
    port = int(os.environ.get("PORT", "8080"))
    server = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_serve, args=(conn, garbage_ping), daemon=True).start()


if __name__ == "__main__":
    main()
