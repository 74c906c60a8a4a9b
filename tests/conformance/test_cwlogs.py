"""The CloudWatch Logs API subset AgentCore's tools use, served by `berth serve`, driven by
unmodified clients: boto3's `logs` client, the AgentCore SDK's `CloudWatchAgentSpanCollector`
(pointed at Berth with `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`), and the starter toolkit's
`agentcore obs` query strings sent through boto3.

Covered: spans in `aws/spans` (the real OTel SDK's, ADOT-shaped ones exported as OTLP/JSON, and
Berth's own) as span documents whose `attributes.session.id` is the attributed session; an
agent's OTLP log records in `/aws/bedrock-agentcore/runtimes/<id>-DEFAULT` (stream
`runtime-logs`); every toolkit query (spans by session with `parse`, spans by trace, runtime logs
with `in [...]`, the latest session with `stats max() by`, the session summary); groups, streams
and events written with CreateLogGroup/CreateLogStream/PutLogEvents and read back with
GetLogEvents (paging until the forward token comes back unchanged, as the SDK's batch runner
does), FilterLogEvents and StartQuery; the JSON 1.1 error shapes botocore raises as the modelled
exception classes; a runtime's own credentials (from inside its sandbox) reading only its own
spans and groups.
"""

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from berth_harness import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    STATE_TIMEOUT,
    deploy_agent,
    endpoint_arn,
    invoke_json,
    native,
    new_session_id,
    poll,
    unique_name,
)

pytestmark = pytest.mark.build

SPANS = "aws/spans"


def runtime_group(runtime_id: str) -> str:
    return f"/aws/bedrock-agentcore/runtimes/{runtime_id}-DEFAULT"


def attr(key: str, value) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def adot_resource(rt: dict) -> dict:
    """The resource ADOT reports for an agent on AgentCore (runtime-endpoint ARN, service type)."""
    return {
        "attributes": [
            attr("service.name", f"{rt['agentRuntimeName']}.DEFAULT"),
            attr("cloud.resource_id", endpoint_arn(rt["agentRuntimeId"], "DEFAULT")),
            attr("aws.service.type", "gen_ai_agent"),
        ]
    }


def adot_trace_export(rt: dict, trace_id: str, root: str, tool: str, start_ns: int) -> str:
    """An OTLP/JSON trace export shaped like Strands under ADOT: an agent span and a failed tool
    span."""
    spans = [
        {
            "traceId": trace_id,
            "spanId": root,
            "name": "invoke_agent Strands Agents",
            "kind": 1,
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(start_ns + 40_000_000),
            "attributes": [attr("gen_ai.operation.name", "invoke_agent")],
            "status": {"code": 1},
        },
        {
            "traceId": trace_id,
            "spanId": tool,
            "parentSpanId": root,
            "name": "execute_tool lookup",
            "kind": 1,
            "startTimeUnixNano": str(start_ns + 10_000_000),
            "endTimeUnixNano": str(start_ns + 12_500_000),
            "attributes": [attr("gen_ai.operation.name", "execute_tool"), attr("gen_ai.tool.name", "lookup")],
            "status": {"code": 2, "message": "tool failed"},
        },
    ]
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": adot_resource(rt),
                    "scopeSpans": [{"scope": {"name": "strands.telemetry.tracer"}, "spans": spans}],
                }
            ]
        }
    )


def adot_logs_export(rt: dict, trace_id: str, span_id: str, time_ns: int) -> str:
    """An OTLP/JSON logs export like ADOT's LLO handler writes: prompt and completion as one
    record of the span."""
    body = {
        "kvlistValue": {
            "values": [
                {"key": "input", "value": {"stringValue": "what is the weather"}},
                {"key": "output", "value": {"stringValue": "sunny"}},
            ]
        }
    }
    record = {
        "timeUnixNano": str(time_ns),
        "observedTimeUnixNano": str(time_ns),
        "severityNumber": 9,
        "body": body,
        "attributes": [attr("event.name", "strands.telemetry.tracer")],
        "traceId": trace_id,
        "spanId": span_id,
    }
    return json.dumps(
        {
            "resourceLogs": [
                {
                    "resource": adot_resource(rt),
                    "scopeLogs": [{"scope": {"name": "strands.telemetry.tracer"}, "logRecords": [record]}],
                }
            ]
        }
    )


def session_spans(berth, session: str) -> list:
    resp = native(berth, "GET", f"/berth/v1/traces/sessions/{session}")
    assert resp.status == 200, resp
    return resp.json()["spans"]


@pytest.fixture(scope="module")
def logs(berth):
    return berth.client("logs")


@pytest.fixture(scope="module")
def otel(control, s3) -> dict:
    return deploy_agent(control, s3, "otel")


@pytest.fixture(scope="module")
def other(control, s3) -> dict:
    """A second runtime of the same agent: its data must stay out of `otel`'s reach."""
    return deploy_agent(control, s3, "otel")


@pytest.fixture(scope="module")
def telemetry(berth, data, otel) -> dict:
    """One session of `otel` with the OTel SDK's spans (`work` and `chat`, continuing the
    caller's trace), ADOT-shaped spans and a log record exported as OTLP/JSON, and Berth's own
    invocation spans, all stored."""
    arn = otel["agentRuntimeArn"]
    session = new_session_id("cwl")
    caller_trace = uuid.uuid4().hex
    sdk = invoke_json(
        data, arn, session, {"op": "span", "name": "work", "claim": "someone-else"},
        traceParent=f"00-{caller_trace}-{uuid.uuid4().hex[:16]}-01",
    )
    assert sdk["exported"] == ["SUCCESS", "SUCCESS"], sdk
    adot_trace, root, tool = uuid.uuid4().hex, uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    start_ns = time.time_ns() - 5_000_000_000
    sent = invoke_json(data, arn, session, {
        "op": "post", "path": "/v1/traces", "contentType": "application/json",
        "body": adot_trace_export(otel, adot_trace, root, tool, start_ns),
    })
    assert sent["status"] == 200, sent
    sent = invoke_json(data, arn, session, {
        "op": "post", "path": "/v1/logs", "contentType": "application/json",
        "body": adot_logs_export(otel, adot_trace, root, start_ns + 20_000_000),
    })
    assert sent["status"] == 200, sent
    # Berth's own spans (one per invocation, and the first call's Route and StartSession steps)
    # are written by the span sink in the background.
    spans = poll(
        lambda: session_spans(berth, session),
        lambda s: sum(x["name"] == "InvokeAgentRuntime" for x in s) == 3
        and any(x["name"] == "StartSession" for x in s),
        timeout=STATE_TIMEOUT,
        what="berth's three invocation spans and the first one's steps",
    )
    assert len(spans) == 9, [s["name"] for s in spans]
    return {
        "session": session,
        "sdkTrace": sdk["traceId"],
        "adotTrace": adot_trace,
        "root": root,
        "tool": tool,
        "spans": spans,
    }


def window() -> dict:
    now = int(time.time())
    return {"startTime": now - 7 * 86400, "endTime": now + 60}


def query(logs, groups, q: str) -> dict:
    """StartQuery then GetQueryResults; the query has finished by the time StartQuery answers."""
    started = logs.start_query(logGroupNames=groups, queryString=q, **window())
    got = logs.get_query_results(queryId=started["queryId"])
    assert got["status"] == "Complete", got
    return got


def rows(result: dict) -> list:
    return [{f["field"]: f["value"] for f in row} for row in result["results"]]


def test_the_sdk_span_collector_returns_the_sessions_spans(monkeypatch, berth, otel, telemetry):
    from bedrock_agentcore.evaluation.agent_span_collector.agent_span_collector import (
        CloudWatchAgentSpanCollector,
    )

    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", berth.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    collector = CloudWatchAgentSpanCollector(
        log_group_name=runtime_group(otel["agentRuntimeId"]), region=REGION,
        max_wait_seconds=0, poll_interval_seconds=1,
    )
    now = datetime.now(timezone.utc)
    docs = collector.collect(telemetry["session"], now - timedelta(hours=1), now)

    spans = [d for d in docs if "name" in d]
    records = [d for d in docs if "body" in d]
    assert sorted(s["spanId"] for s in spans) == sorted(s["spanId"] for s in telemetry["spans"])
    assert len(records) == 1 and records[0]["spanId"] == telemetry["root"]
    assert records[0]["traceId"] == telemetry["adotTrace"]
    assert records[0]["body"] == {"input": "what is the weather", "output": "sunny"}
    # Sorted by end time as the SDK sorts them; the log record (no end) first.
    ends = [d.get("endTimeUnixNano", 0) for d in docs]
    assert ends == sorted(ends) and docs[0] is records[0]
    for s in spans:
        # The session the span was attributed to, whatever the agent claimed.
        assert s["attributes"]["session.id"] == telemetry["session"]
        assert s["durationNano"] == s["endTimeUnixNano"] - s["startTimeUnixNano"]
        assert set(s) >= {"resource", "scope", "traceId", "spanId", "parentSpanId", "name", "kind",
                          "startTimeUnixNano", "endTimeUnixNano", "durationNano", "attributes", "status"}
    by_name = {s["name"]: s for s in spans}
    assert by_name["chat"]["attributes"]["gen_ai.usage.input_tokens"] == 12
    assert by_name["chat"]["scope"]["name"] == "berth.conformance.otel"
    assert by_name["execute_tool lookup"]["status"] == {"code": "ERROR", "message": "tool failed"}
    assert by_name["work"]["traceId"] == telemetry["sdkTrace"]


def test_toolkit_queries_return_the_right_rows(logs, otel, telemetry):
    rid, session = otel["agentRuntimeId"], telemetry["session"]
    fields = """fields @timestamp,
               @message,
               traceId,
               spanId,
               name as spanName,
               kind,
               status.code as statusCode,
               status.message as statusMessage,
               durationNano/1000000 as durationMs,
               attributes.session.id as sessionId,
               startTimeUnixNano,
               endTimeUnixNano,
               parentSpanId,
               events,
               resource.attributes.service.name as serviceName,
               resource.attributes.cloud.resource_id as resourceId,
               attributes.aws.remote.service as serviceType"""

    # Spans by session (starter toolkit 0.3.14): only the spans whose resource names the
    # runtime endpoint ARN pass the parse + filter: the agent's (Berth tells it that ARN, as
    # AgentCore does), not Berth's own.
    got = rows(query(logs, [SPANS], f"""{fields}
        | filter attributes.session.id = '{session}'
        | parse resource.attributes.cloud.resource_id "runtime/*/" as parsedAgentId
        | filter parsedAgentId = '{rid}'
        | sort startTimeUnixNano asc"""))
    assert [r["spanName"] for r in got] == ["invoke_agent Strands Agents", "execute_tool lookup", "work", "chat"]
    root, tool = got[:2]
    assert root["durationMs"] == "40" and tool["durationMs"] == "2.5"
    assert tool["statusCode"] == "ERROR" and tool["statusMessage"] == "tool failed"
    assert root["statusCode"] == "OK" and "statusMessage" not in root
    assert tool["parentSpanId"] == telemetry["root"] and root["parentSpanId"] == ""
    assert {r["sessionId"] for r in got} == {session}
    assert {r["resourceId"] for r in got} == {endpoint_arn(rid, "DEFAULT")}
    assert root["serviceName"] == f"{otel['agentRuntimeName']}.DEFAULT"
    assert root["resourceId"] == endpoint_arn(rid, "DEFAULT")
    assert "serviceType" not in root and "parsedAgentId" not in root
    assert json.loads(root["@message"])["spanId"] == telemetry["root"]
    assert int(root["startTimeUnixNano"]) < int(tool["startTimeUnixNano"])

    # Spans by session (the current toolkit: no parse): all nine.
    got = rows(query(logs, [SPANS], f"""{fields}
        | filter attributes.session.id = '{session}'
        | sort startTimeUnixNano asc"""))
    assert sorted(r["spanId"] for r in got) == sorted(s["spanId"] for s in telemetry["spans"])
    starts = [int(r["startTimeUnixNano"]) for r in got]
    assert starts == sorted(starts)

    # Spans by trace.
    got = rows(query(logs, [SPANS], f"""{fields}
        | filter traceId = '{telemetry["sdkTrace"]}'
        | sort startTimeUnixNano asc"""))
    # Berth's span and its Route step start at the same instant: their order is the store's.
    names = [r["spanName"] for r in got]
    assert sorted(names[:2]) == ["InvokeAgentRuntime", "Route"]
    assert names[2:] == ["StartSession", "work", "chat"]

    # Runtime logs of a batch of traces.
    traces = ", ".join(f"'{t}'" for t in [telemetry["sdkTrace"], telemetry["adotTrace"], "0" * 32])
    got = rows(query(logs, [runtime_group(rid)], f"""fields @timestamp, @message, spanId, traceId, @logStream
        | filter traceId in [{traces}]
        | sort @timestamp asc"""))
    assert len(got) == 1
    assert got[0]["@logStream"] == "runtime-logs" and got[0]["spanId"] == telemetry["root"]
    assert json.loads(got[0]["@message"])["attributes"]["session.id"] == session

    # The latest session of the agent.
    got = rows(query(logs, [SPANS], f"""filter resource.attributes.aws.service.type = "gen_ai_agent"
        | parse resource.attributes.cloud.resource_id "runtime/*/" as parsedAgentId
        | filter parsedAgentId = '{rid}'
        | stats max(endTimeUnixNano) as maxEnd by attributes.session.id
        | sort maxEnd desc
        | limit 1"""))
    adot_end = max(s["endNs"] for s in telemetry["spans"] if s["traceId"] == telemetry["adotTrace"])
    assert got == [{"attributes.session.id": session, "maxEnd": str(adot_end)}]

    # The session summary (used by evaluation).
    result = query(logs, [SPANS], f"""fields traceId,
               resource.attributes.service.name as serviceName,
               attributes.session.id as sessionId,
               name as spanName,
               durationNano/1000000 as durationMs,
               status.code as statusCode
        | filter attributes.session.id = '{session}'
        | stats count(spanId) as spanCount,
                count_distinct(traceId) as traceCount,
                sum(durationMs) as totalDurationMs,
                sum(status.code = 'ERROR') as errorCount,
                min(startTimeUnixNano) as sessionStart,
                max(endTimeUnixNano) as sessionEnd
          by sessionId""")
    spans = telemetry["spans"]
    (summary,) = rows(result)
    assert summary["sessionId"] == session
    assert summary["spanCount"] == "9"
    assert summary["traceCount"] == str(len({s["traceId"] for s in spans}))
    assert summary["errorCount"] == "1"
    assert summary["sessionStart"] == str(min(s["startNs"] for s in spans))
    assert summary["sessionEnd"] == str(max(s["endNs"] for s in spans))
    total_ms = sum((s["endNs"] - s["startNs"]) / 1e6 for s in spans)
    assert abs(float(summary["totalDurationMs"]) - total_ms) < 1e-6
    assert result["statistics"]["recordsMatched"] == 9.0
    assert result["statistics"]["recordsScanned"] == 9.0
    assert result["statistics"]["bytesScanned"] > 0


def test_groups_streams_and_events_round_trip(logs):
    group = f"/aws/bedrock-agentcore/evaluations/results/{unique_name('cwl')}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="run-1")
    logs.create_log_stream(logGroupName=group, logStreamName="run-2")

    listed = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in listed] == [group]
    assert listed[0]["arn"] == f"arn:aws:logs:{REGION}:000000000000:log-group:{group}:*"
    assert listed[0]["logGroupArn"] == listed[0]["arn"][:-2]
    assert abs(listed[0]["creationTime"] / 1000 - time.time()) < 600
    # aws/spans is always there.
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="aws/")["logGroups"]] == [SPANS]

    base = int(time.time() * 1000) - 60_000
    events = [{"timestamp": base + i, "message": json.dumps({"n": i, "ok": i % 3 != 0})} for i in range(25)]
    put = logs.put_log_events(logGroupName=group, logStreamName="run-1", logEvents=events)
    assert "rejectedLogEventsInfo" not in put
    logs.put_log_events(logGroupName=group, logStreamName="run-2",
                        logEvents=[{"timestamp": base + 100, "message": "second stream ERROR line"}])
    # Events outside CloudWatch's window are rejected and reported, the others kept.
    put = logs.put_log_events(logGroupName=group, logStreamName="run-2", logEvents=[
        {"timestamp": base - 30 * 86400_000, "message": "too old"},
        {"timestamp": base + 101, "message": "in time"},
        {"timestamp": base + 10 * 3600_000, "message": "too new"},
    ])
    assert put["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0, "tooNewLogEventStartIndex": 2}

    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["run-1", "run-2"]
    assert streams[0]["firstEventTimestamp"] == base and streams[0]["lastEventTimestamp"] == base + 24
    assert streams[0]["arn"].endswith(f"log-group:{group}:log-stream:run-1")
    by_time = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True)
    assert [s["logStreamName"] for s in by_time["logStreams"]] == ["run-2", "run-1"]

    # The SDK batch runner's loop: from the head, following nextForwardToken until it comes back
    # unchanged.
    seen, token = [], None
    for _ in range(10):
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(logGroupName=group, logStreamName="run-1", startFromHead=True,
                                   limit=10, **kwargs)
        seen += [json.loads(e["message"])["n"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    else:
        pytest.fail("nextForwardToken never came back unchanged")
    assert seen == list(range(25))
    # Without startFromHead: the latest events; the backward token pages towards the head.
    latest = logs.get_log_events(logGroupName=group, logStreamName="run-1", limit=10)
    assert [json.loads(e["message"])["n"] for e in latest["events"]] == list(range(15, 25))
    before = logs.get_log_events(logGroupName=group, logStreamName="run-1", limit=10,
                                 nextToken=latest["nextBackwardToken"])
    assert [json.loads(e["message"])["n"] for e in before["events"]] == list(range(5, 15))
    assert latest["events"][0]["ingestionTime"] >= latest["events"][0]["timestamp"]
    windowed = logs.get_log_events(logGroupName=group, logStreamName="run-1", startFromHead=True,
                                   startTime=base + 3, endTime=base + 6)
    assert [json.loads(e["message"])["n"] for e in windowed["events"]] == [3, 4, 5]

    # FilterLogEvents across streams, with a term pattern and paging.
    found, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = logs.filter_log_events(logGroupName=group, filterPattern='"ok": false', limit=3, **kwargs)
        found += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    assert [json.loads(e["message"])["n"] for e in found] == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    assert {e["logStreamName"] for e in found} == {"run-1"}
    assert len({e["eventId"] for e in found}) == 9
    hit = logs.filter_log_events(logGroupName=group, filterPattern="?ERROR ?nothing", logStreamNames=["run-2"])
    assert [e["message"] for e in hit["events"]] == ["second stream ERROR line"]
    assert [s["logStreamName"] for s in hit["searchedLogStreams"]] == ["run-2"]

    # And through Logs Insights.
    got = rows(query(logs, [group], "filter ok = 0 or ok = 'false' | stats count(*) as n, sum(n) as total"))
    assert got == [{"n": "9", "total": str(sum(range(0, 25, 3)))}]
    got = rows(query(logs, [group], "filter @message like /ERROR/ | fields @logStream, @log"))
    assert got == [{"@logStream": "run-2", "@log": f"000000000000:{group}"}]


def test_errors_have_the_modelled_shapes(logs, berth):
    missing = f"/berth/missing/{uuid.uuid4().hex}"
    w = window()

    def code(call, exc, **kwargs):
        with pytest.raises(exc) as e:
            call(**kwargs)
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
        return err["Error"] | {k: v for k, v in err.items() if k not in ("Error", "ResponseMetadata")}

    err = code(logs.start_query, logs.exceptions.ResourceNotFoundException,
               logGroupName=missing, queryString="fields @message", **w)
    assert missing in err["Message"]
    err = code(logs.start_query, logs.exceptions.MalformedQueryException,
               logGroupName=SPANS, queryString="fields @message | dedup traceId", **w)
    assert "dedup" in err["Message"]
    # The modelled member: where the parse stopped.
    assert err["queryCompileError"]["location"]["startCharOffset"] == len("fields @message | ")
    code(logs.start_query, logs.exceptions.MalformedQueryException,
         logGroupName=SPANS, queryString="filter strlen(name) > 3", **w)
    code(logs.start_query, logs.exceptions.InvalidParameterException,
         logGroupName=SPANS, queryString="fields @message", startTime=w["endTime"], endTime=w["startTime"])
    code(logs.get_query_results, logs.exceptions.ResourceNotFoundException, queryId=str(uuid.uuid4()))
    code(logs.stop_query, logs.exceptions.ResourceNotFoundException, queryId=str(uuid.uuid4()))
    code(logs.get_log_events, logs.exceptions.ResourceNotFoundException,
         logGroupName=missing, logStreamName="s")
    code(logs.get_log_events, logs.exceptions.ResourceNotFoundException,
         logGroupName=SPANS, logStreamName="no-such-stream")
    code(logs.get_log_events, logs.exceptions.InvalidParameterException,
         logGroupName=SPANS, logStreamName="default", nextToken="garbage")
    code(logs.filter_log_events, logs.exceptions.ResourceNotFoundException, logGroupName=missing)
    code(logs.filter_log_events, logs.exceptions.InvalidParameterException,
         logGroupName=SPANS, filterPattern="{ $.name = 1 }")
    code(logs.describe_log_streams, logs.exceptions.ResourceNotFoundException, logGroupName=missing)
    code(logs.create_log_group, logs.exceptions.ResourceAlreadyExistsException, logGroupName=SPANS)
    code(logs.create_log_group, logs.exceptions.InvalidParameterException, logGroupName="bad:name")
    code(logs.create_log_stream, logs.exceptions.ResourceNotFoundException,
         logGroupName=missing, logStreamName="s")
    code(logs.create_log_stream, logs.exceptions.ResourceAlreadyExistsException,
         logGroupName=SPANS, logStreamName="default")
    code(logs.put_log_events, logs.exceptions.InvalidParameterException, logGroupName=SPANS,
         logStreamName="default", logEvents=[{"timestamp": int(time.time() * 1000), "message": "x"}])
    code(logs.put_log_events, logs.exceptions.ResourceNotFoundException, logGroupName=SPANS,
         logStreamName="nope", logEvents=[{"timestamp": int(time.time() * 1000), "message": "x"}])
    # StopQuery on a finished query: nothing to stop.
    started = logs.start_query(logGroupName=SPANS, queryString="stats count(*)", **w)
    assert logs.stop_query(queryId=started["queryId"])["success"] is False

    # Another key's query results are not visible.
    made = native(berth, "POST", "/berth/v1/keys", body=json.dumps({"name": "logs-reader", "policy": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}}).encode())
    assert made.status == 201, made
    key = made.json()
    reader = boto3.session.Session(
        aws_access_key_id=key["accessKeyId"], aws_secret_access_key=key["secretAccessKey"],
        region_name=REGION,
    ).client("logs", endpoint_url=berth.url)
    with pytest.raises(reader.exceptions.ResourceNotFoundException):
        reader.get_query_results(queryId=started["queryId"])
    mine = reader.start_query(logGroupName=SPANS, queryString="stats count(*)", **w)
    assert reader.get_query_results(queryId=mine["queryId"])["status"] == "Complete"

    # A key without logs permissions is refused in the JSON 1.1 shape.
    made = native(berth, "POST", "/berth/v1/keys", body=json.dumps({"name": "no-logs", "policy": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"}]}}).encode())
    key = made.json()
    limited = boto3.session.Session(
        aws_access_key_id=key["accessKeyId"], aws_secret_access_key=key["secretAccessKey"],
        region_name=REGION,
    ).client("logs", endpoint_url=berth.url)
    assert limited.describe_log_groups(logGroupNamePrefix=SPANS)["logGroups"]
    with pytest.raises(limited.exceptions.ClientError) as e:
        limited.start_query(logGroupName=SPANS, queryString="stats count(*)", **w)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_runtime_credentials_read_only_their_own_runtime(berth, data, logs, otel, other, telemetry):
    rid, other_id = otel["agentRuntimeId"], other["agentRuntimeId"]
    # Data of the other runtime, in a session of its own.
    theirs = new_session_id("cwl-other")
    invoke_json(data, other["agentRuntimeArn"], theirs, {"op": "span", "name": "theirs"})
    poll(lambda: session_spans(berth, theirs),
         lambda s: any(x["name"] == "InvokeAgentRuntime" for x in s),
         timeout=STATE_TIMEOUT, what="the other runtime's spans")
    # The root credentials see both.
    assert rows(query(logs, [SPANS], f"filter attributes.session.id = '{theirs}' | stats count(*) as n")) == [{"n": "5"}]

    w = window()
    count = "stats count(*) as n by attributes.session.id as s | sort s"
    calls = [
        # aws/spans: only this runtime's spans, whichever session is asked for.
        {"method": "start_query", "args": {"logGroupName": SPANS, "queryString": f"filter attributes.session.id = '{theirs}' | stats count(*) as n", **w}},
        {"method": "start_query", "args": {"logGroupName": SPANS, "queryString": f"filter attributes.session.id = '{telemetry['session']}' | stats count(*) as n", **w}},
        # Its own runtime group: readable, and writable.
        {"method": "start_query", "args": {"logGroupName": runtime_group(rid), "queryString": count, **w}},
        {"method": "create_log_stream", "args": {"logGroupName": runtime_group(rid), "logStreamName": "emf"}},
        # Another runtime's group, and groups outside its own: refused.
        {"method": "start_query", "args": {"logGroupName": runtime_group(other_id), "queryString": count, **w}},
        {"method": "create_log_group", "args": {"logGroupName": f"/elsewhere/{uuid.uuid4().hex}"}},
        {"method": "put_log_events", "args": {"logGroupName": SPANS, "logStreamName": "default",
                                              "logEvents": [{"timestamp": int(time.time() * 1000), "message": "x"}]}},
        # Listing shows only its own groups and aws/spans.
        {"method": "describe_log_groups", "args": {"logGroupNamePrefix": "/aws/bedrock-agentcore/runtimes/"}},
    ]
    out = invoke_json(data, otel["agentRuntimeArn"], new_session_id("cwl-agent"), {"op": "logs", "calls": calls})
    r = out["results"]
    assert r[0]["status"] == "Complete" and r[0]["results"] == [[{"field": "n", "value": "0"}]], r[0]
    assert r[1]["results"] == [[{"field": "n", "value": "9"}]], r[1]
    assert r[2]["status"] == "Complete", r[2]
    assert "error" not in r[3], r[3]
    assert r[4] == {"error": "AccessDeniedException"}, r[4]
    assert r[5] == {"error": "AccessDeniedException"}, r[5]
    assert r[6] == {"error": "AccessDeniedException"}, r[6]
    assert [g["logGroupName"] for g in r[7]["logGroups"]] == [runtime_group(rid)], r[7]
    streams = logs.describe_log_streams(logGroupName=runtime_group(rid))["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["emf", "runtime-logs"]


def test_requests_must_be_signed_for_logs(berth):
    """A Logs API request signed for another service is refused in the JSON 1.1 shape."""
    from berth_harness import raw_request

    resp = raw_request(
        berth.url, "POST", "/", service="bedrock-agentcore",
        headers={"X-Amz-Target": "Logs_20140328.DescribeLogGroups",
                 "Content-Type": "application/x-amz-json-1.1"},
        body=b"{}",
    )
    assert resp.status == 403, resp
    assert resp.json()["__type"] == "InvalidSignatureException"
