"""A traces test agent: exports spans with the plain OpenTelemetry Python SDK and its OTLP/HTTP
exporter, configured only by the environment Berth gives it (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_RESOURCE_ATTRIBUTES``), like an agent hosted on AgentCore.

Ops (``{"op": ...}``):

- ``env``: the ``OTEL_*`` and ``AGENT_OBSERVABILITY_ENABLED`` variables and the request's
  ``baggage`` header
- ``span``: a span called ``name`` (continuing the request's ``traceparent``, as instrumented
  servers do) with a child ``chat`` span (GenAI attributes, and a ``session.id`` attribute
  claiming ``claim``), exported synchronously; answers the trace and span ids, the parent it
  continued and the exporter's result
- ``post``: a raw ``POST`` of ``body`` (text) to ``<OTEL_EXPORTER_OTLP_ENDPOINT><path>`` with
  ``contentType``; answers the status, content type and body (hex)
- ``logs``: calls the CloudWatch Logs API with boto3 as configured by the sandbox's environment
  (``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`` and the injected credentials): each of ``calls``
  (``{"method": "start_query", "args": {...}}``) answers its result, a ``start_query`` followed by
  ``get_query_results``, or ``{"error": <code>}``
"""

import os
import urllib.error
import urllib.request

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

app = BedrockAgentCoreApp()


class RecordingExporter(OTLPSpanExporter):
    """The SDK's exporter, remembering the result of its last export."""

    results = []

    def export(self, spans):
        result = super().export(spans)
        RecordingExporter.results.append(result.name)
        return result


# Resource.create() reads OTEL_RESOURCE_ATTRIBUTES; the exporter reads OTEL_EXPORTER_OTLP_*.
provider = TracerProvider(resource=Resource.create())
provider.add_span_processor(SimpleSpanProcessor(RecordingExporter()))
tracer = provider.get_tracer("berth.conformance.otel")


def _header(context, name):
    request = getattr(context, "request", None)
    headers = getattr(request, "headers", None)
    return headers.get(name) if headers is not None else None


def _span(name, claim, context):
    RecordingExporter.results.clear()
    request = getattr(context, "request", None)
    parent = extract(dict(request.headers)) if request is not None else None
    with tracer.start_as_current_span(
        name, context=parent, attributes={"gen_ai.operation.name": "invoke_agent"}
    ) as root:
        with tracer.start_as_current_span(
            "chat",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 7,
                "session.id": claim,
            },
        ) as child:
            child_id = child.get_span_context().span_id
    ctx = root.get_span_context()
    return {
        "traceId": format(ctx.trace_id, "032x"),
        "spanId": format(ctx.span_id, "016x"),
        "childSpanId": format(child_id, "016x"),
        "parentSpanId": format(root.parent.span_id, "016x") if root.parent else None,
        "exported": list(RecordingExporter.results),
    }


def _post(path, body, content_type, encoding=None):
    url = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + path
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    data = body.encode() if not body.startswith("hex:") else bytes.fromhex(body[4:])
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return {"status": resp.status, "contentType": resp.headers.get("Content-Type"), "body": resp.read().hex()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "contentType": e.headers.get("Content-Type"), "body": e.read().hex()}


def _logs(calls):
    import boto3

    client = boto3.client("logs", region_name=os.environ["AWS_REGION"])
    out = []
    for call in calls:
        try:
            result = getattr(client, call["method"])(**call.get("args", {}))
            if call["method"] == "start_query":
                result = client.get_query_results(queryId=result["queryId"])
            result.pop("ResponseMetadata", None)
            out.append(result)
        except Exception as e:  # the error code is what the test checks
            out.append({"error": getattr(e, "response", {}).get("Error", {}).get("Code", repr(e))})
    return {"results": out}


@app.entrypoint
def invoke(payload, context):
    op = payload.get("op")
    if op == "env":
        env = {k: v for k, v in os.environ.items() if k.startswith("OTEL_") or k == "AGENT_OBSERVABILITY_ENABLED"}
        return {"env": env, "baggage": _header(context, "baggage")}
    if op == "span":
        return _span(payload.get("name", "work"), payload.get("claim", "none"), context)
    if op == "post":
        return _post(payload["path"], payload["body"], payload["contentType"], payload.get("encoding"))
    if op == "logs":
        return _logs(payload["calls"])
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")))
