//! Table-driven tests of the Insights subset: what parses, what is refused, and what each
//! query answers over a small fixed set of span documents.

use super::*;
use serde_json::json;

fn span(
    ts: i64,
    trace: &str,
    span: &str,
    name: &str,
    session: &str,
    dur: i64,
    status: &str,
) -> Event {
    let doc = json!({
        "resource": {"attributes": {
            "service.name": "agent.DEFAULT",
            "cloud.resource_id": "arn:aws:bedrock-agentcore:us-east-1:1:runtime/rt-abc/runtime-endpoint/DEFAULT",
            "aws.service.type": "gen_ai_agent",
        }},
        "scope": {"name": "strands.telemetry.tracer", "version": ""},
        "traceId": trace,
        "spanId": span,
        "name": name,
        "kind": "INTERNAL",
        "startTimeUnixNano": ts * 1_000_000,
        "endTimeUnixNano": ts * 1_000_000 + dur,
        "durationNano": dur,
        "attributes": {"session.id": session, "gen_ai.usage.input_tokens": 10},
        "status": {"code": status},
    });
    Event {
        timestamp_ms: ts,
        ingestion_ms: ts,
        message: doc.to_string(),
        log_stream: "default".into(),
        log: "123456789012:aws/spans".into(),
    }
}

fn events() -> Vec<Event> {
    vec![
        span(
            1_700_000_000_000,
            "t1",
            "s1",
            "invoke_agent",
            "sess-a",
            3_000_000,
            "OK",
        ),
        span(
            1_700_000_000_001,
            "t1",
            "s2",
            "chat",
            "sess-a",
            1_500_000,
            "UNSET",
        ),
        span(
            1_700_000_000_002,
            "t2",
            "s3",
            "execute_tool",
            "sess-a",
            500_000,
            "ERROR",
        ),
        span(
            1_700_000_000_003,
            "t3",
            "s4",
            "chat",
            "sess-b",
            2_000_000,
            "OK",
        ),
        Event {
            timestamp_ms: 1_700_000_000_004,
            ingestion_ms: 1_700_000_000_004,
            message: "plain text line with ERROR inside".into(),
            log_stream: "runtime-logs".into(),
            log: "123456789012:/aws/bedrock-agentcore/runtimes/rt-abc-DEFAULT".into(),
        },
    ]
}

fn run(q: &str) -> Output {
    let query = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut x = query.execute(10_000);
    x.feed(events()).expect("under the row cap");
    x.finish()
}

/// The values of `field` in each row (`-` where the row lacks it).
fn column(out: &Output, field: &str) -> Vec<String> {
    out.rows
        .iter()
        .map(|r| {
            r.iter()
                .find(|(f, _)| f == field)
                .map_or_else(|| "-".to_owned(), |(_, v)| v.clone())
        })
        .collect()
}

#[test]
fn queries_answer_the_expected_rows() {
    // (query, field to read, expected values in order)
    let cases: &[(&str, &str, &[&str])] = &[
        // The SDK's CloudWatchAgentSpanCollector.
        (
            "fields @timestamp, @message\n| filter attributes.session.id = \"sess-a\"\n| filter ispresent(scope.name)\n| filter ispresent(traceId)\n| filter ispresent(spanId)\n| sort @timestamp asc",
            "@timestamp",
            &[
                "2023-11-14 22:13:20.000",
                "2023-11-14 22:13:20.001",
                "2023-11-14 22:13:20.002",
            ],
        ),
        // Default order is newest first; `!=`; single quotes.
        (
            "fields spanId | filter name != 'chat'",
            "spanId",
            &["s3", "s1"],
        ),
        (
            "fields spanId | filter name = 'chat' and attributes.session.id = 'sess-b'",
            "spanId",
            &["s4"],
        ),
        (
            "fields spanId | filter name = 'chat' or name = 'execute_tool' | sort spanId",
            "spanId",
            &["s2", "s3", "s4"],
        ),
        (
            "fields spanId | filter not (name = 'chat') and ispresent(spanId) | sort spanId desc",
            "spanId",
            &["s3", "s1"],
        ),
        (
            "fields spanId | filter traceId in ['t1', 't3'] | sort @timestamp asc",
            "spanId",
            &["s1", "s2", "s4"],
        ),
        (
            "fields spanId | filter traceId not in ['t1', 't3'] and ispresent(traceId)",
            "spanId",
            &["s3"],
        ),
        (
            "fields spanId | filter attributes.session.id like 'ss-b'",
            "spanId",
            &["s4"],
        ),
        (
            "fields spanId | filter name like /^ch.t$/ | sort spanId",
            "spanId",
            &["s2", "s4"],
        ),
        (
            "fields spanId | filter name not like /chat/ and ispresent(name) | sort spanId",
            "spanId",
            &["s1", "s3"],
        ),
        (
            "filter @message like 'ERROR' | fields @logStream | sort @logStream",
            "@logStream",
            &["default", "runtime-logs"],
        ),
        // Numbers: comparison, arithmetic (division gives a fraction), aliases.
        (
            "fields durationNano/1000000 as ms | filter durationNano >= 2000000 | sort ms",
            "ms",
            &["2", "3"],
        ),
        (
            "fields durationNano / 1000000 | filter spanId = 's2'",
            "durationNano / 1000000",
            &["1.5"],
        ),
        (
            "fields spanId | filter durationNano < 1000000",
            "spanId",
            &["s3"],
        ),
        (
            "fields spanId | filter durationNano > '1500000' | sort spanId",
            "spanId",
            &["s1", "s4"],
        ),
        (
            "fields durationNano % 7 as r, -durationNano + 1 as n | filter spanId = 's3'",
            "n",
            &["-499999"],
        ),
        // Dotted flattening, nested keys that contain dots.
        (
            "fields resource.attributes.service.name as svc | filter spanId = 's1'",
            "svc",
            &["agent.DEFAULT"],
        ),
        (
            "fields attributes.gen_ai.usage.input_tokens as tok | filter spanId = 's1'",
            "tok",
            &["10"],
        ),
        (
            "fields status.code as c | sort c",
            "c",
            &["ERROR", "OK", "OK", "UNSET", "-"],
        ),
        // parse with a glob, then a filter on what it extracted.
        (
            "parse resource.attributes.cloud.resource_id \"runtime/*/\" as agent | filter agent = 'rt-abc' | stats count(*) as n",
            "n",
            &["4"],
        ),
        (
            "parse @message 'line with * inside' as what | filter ispresent(what) | fields what",
            "what",
            &["ERROR"],
        ),
        (
            "parse @message /with (?<level>[A-Z]+)/ | filter ispresent(level) | fields level",
            "level",
            &["ERROR"],
        ),
        // stats: by, aliases, sort and limit on an aggregate.
        (
            "filter ispresent(spanId) | stats count(*) as n by attributes.session.id as sid | sort n desc",
            "sid",
            &["sess-a", "sess-b"],
        ),
        (
            "stats max(endTimeUnixNano) as maxEnd by attributes.session.id | sort maxEnd desc | limit 1",
            "attributes.session.id",
            &["sess-b"],
        ),
        (
            "stats max(endTimeUnixNano) as maxEnd by attributes.session.id | sort maxEnd desc | limit 1",
            "maxEnd",
            &["1700000000005000000"],
        ),
        ("stats count_distinct(traceId) as t", "t", &["3"]),
        ("stats count(spanId)", "count(spanId)", &["4"]),
        ("stats count(*)", "count(*)", &["5"]),
        (
            "stats sum(status.code = 'ERROR') as errors",
            "errors",
            &["1"],
        ),
        ("stats min(durationNano) as lo", "lo", &["500000"]),
        ("stats avg(durationNano) as mean", "mean", &["1750000"]),
        ("filter name = 'nothing' | stats count(*) as n", "n", &["0"]),
        // limit takes the first rows in the current order.
        (
            "fields spanId | filter ispresent(spanId) | sort spanId asc | limit 2",
            "spanId",
            &["s1", "s2"],
        ),
        // Missing fields are left out of a row.
        (
            "fields spanId, nothing.here | filter spanId = 's1'",
            "nothing.here",
            &["-"],
        ),
        // Backtick-quoted names.
        (
            "fields `attributes.session.id` as s | filter spanId = 's4'",
            "s",
            &["sess-b"],
        ),
    ];
    for (q, field, want) in cases {
        let out = run(q);
        assert_eq!(column(&out, field), *want, "query: {q}");
    }
}

#[test]
fn the_toolkit_session_summary_query_runs() {
    let q = "fields traceId,
               resource.attributes.service.name as serviceName,
               attributes.session.id as sessionId,
               name as spanName,
               durationNano/1000000 as durationMs,
               status.code as statusCode
        | filter attributes.session.id = 'sess-a'
        | stats count(spanId) as spanCount,
                count_distinct(traceId) as traceCount,
                sum(durationMs) as totalDurationMs,
                sum(status.code = 'ERROR') as errorCount,
                min(startTimeUnixNano) as sessionStart,
                max(endTimeUnixNano) as sessionEnd
          by sessionId";
    let out = run(q);
    assert_eq!(
        out.rows,
        vec![vec![
            ("sessionId".to_owned(), "sess-a".to_owned()),
            ("spanCount".to_owned(), "3".to_owned()),
            ("traceCount".to_owned(), "2".to_owned()),
            ("totalDurationMs".to_owned(), "5".to_owned()),
            ("errorCount".to_owned(), "1".to_owned()),
            ("sessionStart".to_owned(), "1700000000000000000".to_owned()),
            ("sessionEnd".to_owned(), "1700000000003000000".to_owned()),
        ]]
    );
    assert_eq!(out.statistics.records_scanned, 5.0);
    assert_eq!(out.statistics.records_matched, 3.0);
}

#[test]
fn no_fields_command_shows_the_default_fields() {
    let out = run("filter spanId = 's4'");
    let names: Vec<&str> = out.rows[0].iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["@timestamp", "@message", "@logStream", "@log"]);
    assert_eq!(out.rows[0][3].1, "123456789012:aws/spans");
}

#[test]
fn the_request_limit_caps_the_rows() {
    let query = Query::parse("fields spanId").expect("parses");
    let mut x = query.execute(2);
    x.feed(events()).expect("under the cap");
    let out = x.finish();
    assert_eq!(out.rows.len(), 2);
    assert_eq!(out.statistics.records_matched, 5.0);
}

#[test]
fn unsupported_queries_are_malformed() {
    let cases = [
        "",
        "fields",
        "fields a |",
        "display a",
        "fields a | dedup a",
        "filter strlen(a) > 3",
        "stats pct(a, 50)",
        "stats count(*) by bin(5m)",
        "filter a = 'unterminated",
        "filter a like 3",
        "filter a in 'x'",
        "limit 0",
        "limit x",
        "parse @message 'a*b*c' as one",
        "parse @message /no groups/",
        "filter a = = b",
        "fields a b",
        "filter a ~ b",
        "sort",
        "filter (a = 1",
    ];
    for q in cases {
        assert!(Query::parse(q).is_err(), "{q:?} should be malformed");
    }
}

#[test]
fn pushdown_finds_leading_session_and_trace_equalities() {
    // (query, session pushed down, trace ids pushed down)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a [&'a str]>);
    let cases: &[Case] = &[
        (
            "filter attributes.session.id = 'S' | sort @timestamp",
            Some("S"),
            None,
        ),
        (
            "fields a | filter ispresent(x) and 'S' = attributes.session.id",
            Some("S"),
            None,
        ),
        ("filter attributes.session.id like 'S'", None, None),
        ("filter attributes.session.id = 'S' or x = 1", None, None),
        (
            "stats count(*) by x | filter attributes.session.id = 'S'",
            None,
            None,
        ),
        (
            "fields y as attributes.session.id | filter attributes.session.id = 'S'",
            None,
            None,
        ),
        ("filter traceId = 'T'", None, Some(&["T"])),
        (
            "filter traceId in ['T1', 'T2'] | sort @timestamp asc",
            None,
            Some(&["T1", "T2"]),
        ),
        ("filter traceId not in ['T1']", None, None),
    ];
    for (q, session, traces) in cases {
        let p = Query::parse(q).expect("parses").pushdown();
        assert_eq!(p.session_id.as_deref(), *session, "{q}");
        assert_eq!(
            p.trace_ids,
            traces.map(|t| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()),
            "{q}"
        );
    }
}
