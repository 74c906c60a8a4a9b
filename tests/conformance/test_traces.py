"""Traces: an unmodified OpenTelemetry SDK agent exports spans to the OTLP/HTTP receiver Berth
serves inside its sandbox, and `berth traces` / the native API show them attributed to the
right runtime and session.

Covered: the env contract (OTEL_EXPORTER_OTLP_ENDPOINT, protocol, resource attributes) and the
`session.id` baggage; protobuf export by the SDK's own exporter, stored before the export is
acknowledged; attribution by the listener (a `session.id` attribute the agent claims changes
nothing; a second session reusing the first's trace and span ids writes only into its own
session); JSON and gzipped JSON exports; 400 with a google.rpc.Status for a malformed body in
either encoding; 415 for another content type; the public listener does not serve OTLP; Berth's
own invocation span continues the caller's `traceparent` and is the agent's parent.
"""

import gzip
import json
import uuid

import pytest

from berth_harness import (
    STATE_TIMEOUT,
    deploy_agent,
    invoke_json,
    native,
    new_session_id,
    poll,
    raw_request,
    run_cli,
)

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def otel(control, s3) -> dict:
    """agents/otel deployed on the session server; the READY GetAgentRuntime response."""
    return deploy_agent(control, s3, "otel")


def spans_of_trace(berth, trace_id: str, session: str | None = None) -> list:
    query = f"session={session}" if session else ""
    resp = native(berth, "GET", f"/berth/v1/traces/{trace_id}", query=query)
    assert resp.status == 200, resp
    return resp.json()["spans"]


def spans_with_berths(berth, trace_id: str, session: str | None = None) -> list:
    """The trace's spans once Berth's own invocation span is among them: the agent's spans are
    stored before their export is answered, Berth's is queued when the response body ends and
    written by the span sink in the background."""
    def complete(spans):
        # Berth's span, and its StartSession step when the call opened its session (the steps
        # are recorded after the call's span, so they may land in the next batch).
        berths = [s for s in spans if s["name"] == "InvokeAgentRuntime"]
        opened = any(b["attributes"].get("berth.session.start") in ("warm", "cold") for b in berths)
        return bool(berths) and (not opened or any(s["name"] == "StartSession" for s in spans))

    return poll(
        lambda: spans_of_trace(berth, trace_id, session),
        complete,
        timeout=STATE_TIMEOUT,
        what=f"berth's span in trace {trace_id}",
    )


def traces_of_session(berth, session: str) -> list:
    resp = native(berth, "GET", "/berth/v1/traces", query=f"session={session}")
    assert resp.status == 200, resp
    return resp.json()["traces"]


def json_export(trace_id: str, span_id: str, name: str) -> str:
    """An OTLP/JSON ExportTraceServiceRequest: hex ids, int64s as strings."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "forger"}}]
                    },
                    "scopeSpans": [
                        {
                            "scope": {"name": "by-hand"},
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": span_id,
                                    "name": name,
                                    "kind": 1,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000000250000000",
                                    "attributes": [
                                        {"key": "tokens", "value": {"intValue": "42"}}
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )


def test_the_agent_gets_the_otel_environment_and_session_baggage(data, otel):
    session = new_session_id("otel-env")
    seen = invoke_json(data, otel["agentRuntimeArn"], session, {"op": "env"})
    env = seen["env"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:8750"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["AGENT_OBSERVABILITY_ENABLED"] == "true"
    rid, name = otel["agentRuntimeId"], otel["agentRuntimeName"]
    attrs = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attrs["service.name"] == f"{name}.DEFAULT"
    assert attrs["aws.log.group.names"] == f"/aws/bedrock-agentcore/runtimes/{rid}-DEFAULT"
    # The endpoint's ARN: `agentcore obs` parses the runtime id out of `runtime/<id>/`.
    assert attrs["cloud.resource_id"] == f'{otel["agentRuntimeArn"]}/runtime-endpoint/DEFAULT'
    assert seen["baggage"] == f"session.id={session}"


def test_sdk_spans_are_stored_under_the_sandboxs_session(berth, data, otel):
    session = new_session_id("otel-a")
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    out = invoke_json(
        data,
        otel["agentRuntimeArn"],
        session,
        {"op": "span", "name": "work", "claim": "someone-else"},
        runtimeUserId="alice",
        traceParent=f"00-{caller_trace}-{caller_span}-01",
    )
    # The SDK's exporter got a 200 for each span (SimpleSpanProcessor exports on end).
    assert out["exported"] == ["SUCCESS", "SUCCESS"], out
    tid = out["traceId"]
    # Berth's invocation span continues the caller's trace and is the agent's parent.
    assert tid == caller_trace

    spans = spans_with_berths(berth, tid)
    # The session was opened for this call: routing and the start are steps of Berth's span.
    assert sorted(s["name"] for s in spans) == ["InvokeAgentRuntime", "Route", "StartSession", "chat", "work"]
    by_name = {s["name"]: s for s in spans}
    berths = by_name.pop("InvokeAgentRuntime")
    for step in (by_name.pop("Route"), by_name.pop("StartSession")):
        assert step["parentSpanId"] == berths["spanId"] and step["kind"] == "INTERNAL"
        assert berths["startNs"] <= step["startNs"] <= step["endNs"] <= berths["endNs"]
    assert berths["attributes"]["berth.session.start"] in ("warm", "cold")
    assert [e["name"] for e in berths["events"]] == ["first_byte"]
    assert berths["parentSpanId"] == caller_span
    assert berths["spanId"] == out["parentSpanId"] == by_name["work"]["parentSpanId"]
    assert berths["serviceName"] == "berth"
    assert berths["kind"] == "SERVER"
    assert berths["statusCode"] == "OK"
    assert berths["sessionId"] == session and berths["actor"] == "alice"
    assert berths["startNs"] <= by_name["work"]["startNs"]
    for s in by_name.values():
        assert s["runtimeId"] == otel["agentRuntimeId"]
        assert s["version"] == 1
        assert s["endpoint"] == "DEFAULT"
        assert s["sessionId"] == session
        assert s["actor"] == "alice"
        assert s["serviceName"] == f"{otel['agentRuntimeName']}.DEFAULT"
        assert s["scope"] == "berth.conformance.otel"
    chat = by_name["chat"]
    assert chat["parentSpanId"] == out["spanId"]
    assert chat["spanId"] == out["childSpanId"]
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 12
    # What the agent claims is kept as data, never used for attribution.
    assert chat["attributes"]["session.id"] == "someone-else"
    assert traces_of_session(berth, "someone-else") == []

    listed = traces_of_session(berth, session)
    assert [t["traceId"] for t in listed] == [tid]
    assert listed[0]["spanCount"] == 5
    assert listed[0]["rootName"] == "InvokeAgentRuntime"
    assert listed[0]["runtimeId"] == otel["agentRuntimeId"]
    assert listed[0]["status"] == "OK"

    # The CLI: list by session (JSON), and the waterfall.
    done = run_cli(berth, "traces", "list", "--session", session, "--json")
    assert done.returncode == 0, done.stderr
    assert [t["traceId"] for t in json.loads(done.stdout)] == [tid]
    shown = run_cli(berth, "traces", "show", tid)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"trace {tid}"
    # Berth's span's parent (the caller's) is not in the store: it is the root.
    assert lines[1].startswith("InvokeAgentRuntime ")
    # Its children in start order: the steps before the agent was called, then the agent's span.
    assert [l.split()[0] for l in lines[2:5]] == ["Route", "StartSession", "work"]
    assert all(l.startswith("  ") and not l.startswith("   ") for l in lines[2:5])
    assert lines[5].startswith("    chat ")
    by_session = run_cli(berth, "traces", "session", session)
    assert by_session.returncode == 0, by_session.stderr
    assert f"trace {tid}" in by_session.stdout


def test_another_session_cannot_write_into_or_see_the_first(berth, data, otel):
    arn = otel["agentRuntimeArn"]
    first, second = new_session_id("otel-1"), new_session_id("otel-2")
    mine = invoke_json(data, arn, first, {"op": "span", "name": "mine"})
    tid, sid = mine["traceId"], mine["spanId"]

    # The second session sends a JSON export reusing the first's trace and span ids.
    forged = invoke_json(
        data,
        arn,
        second,
        {
            "op": "post",
            "path": "/v1/traces",
            "contentType": "application/json",
            "body": json_export(tid, sid, "forged"),
        },
    )
    assert forged["status"] == 200, forged
    assert forged["contentType"] == "application/json"
    assert json.loads(bytes.fromhex(forged["body"])) == {}

    # The first session's trace is as its agent wrote it.
    first_spans = spans_with_berths(berth, tid, first)
    assert sorted(s["name"] for s in first_spans) == ["InvokeAgentRuntime", "Route", "StartSession", "chat", "mine"]
    assert [t["spanCount"] for t in traces_of_session(berth, first)] == [5]
    # The forged span is the second session's, and only its.
    second_spans = spans_of_trace(berth, tid, second)
    assert [s["name"] for s in second_spans] == ["forged"]
    assert second_spans[0]["sessionId"] == second
    assert second_spans[0]["serviceName"] == "forger"
    assert second_spans[0]["attributes"]["tokens"] == 42
    assert second_spans[0]["endNs"] - second_spans[0]["startNs"] == 250_000_000
    # The second session's own invocation span is in a trace of its own.
    assert tid in [t["traceId"] for t in traces_of_session(berth, second)]


def test_gzipped_json_export_is_accepted(berth, data, otel):
    session = new_session_id("otel-gz")
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    body = gzip.compress(json_export(tid, sid, "zipped").encode())
    out = invoke_json(
        data,
        otel["agentRuntimeArn"],
        session,
        {
            "op": "post",
            "path": "/v1/traces",
            "contentType": "application/json",
            "encoding": "gzip",
            "body": "hex:" + body.hex(),
        },
    )
    assert out["status"] == 200, out
    assert [s["name"] for s in spans_of_trace(berth, tid, session)] == ["zipped"]


def test_malformed_exports_get_400_and_other_types_415(data, otel):
    arn, session = otel["agentRuntimeArn"], new_session_id("otel-bad")

    def post(path, body, content_type):
        return invoke_json(
            data, arn, session, {"op": "post", "path": path, "body": body, "contentType": content_type}
        )

    bad_proto = post("/v1/traces", "hex:ffffffff", "application/x-protobuf")
    assert bad_proto["status"] == 400, bad_proto
    assert bad_proto["contentType"] == "application/x-protobuf"
    # google.rpc.Status: field 1 (code) = 3 INVALID_ARGUMENT, then field 2 (message).
    assert bad_proto["body"].startswith("0803" + "12")

    bad_json = post("/v1/logs", "{not json", "application/json")
    assert bad_json["status"] == 400, bad_json
    status = json.loads(bytes.fromhex(bad_json["body"]))
    assert status["code"] == 3 and status["message"]

    wrong_type = post("/v1/traces", "hello", "text/plain")
    assert wrong_type["status"] == 415, wrong_type

    # A span id of the wrong length is malformed too.
    short = post("/v1/traces", json_export("4bf92f3577b34da6a3ce929d0e0e4736", "00f0", "x"), "application/json")
    assert short["status"] == 400, short


def test_logs_are_accepted(berth, data, otel):
    session = new_session_id("otel-logs")
    tid = "5b8efff798038103d269b633813fc60c"
    body = json.dumps(
        {
            "resourceLogs": [
                {
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": "1700000000000000000",
                                    "severityNumber": 9,
                                    "severityText": "INFO",
                                    "body": {"stringValue": "hello from the agent"},
                                    "traceId": tid,
                                    "spanId": "eee19b7ec3c1b174",
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    out = invoke_json(
        data,
        otel["agentRuntimeArn"],
        session,
        {"op": "post", "path": "/v1/logs", "body": body, "contentType": "application/json"},
    )
    assert out["status"] == 200, out
    resp = native(berth, "GET", f"/berth/v1/traces/{tid}")
    assert resp.status == 200, resp
    logs = resp.json()["logs"]
    assert [l["body"] for l in logs] == ["hello from the agent"]
    assert logs[0]["sessionId"] == session


def test_the_public_listener_does_not_serve_otlp(berth):
    body = json_export("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "outside").encode()
    unsigned = raw_request(
        berth.url, "POST", "/v1/traces", body=body, headers={"Content-Type": "application/json"}, sign=False
    )
    assert unsigned.status != 200, unsigned
    signed = raw_request(
        berth.url, "POST", "/v1/traces", body=body, headers={"Content-Type": "application/json"}
    )
    assert signed.status != 200, signed
    assert signed.error_type == "UnknownOperationException", signed


def test_an_agents_own_credentials_cannot_read_traces(data, probe):
    """The credentials Berth injects into a sandbox (the default role) do not reach the native
    trace API: an agent cannot read other sessions' spans that way either."""
    out = invoke_json(
        data,
        probe["agentRuntimeArn"],
        new_session_id("otel-read"),
        {"op": "api", "method": "GET", "path": "/berth/v1/traces"},
    )
    result = out["result"]["value"]
    assert result["status"] == 403, out
    assert result["errorType"].startswith("AccessDeniedException"), out


def test_a_bad_trace_query_is_a_validation_error(berth):
    for query in ("sesion=typo", "minDurationMs=soon", "status=MAYBE"):
        resp = native(berth, "GET", "/berth/v1/traces", query=query)
        assert resp.status == 400, (query, resp)
        assert resp.error_type == "ValidationException", (query, resp)
    resp = native(berth, "GET", "/berth/v1/traces/not-a-trace-id")
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    resp = native(berth, "GET", f"/berth/v1/traces/{uuid.uuid4().hex}")
    assert resp.status == 404 and resp.error_type == "ResourceNotFoundException", resp
