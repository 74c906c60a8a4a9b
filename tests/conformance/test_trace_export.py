"""Trace export and retention, end to end: a real `berth serve` exports the spans of an agent
invocation over OTLP/HTTP to a receiver this test runs on 127.0.0.1:0, and retention deletes
old traces so the native API no longer shows them.

Covered: `--otlp-endpoint`, `--otlp-headers` (sent on every request) and `--otlp-gzip`; the
receiver's first `/v1/traces` answer is a 503 (with `Retry-After: 0`), so the spans arrive only
through a retry, once each; the protobuf decodes with the `opentelemetry-proto` package; the
agent's spans and Berth's `InvokeAgentRuntime` span arrive in one trace with Berth's attribution
(`berth.runtime_id`, `berth.version`, `berth.endpoint`, `berth.session_id`, `berth.actor` on the
resource, `session.id` on each span, replacing the one the agent claimed); the export counters on
`/berth/v1/metrics`; retention by age (`--trace-retention-hours` with a fraction,
`--trace-retention-tick-ms`) deleting a trace from `GET /berth/v1/traces/{id}` and from the
session's listing.
"""

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from berth_harness import (
    STATE_TIMEOUT,
    deploy_agent,
    invoke_json,
    native,
    new_session_id,
    poll,
)

pytestmark = pytest.mark.build

#: 36 seconds: long enough for the export (a poll a second) and for the test to see the trace
#: through the API first, short enough to watch it go.
RETENTION_HOURS = "0.01"
AUTH = "Basic cGstbGYtMTIzOnNrLWxmLTQ1Ng=="


class Receiver:
    """An OTLP/HTTP receiver: records every request (path, headers, decoded body, the status it
    answered); the first `/v1/traces` request is answered 503, every later one 200."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.refused_first = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    status = 200
                    if self.path == "/v1/traces" and not receiver.refused_first:
                        receiver.refused_first = True
                        status = 503
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def traces(self, status: int = 200) -> list:
        """The decoded `/v1/traces` requests answered `status`."""
        with self.lock:
            got = [r for r in self.requests if r["path"] == "/v1/traces" and r["status"] == status]
        out = []
        for r in got:
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(r["body"])
            out.append((r, req))
        return out


def attrs(kvs) -> dict:
    """OTLP key-values as a dict of plain values."""
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def accepted_spans(receiver: Receiver) -> list:
    """(resource attributes, span) of every span in a request answered 200."""
    return [
        (attrs(rs.resource.attributes), span)
        for _, req in receiver.traces(200)
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(module_server, receiver):
    return module_server(
        "trace-export",
        args=(
            "--otlp-endpoint",
            receiver.url,
            "--otlp-headers",
            f"Authorization={AUTH.replace(' ', '%20')},x-scope-orgid=berth-test",
            "--otlp-gzip",
            "--trace-retention-hours",
            RETENTION_HOURS,
            "--trace-retention-tick-ms",
            "500",
        ),
    )


@pytest.fixture(scope="module")
def otel(server) -> dict:
    return deploy_agent(server.client("bedrock-agentcore-control"), server.s3_client(), "otel")


@pytest.fixture(scope="module")
def invoked(server, otel) -> dict:
    """One invocation of the otel agent as alice: its answer and session id."""
    session = new_session_id("export")
    out = invoke_json(
        server.client("bedrock-agentcore"),
        otel["agentRuntimeArn"],
        session,
        {"op": "span", "name": "work", "claim": "someone-else"},
        runtimeUserId="alice",
    )
    assert out["exported"] == ["SUCCESS", "SUCCESS"], out
    tid = out["traceId"]
    # Stored (Berth's span included) well within the retention age.
    poll(
        lambda: native(server, "GET", f"/berth/v1/traces/{tid}"),
        lambda r: r.status == 200
        and any(sp["name"] == "InvokeAgentRuntime" for sp in r.json()["spans"]),
        timeout=STATE_TIMEOUT,
        what=f"trace {tid} in the store",
    )
    listed = native(server, "GET", "/berth/v1/traces", query=f"session={session}")
    assert [t["traceId"] for t in listed.json()["traces"]] == [tid]
    return {"session": session, "traceId": tid}


def test_spans_reach_the_collector_once_with_berths_attribution(
    server, receiver, otel, invoked
):
    tid, session = invoked["traceId"], invoked["session"]
    # Berth's span, its steps (the call opened the session), and the agent's two.
    names = {"InvokeAgentRuntime", "Route", "StartSession", "work", "chat"}

    def of_trace():
        return [(res, s) for res, s in accepted_spans(receiver) if s.trace_id.hex() == tid]

    got = poll(
        of_trace,
        lambda spans: names <= {s.name for _, s in spans},
        timeout=STATE_TIMEOUT,
        what=f"the exported spans of trace {tid}",
    )
    # The first attempt was refused with a 503; the spans arrived through the retry, once each.
    assert receiver.refused_first
    ids = [s.span_id for _, s in accepted_spans(receiver)]
    assert len(ids) == len(set(ids)), "a span was exported twice"
    by_name = {s.name: (res, s) for res, s in got}
    assert set(by_name) == names

    for name, (res, span) in by_name.items():
        assert res["berth.runtime_id"] == otel["agentRuntimeId"], name
        assert res["berth.version"] == 1, name
        assert res["berth.endpoint"] == "DEFAULT", name
        assert res["berth.session_id"] == session, name
        assert res["berth.actor"] == "alice", name
        assert attrs(span.attributes)["session.id"] == session, name
    res, chat = by_name["chat"]
    chat_attrs = attrs(chat.attributes)
    assert chat_attrs["gen_ai.usage.input_tokens"] == 12
    # The agent claimed another session on this span: Berth's attribution replaces it.
    assert chat_attrs["session.id"] == session
    assert res["service.name"] == f"{otel['agentRuntimeName']}.DEFAULT"
    # One trace: the agent's root continues Berth's span.
    _, berths = by_name["InvokeAgentRuntime"]
    assert by_name["work"][1].parent_span_id == berths.span_id
    assert berths.kind == 2  # SPAN_KIND_SERVER
    for step in ("Route", "StartSession"):
        assert by_name[step][1].parent_span_id == berths.span_id
        assert by_name[step][1].kind == 1  # SPAN_KIND_INTERNAL

    # Every request carried the configured headers and was gzipped protobuf.
    with receiver.lock:
        sent = list(receiver.requests)
    assert sent
    for r in sent:
        assert r["headers"]["authorization"] == AUTH
        assert r["headers"]["x-scope-orgid"] == "berth-test"
        assert r["headers"]["content-type"] == "application/x-protobuf"
        assert r["headers"]["content-encoding"] == "gzip"

    # The counters on /metrics.
    def metrics():
        resp = native(server, "GET", "/berth/v1/metrics")
        assert resp.status == 200, resp
        return resp.body.decode()

    def counter(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return -1.0

    text = poll(
        metrics,
        lambda t: counter(t, 'berth_trace_exported_total{signal="spans"}') >= 3,
        timeout=STATE_TIMEOUT,
        what="the exported counter",
    )
    assert counter(text, 'berth_trace_export_failed_requests_total{signal="spans"}') >= 1
    assert counter(text, 'berth_trace_export_dropped_total{signal="spans"}') == 0


def test_retention_deletes_old_traces(server, invoked):
    tid, session = invoked["traceId"], invoked["session"]

    def trace_status():
        return native(server, "GET", f"/berth/v1/traces/{tid}").status

    def session_traces():
        resp = native(server, "GET", "/berth/v1/traces", query=f"session={session}")
        assert resp.status == 200, resp
        return resp.json()["traces"]

    # The `invoked` fixture saw the trace stored; it is gone once older than the retention
    # age (retention runs every 500 ms).
    poll(
        trace_status,
        lambda status: status == 404,
        timeout=36 + STATE_TIMEOUT,
        what=f"retention to delete trace {tid}",
    )
    assert session_traces() == []
