//! Traffic policies, routing, drains, rollback, rollouts and the audit log, driven through the
//! public API of `Control` with a recording deployer and the controller ticked by hand on a
//! test clock (no sleeps, no background tasks).
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::control::RuntimeSpec;
use berth_control::health::Outcome;
use berth_control::rollout::StartRollout;
use berth_control::traffic::{AddRule, DecidedBy, Rollback, SetTraffic, Split};
use berth_control::{Caller, Control, Controller, Deployer, Options, RouteRequest};
use berth_store::Write;
use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use berth_types::{Partition, Status, now_millis};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A typed request from its wire JSON, as the server reads it after model validation.
fn req<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// A typed answer as the JSON the server sends.
fn wire<T: serde::Serialize>(t: T) -> Value {
    serde_json::to_value(t).unwrap()
}

const RT: &str = "agent-0123456789";
const CUSTOM: &str = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Org";

/// Records what the control plane asks of the session layer.
#[derive(Default)]
struct Recorder {
    drained: Mutex<Vec<(String, String, u32)>>,
    warmed: Mutex<Vec<u32>>,
    /// When set, `retire` waits here: a teardown as slow as the test wants.
    retire_gate: Option<Arc<Gate>>,
}

/// A point slow work stops at until the test opens it: `entered` fires when the work arrives,
/// the work goes on after `open`. Deterministic, unlike a sleep.
#[derive(Default)]
struct Gate {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Gate {
    async fn pass(&self) {
        self.entered.notify_one();
        self.release.notified().await;
    }
    fn open(&self) {
        self.release.notify_one();
    }
}

/// A rollout signal that passes, after waiting at its gate (an evaluator calling a slow model).
struct GatedSignal(Arc<Gate>);

#[async_trait]
impl berth_control::rollout::Signal for GatedSignal {
    fn name(&self) -> &str {
        "gated"
    }
    async fn judge(&self, _: &berth_control::rollout::Window) -> berth_control::rollout::Verdict {
        self.0.pass().await;
        berth_control::rollout::Verdict::Pass
    }
}

struct TestDeployer(Arc<Recorder>);

#[async_trait]
impl Deployer for TestDeployer {
    fn check(&self, _: &RuntimeSpec) -> Result<(), ApiError> {
        Ok(())
    }
    async fn build(
        &self,
        _: &Runtime,
        v: &RuntimeVersion,
    ) -> Result<String, berth_control::deployer::Error> {
        Ok(format!("sha256:{}", v.version))
    }
    async fn retire(&self, _: &str, _: Option<u32>) {
        if let Some(gate) = &self.0.retire_gate {
            gate.pass().await;
        }
    }
    async fn drain(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
    ) -> Result<usize, berth_control::deployer::Error> {
        self.0
            .drained
            .lock()
            .unwrap()
            .push((runtime_id.into(), endpoint.into(), version));
        Ok(1)
    }
    async fn warm(&self, _: &Runtime, v: &RuntimeVersion) {
        self.0.warmed.lock().unwrap().push(v.version);
    }
}

struct Fixture {
    control: Control,
    controller: Controller,
    recorder: Arc<Recorder>,
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn options() -> Options {
    Options {
        run_controller: false,
        health_bucket_ms: 1_000,
        ..Options::default()
    }
}

async fn start(path: &Path) -> (Control, Controller, Arc<Recorder>) {
    start_with(path, options(), Recorder::default()).await
}

async fn start_with(
    path: &Path,
    options: Options,
    recorder: Recorder,
) -> (Control, Controller, Arc<Recorder>) {
    let store = berth_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let recorder = Arc::new(recorder);
    let control = Control::start_with(
        store,
        Partition {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        },
        Arc::new(TestDeployer(recorder.clone())),
        CancellationToken::new(),
        options,
    )
    .await
    .unwrap();
    let controller = Controller::new(control.clone());
    (control, controller, recorder)
}

fn spec() -> Value {
    json!({
        "agentRuntimeArtifact": {"codeConfiguration": {
            "code": {"s3": {"bucket": "b", "prefix": "a.zip"}},
            "runtime": "PYTHON_3_12", "entryPoint": ["agent.py"]}},
        "roleArn": "arn:aws:iam::000000000000:role/r",
        "requestHeaderConfiguration": {"requestHeaderAllowlist": [CUSTOM]},
    })
}

/// A runtime with READY versions 1..=3 and an endpoint `prod` serving version 1, written
/// straight into the store (builds are not what these tests are about).
async fn fixture() -> Fixture {
    fixture_with(options(), Recorder::default()).await
}

async fn fixture_with(options: Options, recorder: Recorder) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (control, controller, recorder) = start_with(&path, options, recorder).await;
    let now = now_millis();
    let mut writes = vec![Write::InsertRuntime(Runtime {
        id: RT.into(),
        name: "agent".into(),
        latest_version: 3,
        deleting: false,
        created_at: now,
        updated_at: now,
    })];
    for version in 1..=3 {
        writes.push(Write::PutVersion(RuntimeVersion {
            runtime_id: RT.into(),
            version,
            spec: spec(),
            status: Status::Ready,
            failure_reason: None,
            artifact_digest: Some(format!("sha256:{version}")),
            created_at: now,
            updated_at: now,
        }));
    }
    for (name, v) in [("DEFAULT", 3), ("prod", 1)] {
        writes.push(Write::InsertEndpoint(Endpoint {
            runtime_id: RT.into(),
            name: name.into(),
            id: format!("{name}-0123456789"),
            description: None,
            live_version: Some(v),
            target_version: Some(v),
            status: Status::Ready,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        }));
    }
    control.store().apply(writes).await.unwrap();
    Fixture {
        control,
        controller,
        recorder,
        path,
        _dir: Some(dir),
    }
}

impl Fixture {
    async fn restart(&mut self) {
        let (control, controller, recorder) = start(&self.path).await;
        self.control = control;
        self.controller = controller;
        self.recorder = recorder;
    }

    async fn route(&self, session: &str) -> (u32, DecidedBy) {
        let r = self
            .control
            .route(RT, Some("prod"), &RouteRequest::session(session))
            .await
            .unwrap();
        (r.resolved.version.version, r.by)
    }

    async fn traffic(&self) -> Value {
        wire(self.control.traffic(RT, "prod").await.unwrap())
    }

    async fn set(&self, weights: Value) -> Value {
        self.control
            .set_traffic(
                RT,
                "prod",
                SetTraffic::from_json(&json!({ "weights": weights })).unwrap(),
            )
            .await
            .map(wire)
            .unwrap()
    }

    async fn audit(&self) -> Vec<Value> {
        let log = wire(self.control.audit_log(Some(RT), 0, 1000).await.unwrap());
        log["entries"].as_array().unwrap().clone()
    }

    async fn rollout(&self) -> Value {
        wire(self.control.rollout_status(RT, "prod").await.unwrap())["rollout"].clone()
    }
}

fn sid(i: usize) -> String {
    format!("split-session-{i:05}-0123456789abcdefghijklmnopqrstuv")
}

#[tokio::test]
async fn split_90_10_over_5000_sessions_is_within_two_points_and_sticks_across_restart() {
    let mut f = fixture().await;
    let t = f.set(json!({"1": 90, "2": 10})).await;
    assert_eq!(
        (t["liveVersion"].as_u64(), t["targetVersion"].as_u64()),
        (Some(1), Some(2))
    );
    let ep = f
        .control
        .get_endpoint(req(json!({"agentRuntimeId": RT, "endpointName": "prod"})))
        .await
        .unwrap();
    assert_eq!(
        (ep.live_version.as_deref(), ep.target_version.as_deref()),
        (Some("1"), Some("2"))
    );

    let mut first = Vec::with_capacity(5000);
    for i in 0..5000 {
        let (v, by) = f.route(&sid(i)).await;
        assert!(matches!(by, DecidedBy::Weight(_)));
        first.push(v);
    }
    let on_2 = first.iter().filter(|&&v| v == 2).count();
    let share = on_2 as f64 / 5000.0;
    assert!(
        (share - 0.10).abs() <= 0.02,
        "{on_2} of 5000 sessions on version 2 ({share:.3})"
    );
    assert_eq!(first.iter().filter(|&&v| v == 1).count() + on_2, 5000);

    // Restart the control plane on the same database and move every NEW session elsewhere:
    // each of the 5000 sessions still reaches the version it started on.
    f.restart().await;
    f.set(json!({"3": 100})).await;
    for (i, want) in first.iter().enumerate() {
        let (v, by) = f.route(&sid(i)).await;
        assert_eq!((v, by), (*want, DecidedBy::Assignment), "session {i}");
    }
    assert_eq!(
        f.route("a-brand-new-session-0123456789abcdefghij").await.0,
        3
    );
    let counts = f.traffic().await["sessions"].clone();
    assert_eq!(
        counts,
        json!([{"version": 1, "assigned": 5000 - on_2}, {"version": 2, "assigned": on_2}, {"version": 3, "assigned": 1}])
    );
}

#[tokio::test]
async fn rules_route_by_user_actor_and_allow_listed_header_before_weights() {
    let f = fixture().await;
    let add = |m: Value, v: u32| {
        f.control.add_rule(
            RT,
            "prod",
            AddRule::from_json(&json!({"match": m, "version": v})).unwrap(),
        )
    };
    add(json!({"userId": "alice"}), 2).await.unwrap();
    add(json!({"header": {"name": CUSTOM, "value": "acme"}}), 3)
        .await
        .unwrap();
    let actor_rule = add(json!({"actor": "AKIAROUTED"}), 2).await.unwrap();
    let e = add(
        json!({"header": {"name": "x-not-allowed", "value": "1"}}),
        2,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400, "{e:?}");
    let e = add(json!({"userId": "bob"}), 9).await.unwrap_err();
    assert_eq!(e.status(), 400);

    let route = |session: &'static str,
                 user: Option<&'static str>,
                 actor: Option<&'static str>,
                 org: Option<&'static str>| {
        let control = f.control.clone();
        async move {
            let lookup = move |n: &str| {
                if n.eq_ignore_ascii_case(CUSTOM) {
                    org
                } else {
                    None
                }
            };
            let req = RouteRequest {
                session_id: session,
                user_id: user,
                actor,
                header: &lookup,
            };
            control.route(RT, Some("prod"), &req).await.unwrap()
        }
    };
    let r = route(
        "rule-session-1-0123456789abcdefghijklmnopq",
        Some("alice"),
        None,
        None,
    )
    .await;
    assert_eq!((r.resolved.version.version, r.by), (2, DecidedBy::Rule(0)));
    let r = route(
        "rule-session-2-0123456789abcdefghijklmnopq",
        Some("bob"),
        None,
        Some("acme"),
    )
    .await;
    assert_eq!((r.resolved.version.version, r.by), (3, DecidedBy::Rule(1)));
    let r = route(
        "rule-session-3-0123456789abcdefghijklmnopq",
        None,
        Some("AKIAROUTED"),
        None,
    )
    .await;
    assert_eq!(r.resolved.version.version, 2);
    let r = route(
        "rule-session-4-0123456789abcdefghijklmnopq",
        Some("bob"),
        Some("AKIAOTHER"),
        Some("other"),
    )
    .await;
    assert_eq!(r.resolved.version.version, 1);
    assert!(matches!(r.by, DecidedBy::Weight(_)));

    // Rule versions are part of the routing: removing the rule drains the version.
    let id = actor_rule.rule.id.clone();
    f.control.remove_rule(RT, "prod", &id).await.unwrap();
    let t = f.traffic().await;
    assert_eq!(t["rules"].as_array().unwrap().len(), 2);
    assert!(
        t["draining"].as_array().unwrap().is_empty(),
        "version 2 still has the userId rule: {t}"
    );
    let rules = t["rules"].as_array().unwrap().clone();
    f.control
        .remove_rule(RT, "prod", rules[0]["id"].as_str().unwrap())
        .await
        .unwrap();
    let t = f.traffic().await;
    assert_eq!(t["draining"][0]["version"], 2, "{t}");
    let actions: Vec<String> = f
        .audit()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "traffic.rule.add").count(),
        3
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "traffic.rule.remove")
            .count(),
        2
    );
}

#[tokio::test]
async fn drain_keeps_sessions_on_their_version_until_the_deadline_then_stops_them() {
    let mut f = fixture().await;
    let s = "drain-session-0123456789abcdefghijklmnopqrstu";
    assert_eq!(f.route(s).await.0, 1);
    let before = now_millis();
    f.control
        .set_traffic(
            RT,
            "prod",
            SetTraffic::from_json(&json!({"weights": {"2": 100}, "drainSeconds": 30})).unwrap(),
        )
        .await
        .unwrap();
    let t = f.traffic().await;
    assert_eq!(
        (t["liveVersion"].as_u64(), t["previousVersion"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(t["draining"][0]["version"], 1);
    // New sessions follow the new weights; the existing one stays (also after a restart).
    assert_eq!(
        f.route("drain-new-session-0123456789abcdefghijklmno")
            .await
            .0,
        2
    );
    f.restart().await;
    assert_eq!(f.route(s).await, (1, DecidedBy::Assignment));

    f.controller.tick(before + 10_000).await;
    assert!(
        f.recorder.drained.lock().unwrap().is_empty(),
        "deadline not reached yet"
    );
    f.controller.tick(before + 31_000 + 1_000).await;
    assert_eq!(
        *f.recorder.drained.lock().unwrap(),
        vec![(RT.to_owned(), "prod".to_owned(), 1)]
    );
    assert!(f.traffic().await["draining"].as_array().unwrap().is_empty());
    // The assignment ended with the drain: the session routes afresh.
    assert_eq!(f.route(s).await.0, 2);
    let expired: Vec<Value> = f
        .audit()
        .await
        .into_iter()
        .filter(|e| e["action"] == "drain.expire")
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["actor"], "rollout-controller");
}

#[tokio::test]
async fn rollback_returns_to_the_previous_version_in_one_call_and_is_recorded() {
    let f = fixture().await;
    let e = f
        .control
        .rollback(RT, "prod", Rollback::from_json(&json!({})).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409, "nothing to roll back to yet");
    f.set(json!({"2": 100})).await;
    let s = "on-two-0123456789abcdefghijklmnopqrstuvwxyz";
    assert_eq!(f.route(s).await.0, 2);
    let t = Caller::new("AKIAOPERATOR", Some("req-rollback".into()))
        .scope(
            f.control
                .rollback(RT, "prod", Rollback::from_json(&json!({})).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!((t.live_version, t.previous_version), (Some(1), Some(2)));
    assert_eq!(
        f.route("after-rollback-0123456789abcdefghijklmnopq")
            .await
            .0,
        1,
        "new sessions at once"
    );
    assert_eq!(
        f.route(s).await.0,
        2,
        "the session started on 2 stays there while it drains"
    );
    assert!(
        f.recorder.warmed.lock().unwrap().contains(&1),
        "the rollback target is kept warm"
    );

    // During a split, rollback means 100% stable.
    f.set(json!({"1": 50, "3": 50})).await;
    let t = f
        .control
        .rollback(RT, "prod", Rollback::from_json(&json!({})).unwrap())
        .await
        .unwrap();
    assert_eq!(
        t.weights,
        vec![Split {
            version: 1,
            weight: 100
        }]
    );
    let entries = f.audit().await;
    let rb: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "rollback")
        .collect();
    assert_eq!(rb.len(), 2);
    assert_eq!(
        (rb[0]["actor"].as_str(), rb[0]["requestId"].as_str()),
        (Some("AKIAOPERATOR"), Some("req-rollback"))
    );
    assert_eq!(rb[0]["before"]["liveVersion"], 2);
    assert_eq!(rb[0]["after"]["liveVersion"], 1);
}

#[tokio::test]
async fn update_endpoint_moves_to_100_percent_with_drain_and_ends_the_split() {
    let f = fixture().await;
    f.set(json!({"1": 50, "2": 50})).await;
    let mut on = std::collections::HashMap::new();
    for i in 0..40 {
        on.insert(sid(i), f.route(&sid(i)).await.0);
    }
    assert!(on.values().any(|v| *v == 2) && on.values().any(|v| *v == 1));
    let r = f
        .control
        .update_endpoint(req(
            json!({"agentRuntimeId": RT, "endpointName": "prod", "agentRuntimeVersion": "3"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        (r.live_version.as_deref(), r.target_version.as_deref()),
        (Some("3"), Some("3"))
    );
    let t = f.traffic().await;
    assert_eq!(t["weights"], json!([{"version": 3, "weight": 100}]));
    let draining: Vec<u64> = t["draining"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_u64().unwrap())
        .collect();
    assert_eq!(draining, vec![1, 2]);
    for (s, v) in &on {
        assert_eq!(
            f.route(s).await.0,
            *v,
            "existing sessions keep their version"
        );
    }
    assert_eq!(
        f.route("fresh-after-update-0123456789abcdefghijklm")
            .await
            .0,
        3
    );
    assert!(
        f.audit()
            .await
            .iter()
            .any(|e| e["action"] == "UpdateAgentRuntimeEndpoint")
    );
    // DEFAULT cannot be split.
    let e = f
        .control
        .set_traffic(
            RT,
            "DEFAULT",
            SetTraffic::from_json(&json!({"weights": {"1": 50, "3": 50}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

/// Records `n` invocations of `version` on `prod` at `at`, every `fail_every`-th failing.
fn traffic_at(f: &Fixture, version: u32, n: u32, fail_every: Option<u32>, at: i64) {
    for i in 0..n {
        let outcome = match fail_every {
            Some(k) if i % k == 0 => Outcome::AgentError,
            _ => Outcome::Ok,
        };
        f.control
            .health()
            .record_at(RT, "prod", version, outcome, Duration::from_millis(20), at);
    }
}

#[tokio::test]
async fn a_healthy_rollout_walks_every_step_to_100_percent_by_itself() {
    let mut f = fixture().await;
    let started = f
        .control
        .start_rollout(RT, "prod", StartRollout::from_json(&json!({"toVersion": 2, "intervalSeconds": 60, "minInvocations": 10, "maxErrorRate": "stable+0.05", "maxP99Ms": "stable*3"})).unwrap())
        .await
        .unwrap();
    assert_eq!(started.rollout.canary_weight, Some(5));
    let t0 = now_millis();
    let mut weights = vec![];
    let mut t = t0;
    for _ in 0..8 {
        // Each tick: a little healthy traffic on both versions, then the controller runs.
        t += 30_000;
        traffic_at(&f, 1, 40, Some(20), t);
        traffic_at(&f, 2, 12, Some(20), t);
        f.controller.tick(t).await;
        let r = f.rollout().await;
        weights.push(r["canaryWeight"].as_u64().unwrap());
        if r["state"] == "COMPLETED" {
            break;
        }
    }
    let r = f.rollout().await;
    assert_eq!(r["state"], "COMPLETED", "{r}");
    assert_eq!(weights, vec![5, 25, 25, 50, 50, 100, 100, 100]);
    let tr = f.traffic().await;
    assert_eq!(
        (
            tr["liveVersion"].as_u64(),
            tr["targetVersion"].as_u64(),
            tr["previousVersion"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(tr["draining"][0]["version"], 1);
    let actions: Vec<(String, String)> = f
        .audit()
        .await
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let by_controller = |a: &str| {
        actions
            .iter()
            .filter(|(x, who)| x == a && who == "rollout-controller")
            .count()
    };
    assert_eq!(
        (
            by_controller("rollout.advance"),
            by_controller("rollout.complete")
        ),
        (3, 1),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_version_failing_30_percent_is_aborted_by_the_analysis_and_new_sessions_return_to_stable()
{
    let mut f = fixture().await;
    f.control
        .start_rollout(RT, "prod", StartRollout::from_json(&json!({"toVersion": 2, "steps": [50, 100], "intervalSeconds": 60, "minInvocations": 10})).unwrap())
        .await
        .unwrap();
    let mut on_canary = vec![];
    for s in (0..200).map(sid) {
        if f.route(&s).await.0 == 2 {
            on_canary.push(s);
        }
    }
    assert!(!on_canary.is_empty());
    let t = now_millis() + 1_000;
    // Too little data: the rollout holds, it does not abort on 3 invocations.
    f.control.health().record_at(
        RT,
        "prod",
        2,
        Outcome::AgentError,
        Duration::from_millis(5),
        t,
    );
    traffic_at(&f, 2, 2, None, t);
    f.controller.tick(t).await;
    let r = f.rollout().await;
    assert_eq!(r["state"], "RUNNING");
    assert!(r["reason"].as_str().unwrap().starts_with("holding"), "{r}");
    // 30% of the canary's invocations fail: aborted within the step, no operator involved.
    traffic_at(&f, 2, 20, Some(3), t + 1_000);
    traffic_at(&f, 1, 20, None, t + 1_000);
    f.controller.tick(t + 2_000).await;
    let r = f.rollout().await;
    assert_eq!(r["state"], "ABORTED", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("error-rate"), "{r}");
    let tr = f.traffic().await;
    assert_eq!(tr["weights"], json!([{"version": 1, "weight": 100}]));
    assert_eq!(tr["draining"][0]["version"], 2);
    for i in 0..50 {
        let s = format!("after-abort-{i:03}-0123456789abcdefghijklmnop");
        assert_eq!(f.route(&s).await.0, 1);
    }
    assert_eq!(
        f.route(&on_canary[0]).await.0,
        2,
        "canary sessions drain on their version"
    );
    let abort = f
        .audit()
        .await
        .into_iter()
        .find(|e| e["action"] == "rollout.abort")
        .unwrap();
    assert_eq!(abort["actor"], "rollout-controller");
}

#[tokio::test]
async fn a_restart_resumes_a_rollout_where_it_was() {
    let mut f = fixture().await;
    f.control
        .start_rollout(RT, "prod", StartRollout::from_json(&json!({"toVersion": 3, "steps": [10, 50, 100], "intervalSeconds": 10, "minInvocations": 5})).unwrap())
        .await
        .unwrap();
    let t = now_millis() + 11_000;
    traffic_at(&f, 3, 5, None, t);
    f.controller.tick(t).await;
    assert_eq!(f.rollout().await["canaryWeight"], 50);
    f.restart().await;
    assert_eq!(
        f.rollout().await["canaryWeight"],
        50,
        "state is in the store"
    );
    // The restarted controller continues: the step's window and interval carry over.
    f.controller.tick(t + 5_000).await;
    assert_eq!(f.rollout().await["canaryWeight"], 50);
    traffic_at(&f, 3, 5, None, t + 6_000);
    f.controller.tick(t + 11_000).await;
    assert_eq!(f.rollout().await["canaryWeight"], 100);
}

#[tokio::test]
async fn pause_resume_promote_and_abort_are_operator_commands() {
    use berth_control::rollout::Command;
    let mut f = fixture().await;
    let start = json!({"toVersion": 2, "intervalSeconds": 1, "minInvocations": 1});
    f.control
        .start_rollout(RT, "prod", StartRollout::from_json(&start.clone()).unwrap())
        .await
        .unwrap();
    let e = f
        .control
        .start_rollout(RT, "prod", StartRollout::from_json(&start.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 409, "one rollout per endpoint");
    f.control
        .command_rollout(RT, "prod", Command::Pause)
        .await
        .unwrap();
    let t = now_millis() + 60_000;
    traffic_at(&f, 2, 10, None, t);
    f.controller.tick(t).await;
    assert_eq!(
        (
            f.rollout().await["state"].as_str(),
            f.rollout().await["canaryWeight"].as_u64()
        ),
        (Some("PAUSED"), Some(5))
    );
    f.control
        .command_rollout(RT, "prod", Command::Resume)
        .await
        .unwrap();
    f.control
        .command_rollout(RT, "prod", Command::Promote)
        .await
        .unwrap();
    let r = f.rollout().await;
    assert_eq!(r["state"], "COMPLETED");
    assert_eq!(f.traffic().await["liveVersion"], 2);

    f.control
        .start_rollout(
            RT,
            "prod",
            StartRollout::from_json(&json!({"toVersion": 3})).unwrap(),
        )
        .await
        .unwrap();
    Caller::new("AKIAOPERATOR", None)
        .scope(f.control.command_rollout(RT, "prod", Command::Abort))
        .await
        .unwrap();
    let r = f.rollout().await;
    assert_eq!(
        (r["state"].as_str(), r["reason"].as_str()),
        (Some("ABORTED"), Some("aborted by AKIAOPERATOR"))
    );
    assert_eq!(
        f.traffic().await["weights"],
        json!([{"version": 2, "weight": 100}])
    );
    let e = f
        .control
        .command_rollout(RT, "prod", Command::Abort)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 404);
}

#[tokio::test]
async fn every_mutation_is_audited_with_who_and_the_chain_verifies() {
    let f = fixture().await;
    let caller = Caller::new("AKIAAUDITOR", Some("req-1".into()));
    caller
        .clone()
        .scope(f.control.create_endpoint(req(
            json!({"agentRuntimeId": RT, "name": "canary", "agentRuntimeVersion": "2"}),
        )))
        .await
        .unwrap();
    let arn = "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/agent-0123456789/runtime-endpoint/canary";
    caller
        .clone()
        .scope(
            f.control
                .tag_resource(req(json!({"resourceArn": arn, "tags": {"team": "a"}}))),
        )
        .await
        .unwrap();
    caller
        .clone()
        .scope(f.control.set_traffic(
            RT,
            "canary",
            SetTraffic::from_json(&json!({"weights": {"2": 50, "3": 50}})).unwrap(),
        ))
        .await
        .unwrap();
    caller
        .clone()
        .scope(
            f.control
                .delete_endpoint(req(json!({"agentRuntimeId": RT, "endpointName": "canary"}))),
        )
        .await
        .unwrap();
    let log = wire(f.control.audit_log(Some(arn), 0, 100).await.unwrap());
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "CreateAgentRuntimeEndpoint",
            "TagResource",
            "traffic.set",
            "DeleteAgentRuntimeEndpoint"
        ]
    );
    for e in entries {
        assert_eq!(
            (e["actor"].as_str(), e["requestId"].as_str()),
            (Some("AKIAAUDITOR"), Some("req-1"))
        );
    }
    assert_eq!(entries[1]["after"]["tags"]["team"], "a");
    let v = wire(f.control.verify_audit().await.unwrap());
    assert_eq!(
        (v["valid"].as_bool(), v["entries"].as_u64()),
        (Some(true), Some(4))
    );
}

/// Bounds a step that must not wait for a gate: it finishes on its own or the test fails
/// saying what blocked it (the bound only turns a deadlock into a failure; it is not how the
/// test synchronises).
async fn unblocked<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} waited for slow work held behind the write lock"),
    }
}

#[tokio::test]
async fn a_slow_signal_blocks_no_other_write_and_an_operator_pause_wins_over_its_verdict() {
    use berth_control::rollout::Command;
    let gate = Arc::new(Gate::default());
    let f = fixture_with(
        Options {
            signals: vec![Arc::new(GatedSignal(gate.clone()))],
            ..options()
        },
        Recorder::default(),
    )
    .await;
    f.control
        .start_rollout(
            RT,
            "prod",
            StartRollout::from_json(
                &json!({"toVersion": 2, "intervalSeconds": 1, "minInvocations": 1}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let before = f.rollout().await;
    assert_eq!(
        (before["state"].as_str(), before["canaryWeight"].as_u64()),
        (Some("RUNNING"), Some(5))
    );
    // The interval has passed and the canary has traffic: a passing verdict would advance.
    let t = now_millis() + 60_000;
    traffic_at(&f, 2, 10, None, t);
    traffic_at(&f, 1, 10, None, t);
    let mut controller = Controller::new(f.control.clone());
    let tick = tokio::spawn(async move { controller.tick(t).await });
    gate.entered.notified().await;

    // The signal is being judged. Unrelated writes and an operator command go through.
    unblocked(
        "tagging a runtime",
        f.control.tag_resource(req(json!({
            "resourceArn": format!("arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/{RT}"),
            "tags": {"team": "search"},
        }))),
    )
    .await
    .unwrap();
    unblocked(
        "pausing the rollout",
        f.control.command_rollout(RT, "prod", Command::Pause),
    )
    .await
    .unwrap();

    // The verdict arrives after the pause: it is dropped, not written over it.
    gate.open();
    tick.await.unwrap();
    let r = f.rollout().await;
    assert_eq!(
        (r["state"].as_str(), r["canaryWeight"].as_u64()),
        (Some("PAUSED"), Some(5)),
        "{r}"
    );
    let actions: Vec<String> = f
        .audit()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !actions.iter().any(|a| a == "rollout.advance"),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "rollout.pause"), "{actions:?}");
}

#[tokio::test]
async fn a_slow_teardown_blocks_no_other_write() {
    let gate = Arc::new(Gate::default());
    let f = fixture_with(
        options(),
        Recorder {
            retire_gate: Some(gate.clone()),
            ..Recorder::default()
        },
    )
    .await;
    // Version 2 is in no endpoint: deleting it retires its sessions and build (the slow part).
    let control = f.control.clone();
    let delete = tokio::spawn(async move {
        control
            .delete_runtime(req(
                json!({"agentRuntimeId": RT, "agentRuntimeVersion": "2"}),
            ))
            .await
    });
    gate.entered.notified().await;
    assert_eq!(
        f.control.store().version(RT, 2).await.unwrap(),
        None,
        "the version row goes before its teardown starts"
    );
    let set = unblocked(
        "moving prod's traffic",
        f.control.set_traffic(
            RT,
            "prod",
            SetTraffic::from_json(
                &json!({"weights": [{"version": 1, "weight": 50}, {"version": 3, "weight": 50}]}),
            )
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(set.weights.len(), 2, "{set:?}");
    gate.open();
    let r = delete.await.unwrap().unwrap();
    assert_eq!(r.status, Status::Deleting);
}
