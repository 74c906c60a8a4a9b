"""A local model provider double: the Anthropic Messages API, the OpenAI chat completions and
embeddings API, and Bedrock Runtime's Converse, ConverseStream and InvokeModel, each streaming
and not, on 127.0.0.1 (a port from the OS).

It accepts only the credentials it is told (`keys`), records which credential and path every
request carried, and can be told to rate limit (429) or revoke (401) a credential, so tests see
what the gateway sends upstream and how it reacts. Answers are fixed: text ``"hello from
<model>"`` with usage ``INPUT_TOKENS`` in and ``OUTPUT_TOKENS`` out.
"""

import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INPUT_TOKENS = 12
OUTPUT_TOKENS = 5


def _event_message(headers: dict, payload: bytes) -> bytes:
    """One AWS event-stream message (string headers only)."""
    h = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        h += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + h + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def _event(kind: str, body: dict) -> bytes:
    return _event_message(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body).encode(),
    )


class ModelDouble:
    def __init__(self, keys):
        self.keys = set(keys)
        self.lock = threading.Lock()
        self.seen = []  # (path, credential)
        self.limited = set()
        self.revoked = set()
        #: `answer(body) -> str`: the text of a non-streaming OpenAI chat answer (default: the
        #: fixed greeting).
        self.answer = None
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                double._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def rate_limit(self, key, on=True):
        with self.lock:
            (self.limited.add if on else self.limited.discard)(key)

    def revoke(self, key):
        with self.lock:
            self.revoked.add(key)

    def credentials_seen(self):
        with self.lock:
            return [c for _, c in self.seen]

    # --- serving ---

    @staticmethod
    def _credential(h):
        if h.headers.get("x-api-key"):
            return h.headers["x-api-key"]
        auth = h.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:]
        if auth.startswith("AWS4-HMAC-SHA256 Credential="):
            return auth.split("Credential=")[1].split("/")[0]
        return ""

    def _serve(self, h):
        n = int(h.headers.get("content-length") or 0)
        body = json.loads(h.rfile.read(n) or b"{}")
        cred = self._credential(h)
        with self.lock:
            self.seen.append((h.path, cred))
            limited, revoked = cred in self.limited, cred in self.revoked
        if revoked or cred not in self.keys:
            return self._json(h, 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        if limited:
            return self._json(h, 429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, {"retry-after": "1"})
        path = h.path.split("?")[0]
        if path == "/v1/messages":
            return self._anthropic(h, body)
        if path == "/v1/chat/completions":
            return self._openai(h, body)
        if path == "/v1/embeddings":
            return self._json(h, 200, {"object": "list", "model": body["model"], "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}], "usage": {"prompt_tokens": INPUT_TOKENS, "total_tokens": INPUT_TOKENS}})
        if path.startswith("/model/"):
            model, op = path[len("/model/"):].rsplit("/", 1)
            return self._bedrock(h, body, model, op)
        return self._json(h, 404, {"message": f"no route {path}"})

    def _json(self, h, status, body, headers=None):
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _stream(self, h, content_type, chunks):
        h.send_response(200)
        h.send_header("content-type", content_type)
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        for c in chunks:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")

    def _anthropic(self, h, body):
        model, text = body["model"], f"hello from {body['model']}"
        if not body.get("stream"):
            return self._json(h, 200, {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
            })

        def sse(kind, data):
            return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

        self._stream(h, "text/event-stream", [
            sse("message_start", {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
            sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[:5]}}),
            sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[5:]}}),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": OUTPUT_TOKENS}}),
            sse("message_stop", {"type": "message_stop"}),
        ])

    def _openai(self, h, body):
        model, text = body["model"], f"hello from {body['model']}"
        if self.answer is not None:
            text = self.answer(body)
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        if not body.get("stream"):
            return self._json(h, 200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            })

        def chunk(delta, finish=None, usage=None, choices=True):
            c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
            if usage:
                c["usage"] = usage
            return f"data: {json.dumps(c)}\n\n".encode()

        parts = [chunk({"role": "assistant", "content": text[:5]}), chunk({"content": text[5:]}), chunk({}, "stop")]
        if (body.get("stream_options") or {}).get("include_usage"):
            parts.append(chunk(None, usage=usage, choices=False))
        parts.append(b"data: [DONE]\n\n")
        self._stream(h, "text/event-stream", parts)

    def _bedrock(self, h, body, model, op):
        text = f"hello from {model}"
        usage = {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS, "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS}
        if op == "converse":
            return self._json(h, 200, {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 1},
            })
        if op == "converse-stream":
            return self._stream(h, "application/vnd.amazon.eventstream", [
                _event("messageStart", {"role": "assistant"}),
                _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text[:5]}}),
                _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text[5:]}}),
                _event("contentBlockStop", {"contentBlockIndex": 0}),
                _event("messageStop", {"stopReason": "end_turn"}),
                _event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}),
            ])
        if op == "invoke":
            return self._json(h, 200, {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
            }, {"x-amzn-bedrock-input-token-count": str(INPUT_TOKENS), "x-amzn-bedrock-output-token-count": str(OUTPUT_TOKENS)})
        return self._json(h, 404, {"message": f"no operation {op}"})
