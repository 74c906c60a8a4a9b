//! Batch evaluations over real SQLite stores (the control database and `traces.db`) and a real
//! local artifact store: a run writes one log event per result where the SDK reads them and a
//! summary per evaluator; a restart resumes what had not started and ends what had, with a reason.
//!
//! The evaluator is a fixed-score double (the engine has its own tests); the runtime caller is
//! never reached (no dataset runs here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::evaluation_data::{BatchEvaluationRef, StartBatchEvaluation};
use berth_eval::batch::{AgentCaller, Batches, SessionEvaluator};
use berth_eval::datasets::Datasets;
use berth_store::eval_data::{BatchRow, EvalDataStore};
use berth_trace::logs::Logs;
use berth_trace::{Attribution, Span, TraceStore};
use berth_types::Partition;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Scores each session 1.0 when its documents contain a tool span, else 0.0; records the
/// reference inputs it was given.
#[derive(Default)]
struct Fixed {
    seen: Mutex<Vec<Value>>,
}

#[async_trait]
impl SessionEvaluator for Fixed {
    async fn evaluate(&self, evaluator_id: &str, input: Value) -> Result<Vec<Value>, ApiError> {
        self.seen.lock().unwrap().push(input.clone());
        let docs = input["evaluationInput"]["sessionSpans"].as_array().unwrap();
        let tool = docs
            .iter()
            .any(|d| d["attributes"]["gen_ai.operation.name"] == "execute_tool");
        let session = docs[0]["attributes"]["session.id"].clone();
        let trace = docs[0]["traceId"].clone();
        Ok(vec![json!({
            "evaluatorArn": format!("arn:aws:bedrock-agentcore:::evaluator/{evaluator_id}"),
            "evaluatorId": evaluator_id,
            "evaluatorName": evaluator_id,
            "context": {"spanContext": {"sessionId": session, "traceId": trace}},
            "value": if tool { 1.0 } else { 0.0 },
            "label": if tool { "Yes" } else { "No" },
            "explanation": "fixed",
        })])
    }
}

struct NoCalls;

#[async_trait]
impl AgentCaller for NoCalls {
    async fn invoke(&self, _: &str, _: &str, _: &str, _: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        panic!("no dataset runs in these tests")
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn EvalDataStore>,
    traces: Arc<dyn TraceStore>,
    logs: Logs,
    datasets: Datasets,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let stores = berth_store::open_all(&format!(
        "sqlite://{}",
        dir.path().join("berth.db").display()
    ))
    .await
    .unwrap();
    let trace_store = Arc::new(
        berth_trace::SqliteTraceStore::open(&dir.path().join("traces.db"))
            .await
            .unwrap(),
    );
    let artifacts = berth_artifacts::ArtifactStore::open_local(&dir.path().join("artifacts"))
        .await
        .unwrap();
    let partition = Partition {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
    };
    let datasets = Datasets::new(
        stores.eval_data.clone(),
        artifacts,
        partition,
        b"secret".to_vec(),
    );
    Env {
        store: stores.eval_data,
        traces: trace_store.clone(),
        logs: Logs::new(trace_store, "us-east-1", "000000000000"),
        datasets,
        _dir: dir,
    }
}

fn batches(e: &Env, evaluator: Arc<Fixed>, shutdown: CancellationToken) -> Batches {
    Batches::new(
        e.store.clone(),
        e.traces.clone(),
        e.logs.clone(),
        e.datasets.clone(),
        Partition {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        },
        evaluator,
        Arc::new(NoCalls),
        berth_control::Leases::standalone(),
        shutdown,
    )
}

fn span(session: &str, trace: &str, id: &str, op: &str, service: &str) -> Span {
    let now = berth_trace::now_ns();
    Span {
        trace_id: trace.into(),
        span_id: id.into(),
        parent_span_id: None,
        name: op.into(),
        kind: "INTERNAL".into(),
        start_ns: now - 1_000_000,
        end_ns: now,
        status_code: "OK".into(),
        status_message: String::new(),
        scope: "strands.telemetry.tracer".into(),
        attributes: json!({"gen_ai.operation.name": op, "session.id": session}),
        resource: json!({"service.name": service}),
        events: json!([]),
        service_name: service.into(),
        attribution: Attribution {
            runtime_id: "shop-abcdefghij".into(),
            version: 1,
            endpoint: "DEFAULT".into(),
            session_id: Some(session.into()),
            actor: None,
        },
    }
}

async fn wait_final(b: &Batches, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = b
            .get(BatchEvaluationRef {
                batch_evaluation_id: id.into(),
            })
            .await
            .unwrap();
        if !["PENDING", "IN_PROGRESS", "STOPPING"].contains(&got.status.as_str()) {
            return serde_json::to_value(got).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {}",
            got.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request(sessions: &[&str]) -> StartBatchEvaluation {
    serde_json::from_value(json!({
        "batchEvaluationName": "nightly",
        "evaluators": [{"evaluatorId": "Builtin.ToolSelectionAccuracy"}],
        "dataSourceConfig": {"cloudWatchLogs": {
            "serviceNames": ["shop.DEFAULT"],
            "filterConfig": {"sessionIds": sessions},
        }},
        "evaluationMetadata": {"sessionMetadata": [{
            "sessionId": "s-tool",
            "testScenarioId": "scn-1",
            "groundTruth": {"inline": {
                "assertions": [{"text": "adds"}],
                "turns": [{"input": {"prompt": "add"}, "expectedResponse": {"text": "5"}}],
            }},
        }]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_scores_sessions_and_writes_one_event_per_result() {
    let e = env().await;
    e.traces
        .insert(
            &[
                span("s-tool", "t1", "a1", "invoke_agent", "shop.DEFAULT"),
                span("s-tool", "t1", "a2", "execute_tool", "shop.DEFAULT"),
                span("s-tool", "t9", "a9", "execute_tool", "other.DEFAULT"),
                span("s-chat", "t2", "b1", "invoke_agent", "shop.DEFAULT"),
            ],
            &[],
        )
        .await
        .unwrap();
    let evaluator = Arc::new(Fixed::default());
    let b = batches(&e, evaluator.clone(), CancellationToken::new());
    let started = b
        .start(request(&["s-tool", "s-chat", "s-none"]))
        .await
        .unwrap();
    assert_eq!(started.status, "PENDING");
    let cw = started.output_config.unwrap().cloud_watch_config.unwrap();
    let done = wait_final(&b, &started.batch_evaluation_id).await;

    // Two sessions scored, one without spans failed: completed with errors, averaged per evaluator.
    assert_eq!(done["status"], "COMPLETED_WITH_ERRORS", "{done}");
    let r = &done["evaluationResults"];
    assert_eq!(r["totalNumberOfSessions"], 3);
    assert_eq!(r["numberOfSessionsCompleted"], 2);
    assert_eq!(r["numberOfSessionsFailed"], 1);
    assert_eq!(r["numberOfSessionsInProgress"], 0);
    let s = &r["evaluatorSummaries"][0];
    assert_eq!(s["evaluatorId"], "Builtin.ToolSelectionAccuracy");
    assert_eq!(s["statistics"]["averageScore"], 0.5);
    assert_eq!(s["totalEvaluated"], 2);
    assert!(done["errorDetails"][0].as_str().unwrap().contains("s-none"));

    // Only the source service's spans are evaluated; the ground truth becomes reference inputs.
    let seen = evaluator.seen.lock().unwrap().clone();
    let first = &seen[0];
    let docs = first["evaluationInput"]["sessionSpans"].as_array().unwrap();
    assert_eq!(docs.len(), 2, "{docs:?}");
    let refs = first["evaluationReferenceInputs"].as_array().unwrap();
    assert_eq!(refs[0]["assertions"][0]["text"], "adds");
    assert_eq!(refs[1]["context"]["spanContext"]["traceId"], "t1");
    assert_eq!(refs[1]["expectedResponse"]["text"], "5");
    assert!(seen[1].get("evaluationReferenceInputs").is_none());

    // One event per result in the output stream, as GetLogEvents returns them.
    let events = e
        .logs
        .get_log_events(
            &berth_trace::logs::Caller {
                access_key_id: "test".into(),
                runtime_id: None,
            },
            &serde_json::from_value(json!({
                "logGroupName": cw.log_group_name.unwrap(),
                "logStreamName": cw.log_stream_name.unwrap(),
                "startFromHead": true,
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let events: Vec<Value> = serde_json::to_value(events).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ev| serde_json::from_str(ev["message"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["gen_ai.evaluation.score.value"], 1.0);
    assert_eq!(events[0]["testScenarioId"], "scn-1");
    assert_eq!(events[0]["session.id"], "s-tool");
    assert_eq!(events[0]["traceId"], "t1");
    assert_eq!(events[1]["gen_ai.evaluation.score.label"], "No");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_pending_batches_and_ends_running_ones_with_a_reason() {
    let e = env().await;
    e.traces
        .insert(
            &[span("s-tool", "t1", "a2", "execute_tool", "shop.DEFAULT")],
            &[],
        )
        .await
        .unwrap();
    let req = serde_json::to_value(request(&["s-tool"])).unwrap();
    let row = |id: &str, status: &str| BatchRow {
        id: id.into(),
        name: "nightly".into(),
        arn: format!("arn:aws:bedrock-agentcore:us-east-1:000000000000:batch-evaluation/{id}"),
        status: status.into(),
        request: {
            let mut r = req.clone();
            r["outputConfig"] = json!({"cloudWatchConfig": {
                "logGroupName": "/aws/bedrock-agentcore/evaluations/batch-evaluations",
                "logStreamName": id,
            }});
            r
        },
        results: None,
        error: None,
        execution: None,
        created_at: 1,
        updated_at: 1,
    };
    // What a killed process left behind.
    for (id, status) in [
        ("pending-aaaaaaaaaa", "PENDING"),
        ("running-aaaaaaaaaa", "IN_PROGRESS"),
        ("stopping-aaaaaaaaa", "STOPPING"),
    ] {
        e.store.insert_batch(&row(id, status), None).await.unwrap();
    }
    let b = batches(&e, Arc::new(Fixed::default()), CancellationToken::new());
    b.recover().await.unwrap();
    let pending = wait_final(&b, "pending-aaaaaaaaaa").await;
    assert_eq!(pending["status"], "COMPLETED", "{pending}");
    let running = wait_final(&b, "running-aaaaaaaaaa").await;
    assert_eq!(running["status"], "FAILED");
    assert!(
        running["errorDetails"][0]
            .as_str()
            .unwrap()
            .contains("restarted")
    );
    assert_eq!(
        wait_final(&b, "stopping-aaaaaaaaa").await["status"],
        "STOPPED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_starts_and_stop_before_running() {
    let e = env().await;
    // A shutdown token already cancelled: nothing runs, so the stop is seen before any session.
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let b = batches(&e, Arc::new(Fixed::default()), shutdown);
    let mut req = request(&["s-tool"]);
    req.client_token = Some("tok-0123456789abcdef0123456789abcdef".into());
    let first = b.start(req.clone()).await.unwrap();
    let again = b.start(req.clone()).await.unwrap();
    assert_eq!(first.batch_evaluation_id, again.batch_evaluation_id);
    req.description = Some("other".into());
    assert!(b.start(req).await.is_err());
    let id = first.batch_evaluation_id.clone();
    let stopped = b
        .stop(BatchEvaluationRef {
            batch_evaluation_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(stopped.status, "STOPPING");
    // The next process finds it stopping and ends it.
    let b2 = batches(&e, Arc::new(Fixed::default()), CancellationToken::new());
    b2.recover().await.unwrap();
    assert_eq!(wait_final(&b2, &id).await["status"], "STOPPED");
    b2.delete(BatchEvaluationRef {
        batch_evaluation_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(
        b2.get(BatchEvaluationRef {
            batch_evaluation_id: id
        })
        .await
        .is_err()
    );
}
