//! The store conformance suite: what every backend of [`ControlStore`] and [`MemoryStore`] must
//! do, written once against the traits (quickwit's metastore suite is the model).
//!
//! Each test is a generic function over a [`Harness`], which opens a fresh, empty database of
//! one backend through the public URL entry point ([`berth_store::open_all`]) and can open more
//! handles onto it, as more server nodes would. [`conformance!`] instantiates every test for a
//! backend; adding PostgreSQL is one `Harness` impl and one macro line.
//!
//! The tests touch the database only through the traits, so a backend passes them or fails them
//! on what the domain can observe.

// Tests compare against literal arrays of cloned fixtures; `slice::from_ref` would only obscure them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cloned_ref_to_slice_refs
)]

use berth_store::eval::{EvaluatorRow, OnlineConfigRow};
use berth_store::identity::IdentityRow;
use berth_store::memory::{
    EventQuery, EventRow, Inserted, JobQuery, JobRow, MemoryRow, MetaCond, RecordRow, RecordScope,
    TokenRow,
};
use berth_store::{
    AccessKeyRow, AssignmentRow, AuditRecord, ChainCheck, ControlStore, DrainRow, Error, HealthRow,
    Idempotency, PolicyRow, ResourcePolicyRow, RoleRow, RolloutGuard, RolloutRow, RuntimeCursor,
    Stores, Write,
};
use berth_types::Status;
use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use serde_json::json;
use std::future::Future;

/// A backend under test.
trait Harness: Sized + Send + Sync {
    /// A fresh, empty, migrated database.
    fn new() -> impl Future<Output = Self> + Send;
    /// The URL of that database.
    fn url(&self) -> String;
}

/// Another handle onto the harness's database, as another server node would open it.
async fn node<H: Harness>(h: &H) -> Stores {
    berth_store::open_all(&h.url()).await.unwrap()
}

/// SQLite on a file in a temporary directory, removed when the test ends.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Harness for Sqlite {
    async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("berth.db").display())
    }
}

/// PostgreSQL: a fresh database in this test process's throwaway cluster (`berth-pgtest`: one
/// cluster per process, started by the first test that needs it, gone when the process exits).
struct Postgres {
    url: String,
}

impl Harness for Postgres {
    async fn new() -> Self {
        let url = tokio::task::spawn_blocking(|| {
            berth_pgtest::PgCluster::shared().and_then(|c| c.create_database())
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
        Self { url }
    }
    fn url(&self) -> String {
        self.url.clone()
    }
}

/// Instantiates every test of the suite for one backend: `conformance!(module, Harness)`.
macro_rules! conformance {
    ($backend:ident, $harness:ident) => {
        conformance!(@tests $backend, $harness, [
            runtimes_insert_update_list_and_delete,
            versions_list_newest_first_and_recover_unfinished,
            endpoints_insert_put_list_and_delete,
            tags_put_and_remove,
            idempotency_tokens_are_taken_once,
            a_failing_batch_writes_nothing,
            policies_assignments_and_drains,
            rollouts_one_active_per_endpoint,
            rollout_update_is_a_conditional_write,
            health_buckets_add_up_and_prune,
            health_from_two_nodes_adds_up,
            audit_chain_links_and_pages,
            audit_from_two_nodes_stays_one_chain,
            roles_and_access_keys,
            resource_policies_put_replace_and_delete,
            memories_insert_put_list_and_purge,
            events_insert_dedupe_page_and_delete,
            sessions_actors_and_extraction_cursor,
            extraction_cursor_is_a_conditional_write,
            records_put_search_list_and_delete,
            jobs_put_list_and_filter,
            record_namespace_prefixes_match_exactly,
            keyword_search_splits_and_stems_words,
            keyword_search_skips_common_terms_in_a_large_index,
            client_tokens_taken_at_once_store_one_event,
            overlapping_event_batches_from_two_nodes_both_commit,
            jobs_are_claimed_once,
            jobs_claimed_at_once_by_several_nodes_go_to_one,
            evaluators_insert_put_list_and_delete,
            online_configs_insert_put_list_and_delete,
            datasets_examples_and_versions,
            dataset_example_changes_are_all_or_nothing,
            dataset_changes_from_two_nodes_take_turns,
            batch_evaluations_insert_update_and_recover,
            identities_insert_update_page_and_delete,
            identity_token_cache_expires_and_clears,
            secrets_put_bumps_versions_lists_by_prefix_and_delete,
            secrets_from_two_nodes_share_one_version_sequence,
            nodes_register_renew_drain_and_leave,
            a_session_has_one_live_owner,
            sessions_claimed_at_once_get_one_owner,
            a_lease_has_one_holder_until_it_lapses,
        ]);
    };
    (@tests $backend:ident, $harness:ident, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let h = <super::$harness as super::Harness>::new().await;
                    super::$test(&h).await;
                }
            )*
        }
    };
}

conformance!(sqlite, Sqlite);
conformance!(postgres, Postgres);

// ---------------------------------------------------------------------------------------------
// Fixtures

const RT: &str = "rt-0123456789";
const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/rt-0123456789";

fn runtime(id: &str, name: &str, created_at: i64) -> Runtime {
    Runtime {
        id: id.into(),
        name: name.into(),
        latest_version: 1,
        deleting: false,
        created_at,
        updated_at: created_at,
    }
}

fn version(runtime_id: &str, version: u32, status: Status) -> RuntimeVersion {
    RuntimeVersion {
        runtime_id: runtime_id.into(),
        version,
        spec: json!({"image": format!("v{version}"), "env": {"B": "2", "A": "1"}}),
        status,
        failure_reason: None,
        artifact_digest: Some(format!("sha256:{version}")),
        created_at: i64::from(version),
        updated_at: i64::from(version),
    }
}

fn endpoint(name: &str, live: u32) -> Endpoint {
    Endpoint {
        runtime_id: RT.into(),
        name: name.into(),
        id: format!("{name}-id"),
        description: Some(format!("the {name} endpoint")),
        live_version: Some(live),
        target_version: None,
        status: Status::Ready,
        failure_reason: None,
        created_at: 1,
        updated_at: 1,
    }
}

async fn with_runtime(s: &Stores) {
    s.control
        .apply(vec![
            Write::InsertRuntime(runtime(RT, "rt", 1)),
            Write::PutVersion(version(RT, 1, Status::Ready)),
            Write::PutVersion(version(RT, 2, Status::Ready)),
        ])
        .await
        .unwrap();
}

fn rollout(id: &str, state: &str, created_at: i64) -> RolloutRow {
    RolloutRow {
        id: id.into(),
        runtime_id: RT.into(),
        endpoint: "prod".into(),
        from_version: 1,
        to_version: 2,
        state: state.into(),
        step_index: 0,
        step_started_at: created_at,
        spec: json!({"steps": [10, 50, 100]}),
        analysis: None,
        reason: None,
        created_by: "BKAKTEST".into(),
        created_at,
        updated_at: created_at,
    }
}

fn health(bucket_start: i64, invocations: u64, counts: Vec<u64>) -> HealthRow {
    HealthRow {
        runtime_id: RT.into(),
        endpoint: "prod".into(),
        version: 2,
        bucket_start,
        invocations,
        errors_5xx: 1,
        errors_424: 2,
        timeouts: 3,
        new_sessions: 4,
        latency_sum_ms: 10 * invocations,
        latency_counts: counts,
    }
}

fn audit_record(i: u32, resource: &str) -> AuditRecord {
    AuditRecord {
        at: 1_000 + i64::from(i),
        actor: "BKAKTEST".into(),
        action: "UpdateAgentRuntimeEndpoint".into(),
        resource: resource.into(),
        before: json!({"b": 1, "a": [{"z": 1, "y": 2}]}),
        after: json!(null),
        request_id: Some(format!("req-{i}")),
    }
}

async fn verify_chain(s: &dyn ControlStore) -> Result<u64, String> {
    let mut check = ChainCheck::default();
    let mut after = 0;
    loop {
        let page = s.audit(None, after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in &page {
            check.next(row)?;
        }
    }
    check.finish(s.audit_head().await.unwrap())
}

fn memory(id: &str, name: &str, status: &str, created_at: i64) -> MemoryRow {
    MemoryRow {
        id: id.into(),
        name: name.into(),
        status: status.into(),
        failure_reason: None,
        event_expiry_days: 30,
        spec: json!({"description": "d", "strategies": []}),
        created_at,
        updated_at: created_at,
    }
}

fn token(op: &str, t: &str) -> TokenRow {
    TokenRow {
        operation: op.into(),
        token: t.into(),
        request_hash: "h".into(),
        response: json!({"memory": {"id": "m"}}),
        created_at: 1,
    }
}

fn event(actor: &str, session: &str, ts: i64, token: Option<&str>) -> EventRow {
    EventRow {
        memory_id: "m".into(),
        actor_id: actor.into(),
        session_id: session.into(),
        event_id: format!("{ts:019}#0"),
        event_ts: ts,
        branch_name: None,
        branch_root: None,
        payload: json!([{"conversational": {"content": {"text": format!("e{ts}")}, "role": "USER"}}]),
        metadata: Some(json!({"k": {"stringValue": format!("v{}", ts % 2)}})),
        client_token: token.map(str::to_owned),
        created_at: ts,
    }
}

fn record(id: &str, ns: &str, content: &str, created_at: i64) -> RecordRow {
    RecordRow {
        record_id: id.into(),
        memory_id: "m".into(),
        strategy_id: "facts".into(),
        namespace: ns.into(),
        content: content.into(),
        metadata: None,
        record_ts: created_at,
        expires_at: None,
        embedding: Some(vec![1.0, 0.0, 0.5]),
        created_at,
        updated_at: created_at,
    }
}

fn job(id: &str, status: &str, session: &str, created_at: i64) -> JobRow {
    JobRow {
        job_id: id.into(),
        memory_id: "m".into(),
        strategy_id: "facts".into(),
        actor_id: "a".into(),
        session_id: session.into(),
        status: status.into(),
        failure_reason: None,
        messages: json!([{"eventId": "e", "messageIndex": 0}]),
        created_at,
        updated_at: created_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Runtimes, versions, endpoints, tags, idempotency

async fn runtimes_insert_update_list_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.control;
    assert_eq!(s.runtime(RT).await.unwrap(), None);
    let a = runtime(RT, "alpha", 10);
    let b = runtime("rt-bbbbbbbbbb", "beta", 10);
    let c = runtime("rt-cccccccccc", "gamma", 5);
    for r in [&a, &b, &c] {
        s.apply(vec![Write::InsertRuntime(r.clone())])
            .await
            .unwrap();
    }
    assert_eq!(s.runtime(RT).await.unwrap(), Some(a.clone()));
    let taken = s
        .apply(vec![Write::InsertRuntime(runtime(
            "rt-dddddddddd",
            "alpha",
            11,
        ))])
        .await;
    assert!(
        matches!(taken, Err(Error::AlreadyExists("runtime name"))),
        "{taken:?}"
    );

    // Creation order, ties by id, paged by a keyset cursor.
    let first = s.list_runtimes(None, 2).await.unwrap();
    assert_eq!(ids(&first), [c.id.as_str(), a.id.as_str()]);
    let cursor = RuntimeCursor {
        created_at: first[1].created_at,
        id: first[1].id.clone(),
    };
    let rest = s.list_runtimes(Some(&cursor), 10).await.unwrap();
    assert_eq!(ids(&rest), [b.id.as_str()]);

    // Compare-and-set on latest_version.
    let bumped = Runtime {
        latest_version: 2,
        updated_at: 20,
        ..a.clone()
    };
    s.apply(vec![Write::UpdateRuntime {
        runtime: bumped.clone(),
        expect_latest: 1,
    }])
    .await
    .unwrap();
    assert_eq!(s.runtime(RT).await.unwrap(), Some(bumped.clone()));
    let stale = s
        .apply(vec![Write::UpdateRuntime {
            runtime: Runtime {
                latest_version: 3,
                ..bumped.clone()
            },
            expect_latest: 1,
        }])
        .await;
    assert!(
        matches!(stale, Err(Error::Precondition("runtime"))),
        "{stale:?}"
    );
    let missing = s
        .apply(vec![Write::UpdateRuntime {
            runtime: runtime("rt-nonexisting", "x", 1),
            expect_latest: 1,
        }])
        .await;
    assert!(
        matches!(missing, Err(Error::Precondition(_))),
        "{missing:?}"
    );

    let deleting = Runtime {
        deleting: true,
        ..bumped.clone()
    };
    s.apply(vec![Write::UpdateRuntime {
        runtime: deleting,
        expect_latest: 2,
    }])
    .await
    .unwrap();
    assert_eq!(s.deleting_runtimes().await.unwrap(), [RT]);

    // Deleting a runtime takes its versions, endpoints and the tags on it and under it.
    s.apply(vec![
        Write::PutVersion(version(RT, 1, Status::Ready)),
        Write::InsertEndpoint(endpoint("prod", 1)),
        Write::PutTags {
            arn: ARN.into(),
            tags: vec![("team".into(), "a".into())],
        },
        Write::PutTags {
            arn: format!("{ARN}/runtime-endpoint/prod"),
            tags: vec![("team".into(), "a".into())],
        },
        Write::PutTags {
            arn: format!("{ARN}0"),
            tags: vec![("other".into(), "kept".into())],
        },
    ])
    .await
    .unwrap();
    s.apply(vec![Write::DeleteRuntime {
        runtime_id: RT.into(),
        arn: ARN.into(),
    }])
    .await
    .unwrap();
    assert_eq!(s.runtime(RT).await.unwrap(), None);
    assert_eq!(s.version(RT, 1).await.unwrap(), None);
    assert_eq!(s.endpoint(RT, "prod").await.unwrap(), None);
    assert!(s.tags(ARN).await.unwrap().is_empty());
    assert!(
        s.tags(&format!("{ARN}/runtime-endpoint/prod"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.tags(&format!("{ARN}0")).await.unwrap().len(), 1);
    assert!(s.deleting_runtimes().await.unwrap().is_empty());
}

fn ids(rs: &[Runtime]) -> Vec<&str> {
    rs.iter().map(|r| r.id.as_str()).collect()
}

async fn versions_list_newest_first_and_recover_unfinished<H: Harness>(h: &H) {
    let s = node(h).await.control;
    s.apply(vec![Write::InsertRuntime(runtime(RT, "rt", 1))])
        .await
        .unwrap();
    assert_eq!(s.version(RT, 1).await.unwrap(), None);
    let v1 = version(RT, 1, Status::Ready);
    let v2 = version(RT, 2, Status::Creating);
    let v3 = version(RT, 3, Status::Updating);
    s.apply(vec![
        Write::PutVersion(v1.clone()),
        Write::PutVersion(v2.clone()),
        Write::PutVersion(v3.clone()),
    ])
    .await
    .unwrap();
    // JSON specs come back as the same value.
    assert_eq!(s.version(RT, 1).await.unwrap(), Some(v1.clone()));
    let vs = s.list_versions(RT, None, 2).await.unwrap();
    assert_eq!(vs.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2]);
    let vs = s.list_versions(RT, Some(2), 10).await.unwrap();
    assert_eq!(vs, [v1.clone()]);
    let unfinished = s.unfinished_versions().await.unwrap();
    assert_eq!(unfinished, [v2.clone(), v3.clone()]);

    // A put replaces the row.
    let failed = RuntimeVersion {
        status: Status::CreateFailed,
        failure_reason: Some("build failed".into()),
        ..v2.clone()
    };
    s.apply(vec![Write::PutVersion(failed.clone())])
        .await
        .unwrap();
    assert_eq!(s.version(RT, 2).await.unwrap(), Some(failed));
    assert_eq!(s.unfinished_versions().await.unwrap(), [v3.clone()]);

    s.apply(vec![Write::DeleteVersion {
        runtime_id: RT.into(),
        version: 3,
    }])
    .await
    .unwrap();
    assert_eq!(s.version(RT, 3).await.unwrap(), None);
    assert!(s.unfinished_versions().await.unwrap().is_empty());
    // Deleting what is not there is not an error.
    s.apply(vec![Write::DeleteVersion {
        runtime_id: RT.into(),
        version: 9,
    }])
    .await
    .unwrap();
}

async fn endpoints_insert_put_list_and_delete<H: Harness>(h: &H) {
    let s = node(h).await;
    with_runtime(&s).await;
    let s = s.control;
    assert_eq!(s.endpoint(RT, "prod").await.unwrap(), None);
    let prod = endpoint("prod", 1);
    s.apply(vec![
        Write::InsertEndpoint(prod.clone()),
        Write::InsertEndpoint(endpoint("beta", 1)),
        Write::InsertEndpoint(endpoint("canary", 2)),
    ])
    .await
    .unwrap();
    let taken = s.apply(vec![Write::InsertEndpoint(prod.clone())]).await;
    assert!(
        matches!(taken, Err(Error::AlreadyExists("endpoint name"))),
        "{taken:?}"
    );
    assert_eq!(s.endpoint(RT, "prod").await.unwrap(), Some(prod.clone()));

    let page = s.list_endpoints(RT, None, 2).await.unwrap();
    let names: Vec<_> = page.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["beta", "canary"]);
    let page = s.list_endpoints(RT, Some("canary"), 2).await.unwrap();
    assert_eq!(page, [prod.clone()]);
    assert!(
        s.list_endpoints("rt-other", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let moved = Endpoint {
        live_version: Some(2),
        target_version: Some(2),
        status: Status::Updating,
        description: None,
        updated_at: 9,
        ..prod.clone()
    };
    s.apply(vec![Write::PutEndpoint(moved.clone())])
        .await
        .unwrap();
    assert_eq!(s.endpoint(RT, "prod").await.unwrap(), Some(moved));

    // Deleting an endpoint forgets its traffic state.
    s.apply(vec![
        Write::PutPolicy(PolicyRow {
            runtime_id: RT.into(),
            endpoint: "prod".into(),
            weights: json!([]),
            rules: json!([]),
            previous_version: None,
            updated_at: 1,
        }),
        Write::InsertRollout(rollout("ro-1", "RUNNING", 1)),
    ])
    .await
    .unwrap();
    s.apply(vec![Write::DeleteEndpoint {
        runtime_id: RT.into(),
        name: "prod".into(),
    }])
    .await
    .unwrap();
    assert_eq!(s.endpoint(RT, "prod").await.unwrap(), None);
    assert_eq!(s.policy(RT, "prod").await.unwrap(), None);
    assert_eq!(s.rollout("ro-1").await.unwrap(), None);
    assert_eq!(s.list_endpoints(RT, None, 10).await.unwrap().len(), 2);
}

async fn tags_put_and_remove<H: Harness>(h: &H) {
    let s = node(h).await.control;
    assert!(s.tags(ARN).await.unwrap().is_empty());
    s.apply(vec![Write::PutTags {
        arn: ARN.into(),
        tags: vec![("b".into(), "1".into()), ("a".into(), "1".into())],
    }])
    .await
    .unwrap();
    s.apply(vec![Write::PutTags {
        arn: ARN.into(),
        tags: vec![("b".into(), "2".into())],
    }])
    .await
    .unwrap();
    assert_eq!(
        s.tags(ARN).await.unwrap(),
        [("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    s.apply(vec![Write::RemoveTags {
        arn: ARN.into(),
        keys: vec!["a".into(), "absent".into()],
    }])
    .await
    .unwrap();
    assert_eq!(s.tags(ARN).await.unwrap(), [("b".into(), "2".into())]);
}

async fn idempotency_tokens_are_taken_once<H: Harness>(h: &H) {
    let s = node(h).await.control;
    assert_eq!(
        s.idempotency("CreateAgentRuntime", "t1").await.unwrap(),
        None
    );
    let i = Idempotency {
        operation: "CreateAgentRuntime".into(),
        token: "t1".into(),
        request_hash: "abc".into(),
        response: json!({"agentRuntimeId": RT, "status": "CREATING"}),
        created_at: 7,
    };
    s.apply(vec![Write::PutIdempotency(i.clone())])
        .await
        .unwrap();
    assert_eq!(
        s.idempotency("CreateAgentRuntime", "t1").await.unwrap(),
        Some(i.clone())
    );
    let again = s
        .apply(vec![Write::PutIdempotency(Idempotency {
            request_hash: "other".into(),
            ..i.clone()
        })])
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists("client token"))),
        "{again:?}"
    );
    // The same token under another operation is another key.
    s.apply(vec![Write::PutIdempotency(Idempotency {
        operation: "CreateAgentRuntimeEndpoint".into(),
        ..i.clone()
    })])
    .await
    .unwrap();
}

async fn a_failing_batch_writes_nothing<H: Harness>(h: &H) {
    let s = node(h).await.control;
    s.apply(vec![Write::InsertRuntime(runtime(RT, "rt", 1))])
        .await
        .unwrap();
    let head = s.audit_head().await.unwrap();
    // Everything before the conflicting write in the batch is rolled back with it.
    let e = s
        .apply(vec![
            Write::InsertRuntime(runtime("rt-bbbbbbbbbb", "other", 2)),
            Write::PutTags {
                arn: ARN.into(),
                tags: vec![("k".into(), "v".into())],
            },
            Write::AppendAudit(audit_record(1, ARN)),
            Write::UpdateRuntime {
                runtime: runtime(RT, "rt", 3),
                expect_latest: 7,
            },
        ])
        .await;
    assert!(matches!(e, Err(Error::Precondition("runtime"))), "{e:?}");
    assert_eq!(s.runtime("rt-bbbbbbbbbb").await.unwrap(), None);
    assert!(s.tags(ARN).await.unwrap().is_empty());
    assert_eq!(s.audit_head().await.unwrap(), head);
    assert!(s.audit(None, 0, 10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Traffic

async fn policies_assignments_and_drains<H: Harness>(h: &H) {
    let s = node(h).await;
    with_runtime(&s).await;
    let s = s.control;
    assert_eq!(s.policy(RT, "prod").await.unwrap(), None);
    let p = PolicyRow {
        runtime_id: RT.into(),
        endpoint: "prod".into(),
        weights: json!([{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]),
        rules: json!([{"header": "x-canary", "version": 2}]),
        previous_version: Some(1),
        updated_at: 5,
    };
    s.apply(vec![Write::PutPolicy(p.clone())]).await.unwrap();
    assert_eq!(s.policy(RT, "prod").await.unwrap(), Some(p.clone()));
    let cleared = PolicyRow {
        weights: json!([]),
        rules: json!([]),
        previous_version: None,
        ..p.clone()
    };
    s.apply(vec![Write::PutPolicy(cleared.clone())])
        .await
        .unwrap();
    assert_eq!(s.policy(RT, "prod").await.unwrap(), Some(cleared));

    // The first router wins unless the write replaces.
    assert_eq!(s.assignment(RT, "s1").await.unwrap(), None);
    let a = |session: &str, version: u32, at: i64| AssignmentRow {
        runtime_id: RT.into(),
        session_id: session.into(),
        endpoint: "prod".into(),
        version,
        created_at: at,
    };
    s.apply(vec![
        Write::PutAssignment {
            assignment: a("s1", 1, 10),
            replace: false,
        },
        Write::PutAssignment {
            assignment: a("s1", 2, 11),
            replace: false,
        },
        Write::PutAssignment {
            assignment: a("s2", 2, 20),
            replace: false,
        },
        Write::PutAssignment {
            assignment: a("s3", 2, 30),
            replace: false,
        },
    ])
    .await
    .unwrap();
    assert_eq!(s.assignment(RT, "s1").await.unwrap(), Some(a("s1", 1, 10)));
    s.apply(vec![Write::PutAssignment {
        assignment: a("s1", 2, 12),
        replace: true,
    }])
    .await
    .unwrap();
    assert_eq!(s.assignment(RT, "s1").await.unwrap(), Some(a("s1", 2, 12)));
    s.apply(vec![Write::PutAssignment {
        assignment: a("s4", 1, 40),
        replace: true,
    }])
    .await
    .unwrap();
    assert_eq!(
        s.assignment_counts(RT, "prod").await.unwrap(),
        [(1, 1), (2, 3)]
    );
    assert!(s.assignment_counts(RT, "other").await.unwrap().is_empty());

    s.apply(vec![Write::ExpireAssignments { before: 20 }])
        .await
        .unwrap();
    assert_eq!(s.assignment(RT, "s1").await.unwrap(), None);
    assert_eq!(
        s.assignment_counts(RT, "prod").await.unwrap(),
        [(1, 1), (2, 2)]
    );
    s.apply(vec![Write::DeleteAssignments {
        runtime_id: RT.into(),
        endpoint: "prod".into(),
        version: 2,
    }])
    .await
    .unwrap();
    assert_eq!(s.assignment_counts(RT, "prod").await.unwrap(), [(1, 1)]);

    // Drains: per endpoint by version, expired ones across endpoints by deadline.
    let d = |endpoint: &str, version: u32, deadline: i64| DrainRow {
        runtime_id: RT.into(),
        endpoint: endpoint.into(),
        version,
        deadline,
        created_at: 1,
    };
    assert!(s.drains(RT, "prod").await.unwrap().is_empty());
    s.apply(vec![
        Write::PutDrain(d("prod", 2, 300)),
        Write::PutDrain(d("prod", 1, 100)),
        Write::PutDrain(d("beta", 1, 200)),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.drains(RT, "prod").await.unwrap(),
        [d("prod", 1, 100), d("prod", 2, 300)]
    );
    assert_eq!(
        s.expired_drains(200).await.unwrap(),
        [d("prod", 1, 100), d("beta", 1, 200)]
    );
    // A put replaces (a drain's deadline moved).
    s.apply(vec![Write::PutDrain(d("prod", 1, 500))])
        .await
        .unwrap();
    assert_eq!(s.expired_drains(200).await.unwrap(), [d("beta", 1, 200)]);
    s.apply(vec![Write::DeleteDrain {
        runtime_id: RT.into(),
        endpoint: "beta".into(),
        version: 1,
    }])
    .await
    .unwrap();
    assert!(s.expired_drains(1_000).await.unwrap().len() == 2);
    // Deleting a version forgets its assignments and drains.
    s.apply(vec![Write::DeleteVersion {
        runtime_id: RT.into(),
        version: 1,
    }])
    .await
    .unwrap();
    assert!(s.assignment_counts(RT, "prod").await.unwrap().is_empty());
    assert_eq!(s.drains(RT, "prod").await.unwrap(), [d("prod", 2, 300)]);
}

async fn rollouts_one_active_per_endpoint<H: Harness>(h: &H) {
    let s = node(h).await;
    with_runtime(&s).await;
    let s = s.control;
    assert_eq!(s.rollout("ro-1").await.unwrap(), None);
    let r1 = rollout("ro-1", "RUNNING", 1);
    s.apply(vec![Write::InsertRollout(r1.clone())])
        .await
        .unwrap();
    let second = s
        .apply(vec![Write::InsertRollout(rollout("ro-2", "RUNNING", 2))])
        .await;
    assert!(
        matches!(second, Err(Error::AlreadyExists("active rollout"))),
        "{second:?}"
    );
    let paused = RolloutRow {
        state: "PAUSED".into(),
        analysis: Some(json!({"errorRate": 0.5})),
        reason: Some("error rate above threshold".into()),
        step_index: 1,
        updated_at: 3,
        ..r1.clone()
    };
    s.apply(vec![Write::PutRollout(paused.clone())])
        .await
        .unwrap();
    assert_eq!(s.rollout("ro-1").await.unwrap(), Some(paused.clone()));
    assert_eq!(s.active_rollouts().await.unwrap(), [paused.clone()]);
    // A paused rollout is still active.
    let e = s
        .apply(vec![Write::InsertRollout(rollout("ro-2", "RUNNING", 2))])
        .await;
    assert!(matches!(e, Err(Error::AlreadyExists(_))), "{e:?}");
    let aborted = RolloutRow {
        state: "ABORTED".into(),
        ..paused.clone()
    };
    s.apply(vec![Write::PutRollout(aborted.clone())])
        .await
        .unwrap();
    assert!(s.active_rollouts().await.unwrap().is_empty());
    let r2 = rollout("ro-2", "RUNNING", 2);
    s.apply(vec![Write::InsertRollout(r2.clone())])
        .await
        .unwrap();
    assert_eq!(
        s.rollouts(RT, "prod", 10).await.unwrap(),
        [r2.clone(), aborted]
    );
    assert_eq!(s.rollouts(RT, "prod", 1).await.unwrap(), [r2.clone()]);
    assert!(s.rollouts(RT, "beta", 10).await.unwrap().is_empty());
    assert_eq!(s.active_rollouts().await.unwrap(), [r2]);
}

/// `UpdateRollout` writes only over the row the caller read: a stale writer (an analysis that
/// ran while an operator paused the rollout) fails with `Precondition` and writes nothing else
/// in its batch.
async fn rollout_update_is_a_conditional_write<H: Harness>(h: &H) {
    let s = node(h).await;
    with_runtime(&s).await;
    let s = s.control;
    let read = rollout("ro-1", "RUNNING", 1);
    s.apply(vec![Write::InsertRollout(read.clone())])
        .await
        .unwrap();
    let guard = RolloutGuard::of(&read);
    // An operator pauses (through the guard, as the domain does).
    let paused = RolloutRow {
        state: "PAUSED".into(),
        updated_at: 5,
        ..read.clone()
    };
    s.apply(vec![Write::UpdateRollout {
        rollout: paused.clone(),
        expect: guard.clone(),
    }])
    .await
    .unwrap();
    assert_eq!(s.rollout("ro-1").await.unwrap(), Some(paused.clone()));
    // The analysis that read the RUNNING row commits late: refused, with its whole batch.
    let advanced = RolloutRow {
        step_index: 1,
        step_started_at: 6,
        updated_at: 6,
        ..read.clone()
    };
    let stale = s
        .apply(vec![
            Write::PutTags {
                arn: ARN.into(),
                tags: vec![("k".into(), "v".into())],
            },
            Write::UpdateRollout {
                rollout: advanced.clone(),
                expect: guard,
            },
        ])
        .await;
    assert!(
        matches!(stale, Err(Error::Precondition("rollout"))),
        "{stale:?}"
    );
    assert_eq!(s.rollout("ro-1").await.unwrap(), Some(paused.clone()));
    assert!(s.tags(ARN).await.unwrap().is_empty());
    // Same state and time but another step is a different row too.
    let other_step = RolloutGuard {
        step_index: 3,
        ..RolloutGuard::of(&paused)
    };
    let e = s
        .apply(vec![Write::UpdateRollout {
            rollout: advanced.clone(),
            expect: other_step,
        }])
        .await;
    assert!(matches!(e, Err(Error::Precondition(_))), "{e:?}");
    // A missing rollout is a failed precondition, not a silent insert.
    let e = s
        .apply(vec![Write::UpdateRollout {
            rollout: rollout("ro-9", "RUNNING", 1),
            expect: RolloutGuard::of(&rollout("ro-9", "RUNNING", 1)),
        }])
        .await;
    assert!(matches!(e, Err(Error::Precondition(_))), "{e:?}");
    assert_eq!(s.rollout("ro-9").await.unwrap(), None);
    // The fresh guard succeeds.
    let resumed = RolloutRow {
        state: "RUNNING".into(),
        updated_at: 7,
        ..paused.clone()
    };
    s.apply(vec![Write::UpdateRollout {
        rollout: resumed.clone(),
        expect: RolloutGuard::of(&paused),
    }])
    .await
    .unwrap();
    assert_eq!(s.rollout("ro-1").await.unwrap(), Some(resumed));
}

async fn health_buckets_add_up_and_prune<H: Harness>(h: &H) {
    let s = node(h).await;
    with_runtime(&s).await;
    let s = s.control;
    s.apply(vec![
        Write::AddHealth(health(10_000, 3, vec![1, 2])),
        Write::AddHealth(health(10_000, 2, vec![0, 0, 5])),
        Write::AddHealth(health(20_000, 1, vec![])),
        Write::AddHealth(HealthRow {
            version: 1,
            ..health(20_000, 7, vec![7])
        }),
    ])
    .await
    .unwrap();
    let rows = s.health(RT, "prod", 0, 30_000).await.unwrap();
    // By version, then time.
    let keys: Vec<_> = rows.iter().map(|r| (r.version, r.bucket_start)).collect();
    assert_eq!(keys, [(1, 20_000), (2, 10_000), (2, 20_000)]);
    let sum = &rows[1];
    assert_eq!(
        (
            sum.invocations,
            sum.errors_5xx,
            sum.errors_424,
            sum.timeouts,
            sum.new_sessions,
            sum.latency_sum_ms
        ),
        (5, 2, 4, 6, 8, 50)
    );
    // Histograms add index by index; the longer one's tail is kept.
    assert_eq!(sum.latency_counts, [1, 2, 5]);
    assert!(rows[2].latency_counts.is_empty());
    // The window is [from, to).
    assert_eq!(s.health(RT, "prod", 10_001, 20_000).await.unwrap(), []);
    assert_eq!(s.health(RT, "prod", 10_000, 10_001).await.unwrap().len(), 1);
    assert!(s.health(RT, "beta", 0, 30_000).await.unwrap().is_empty());
    // Health of a runtime that no longer exists is dropped, not an error.
    s.apply(vec![Write::AddHealth(HealthRow {
        runtime_id: "rt-gone000000".into(),
        ..health(10_000, 1, vec![1])
    })])
    .await
    .unwrap();
    assert!(
        s.health("rt-gone000000", "prod", 0, 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    s.apply(vec![Write::PruneHealth { before: 20_000 }])
        .await
        .unwrap();
    let keys: Vec<_> = s
        .health(RT, "prod", 0, 30_000)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.version, r.bucket_start))
        .collect();
    assert_eq!(keys, [(1, 20_000), (2, 20_000)]);
}

/// Two nodes flushing health into the same bucket at once: every count lands (no lost update
/// from a read-then-write) and no flush fails.
async fn health_from_two_nodes_adds_up<H: Harness>(h: &H) {
    let a = node(h).await;
    with_runtime(&a).await;
    let b = node(h).await;
    const FLUSHES: u64 = 40;
    let flush = |s: Stores| async move {
        for _ in 0..FLUSHES {
            s.control
                .apply(vec![Write::AddHealth(health(10_000, 1, vec![1, 1]))])
                .await
                .unwrap();
        }
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(flush(a.clone())),
        tokio::spawn(flush(b.clone()))
    );
    ra.unwrap();
    rb.unwrap();
    let rows = a.control.health(RT, "prod", 0, 20_000).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].invocations, 2 * FLUSHES);
    assert_eq!(rows[0].errors_5xx, 2 * FLUSHES);
    assert_eq!(rows[0].latency_counts, [2 * FLUSHES, 2 * FLUSHES]);
}

// ---------------------------------------------------------------------------------------------
// Audit

async fn audit_chain_links_and_pages<H: Harness>(h: &H) {
    let s = node(h).await.control;
    assert_eq!(s.audit_head().await.unwrap(), None);
    assert_eq!(verify_chain(&*s).await, Ok(0));
    let endpoint_arn = format!("{ARN}/runtime-endpoint/prod");
    let other = format!("{ARN}0");
    for (i, r) in [ARN, endpoint_arn.as_str(), other.as_str(), ARN]
        .into_iter()
        .enumerate()
    {
        s.apply(vec![Write::AppendAudit(audit_record(i as u32, r))])
            .await
            .unwrap();
    }
    assert_eq!(verify_chain(&*s).await, Ok(4));
    let all = s.audit(None, 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Stored JSON is canonical: keys sorted at every level.
    assert_eq!(all[0].before, r#"{"a":[{"y":2,"z":1}],"b":1}"#);
    assert_eq!(all[0].after, "null");
    assert_eq!(all[0].request_id.as_deref(), Some("req-0"));
    assert_eq!(
        s.audit_head().await.unwrap(),
        Some((4, all[3].hash.clone()))
    );
    // A resource filter covers the resource and what is under it, not a shared prefix.
    let mine = s.audit(Some(ARN), 0, 10).await.unwrap();
    assert_eq!(mine.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 4]);
    let mine = s.audit(Some(ARN), 2, 1).await.unwrap();
    assert_eq!(mine.iter().map(|r| r.seq).collect::<Vec<_>>(), [4]);
    assert!(s.audit(None, 4, 10).await.unwrap().is_empty());
}

/// Two nodes appending at once still write one linear chain: no fork, no gap, no failure.
async fn audit_from_two_nodes_stays_one_chain<H: Harness>(h: &H) {
    let a = node(h).await;
    let b = node(h).await;
    const APPENDS: u32 = 25;
    let append = |s: Stores, base: u32| async move {
        for i in 0..APPENDS {
            s.control
                .apply(vec![Write::AppendAudit(audit_record(base + i, ARN))])
                .await
                .unwrap();
        }
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(append(a.clone(), 0)),
        tokio::spawn(append(b.clone(), 1_000))
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(verify_chain(&*a.control).await, Ok(u64::from(2 * APPENDS)));
}

// ---------------------------------------------------------------------------------------------
// Roles and access keys

async fn roles_and_access_keys<H: Harness>(h: &H) {
    let s = node(h).await.control;
    assert_eq!(s.role("ci").await.unwrap(), None);
    assert!(s.roles().await.unwrap().is_empty());
    let ci = RoleRow {
        name: "ci".into(),
        arn: "arn:aws:iam::000000000000:role/ci".into(),
        policies: vec![json!({"Statement": []})],
        created_at: 1,
        updated_at: 1,
    };
    let agent = RoleRow {
        name: "agent".into(),
        arn: "arn:aws:iam::000000000000:role/agent".into(),
        policies: vec![],
        created_at: 2,
        updated_at: 2,
    };
    s.apply(vec![
        Write::PutRole(ci.clone()),
        Write::PutRole(agent.clone()),
    ])
    .await
    .unwrap();
    let replaced = RoleRow {
        policies: vec![json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})],
        created_at: 5,
        updated_at: 5,
        ..ci.clone()
    };
    s.apply(vec![Write::PutRole(replaced.clone())])
        .await
        .unwrap();
    // A put replaces the policies and keeps the creation time.
    let got = s.role("ci").await.unwrap().unwrap();
    assert_eq!(got.policies, replaced.policies);
    assert_eq!((got.created_at, got.updated_at), (1, 5));
    let names: Vec<_> = s
        .roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["agent", "ci"]);
    s.apply(vec![Write::DeleteRole { name: "ci".into() }])
        .await
        .unwrap();
    assert_eq!(s.role("ci").await.unwrap(), None);
    s.apply(vec![Write::DeleteRole {
        name: "never-was".into(),
    }])
    .await
    .unwrap();

    assert_eq!(s.access_key("BKAKONE").await.unwrap(), None);
    let key = |id: &str, at: i64| AccessKeyRow {
        id: id.into(),
        name: format!("{id} pipeline"),
        policy: json!({"Statement": [{"Effect": "Allow", "Action": "bedrock-agentcore:*", "Resource": "*"}]}),
        active: true,
        created_at: at,
        revoked_at: None,
    };
    s.apply(vec![
        Write::InsertAccessKey(key("BKAKTWO", 2)),
        Write::InsertAccessKey(key("BKAKONE", 1)),
    ])
    .await
    .unwrap();
    let dup = s
        .apply(vec![Write::InsertAccessKey(key("BKAKONE", 3))])
        .await;
    assert!(
        matches!(dup, Err(Error::AlreadyExists("access key"))),
        "{dup:?}"
    );
    assert_eq!(
        s.access_key("BKAKONE").await.unwrap(),
        Some(key("BKAKONE", 1))
    );
    s.apply(vec![Write::RevokeAccessKey {
        id: "BKAKONE".into(),
        at: 9,
    }])
    .await
    .unwrap();
    // Revoking again keeps the first revocation time.
    s.apply(vec![Write::RevokeAccessKey {
        id: "BKAKONE".into(),
        at: 10,
    }])
    .await
    .unwrap();
    let revoked = AccessKeyRow {
        active: false,
        revoked_at: Some(9),
        ..key("BKAKONE", 1)
    };
    assert_eq!(s.access_keys().await.unwrap(), [revoked, key("BKAKTWO", 2)]);
}

async fn resource_policies_put_replace_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.control;
    let rt = "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/a_b-0123456789";
    let ep = format!("{rt}/runtime-endpoint/prod");
    // A runtime whose id matches `rt`'s `LIKE` pattern if `_` were not escaped.
    let lookalike = "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/aXb-0123456789";
    let lookalike_ep = format!("{lookalike}/runtime-endpoint/prod");
    let row = |arn: &str, policy: &str, at| ResourcePolicyRow {
        resource_arn: arn.into(),
        policy: policy.into(),
        updated_at: at,
    };
    assert_eq!(s.resource_policy(rt).await.unwrap(), None);
    s.apply(vec![
        Write::PutResourcePolicy(row(rt, "{\"a\":1}", 1)),
        Write::PutResourcePolicy(row(&ep, "{\"e\":1}", 1)),
        Write::PutResourcePolicy(row(&lookalike_ep, "{\"l\":1}", 1)),
    ])
    .await
    .unwrap();
    // A put replaces the document, kept as written.
    s.apply(vec![Write::PutResourcePolicy(row(rt, "{ \"a\": 2 }", 2))])
        .await
        .unwrap();
    assert_eq!(
        s.resource_policy(rt).await.unwrap(),
        Some(row(rt, "{ \"a\": 2 }", 2))
    );
    // One ARN alone.
    s.apply(vec![Write::DeleteResourcePolicy {
        arn: ep.clone(),
        children: false,
    }])
    .await
    .unwrap();
    assert_eq!(s.resource_policy(&ep).await.unwrap(), None);
    assert!(s.resource_policy(rt).await.unwrap().is_some());
    // An ARN and everything under it, and nothing of another runtime.
    s.apply(vec![Write::PutResourcePolicy(row(&ep, "{}", 3))])
        .await
        .unwrap();
    s.apply(vec![Write::DeleteResourcePolicy {
        arn: rt.into(),
        children: true,
    }])
    .await
    .unwrap();
    assert_eq!(s.resource_policy(rt).await.unwrap(), None);
    assert_eq!(s.resource_policy(&ep).await.unwrap(), None);
    assert!(s.resource_policy(&lookalike_ep).await.unwrap().is_some());
    // Deleting a runtime deletes the policies of it and its endpoints.
    s.apply(vec![
        Write::PutResourcePolicy(row(rt, "{}", 4)),
        Write::PutResourcePolicy(row(&ep, "{}", 4)),
    ])
    .await
    .unwrap();
    s.apply(vec![Write::DeleteRuntime {
        runtime_id: "a_b-0123456789".into(),
        arn: rt.into(),
    }])
    .await
    .unwrap();
    assert_eq!(s.resource_policy(rt).await.unwrap(), None);
    assert_eq!(s.resource_policy(&ep).await.unwrap(), None);
    assert!(s.resource_policy(&lookalike_ep).await.unwrap().is_some());
    // Deleting what is not there is a no-op.
    s.apply(vec![Write::DeleteResourcePolicy {
        arn: rt.into(),
        children: false,
    }])
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Memory

async fn memories_insert_put_list_and_purge<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    assert_eq!(s.memory("m").await.unwrap(), None);
    assert_eq!(s.token("CreateMemory", "t1").await.unwrap(), None);
    let m = memory("m", "first", "CREATING", 1);
    s.insert_memory(&m, Some(&token("CreateMemory", "t1")))
        .await
        .unwrap();
    assert_eq!(s.memory("m").await.unwrap(), Some(m.clone()));
    assert_eq!(
        s.token("CreateMemory", "t1").await.unwrap(),
        Some(token("CreateMemory", "t1"))
    );
    let taken = s
        .insert_memory(&memory("m2", "first", "CREATING", 2), None)
        .await;
    assert!(
        matches!(taken, Err(Error::AlreadyExists("memory name"))),
        "{taken:?}"
    );
    // A token is taken once; the memory written with it is rolled back.
    let reused = s
        .insert_memory(
            &memory("m3", "third", "CREATING", 3),
            Some(&token("CreateMemory", "t1")),
        )
        .await;
    assert!(
        matches!(reused, Err(Error::AlreadyExists("client token"))),
        "{reused:?}"
    );
    assert_eq!(s.memory("m3").await.unwrap(), None);

    let active = MemoryRow {
        status: "ACTIVE".into(),
        updated_at: 4,
        ..m.clone()
    };
    s.put_memory(&active, Some(&token("UpdateMemory", "t2")))
        .await
        .unwrap();
    assert_eq!(s.memory("m").await.unwrap(), Some(active.clone()));
    assert!(s.token("UpdateMemory", "t2").await.unwrap().is_some());
    s.put_memory(&memory("m2", "second", "CREATING", 1), None)
        .await
        .unwrap();
    let page = s.list_memories(None, 1).await.unwrap();
    assert_eq!(page[0].id, "m");
    let page = s
        .list_memories(Some((page[0].created_at, page[0].id.clone())), 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m2"]
    );
    assert_eq!(s.memories_in_status("ACTIVE").await.unwrap(), [active]);
    assert!(s.memories_in_status("FAILED").await.unwrap().is_empty());

    // Purging takes the memory with its events, sessions, records and jobs.
    s.insert_events(&[event("a", "s", 5, None)]).await.unwrap();
    s.put_records(&[record("mem-1", "/facts/a", "likes tea", 1)])
        .await
        .unwrap();
    s.put_jobs(&[job("job-1", "PENDING", "s", 1)])
        .await
        .unwrap();
    s.purge_memory("m").await.unwrap();
    assert_eq!(s.memory("m").await.unwrap(), None);
    assert_eq!(
        s.event("m", "a", "s", &event("a", "s", 5, None).event_id)
            .await
            .unwrap(),
        None
    );
    assert!(
        s.list_sessions("m", "a", 0, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.record("m", "mem-1").await.unwrap(), None);
    assert_eq!(s.job("m", "job-1").await.unwrap(), None);
    assert!(s.memory("m2").await.unwrap().is_some());
}

async fn events_insert_dedupe_page_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    let evs: Vec<_> = (1..=5)
        .map(|i| event("a", "s", i, Some(&format!("t{i}"))))
        .collect();
    let out = s.insert_events(&evs).await.unwrap();
    assert!(out.iter().all(|r| *r == Inserted::New), "{out:?}");
    assert_eq!(
        s.event("m", "a", "s", &evs[0].event_id).await.unwrap(),
        Some(evs[0].clone())
    );
    assert_eq!(
        s.event("m", "a", "other", &evs[0].event_id).await.unwrap(),
        None
    );
    // A reused client token returns the stored event and stores nothing.
    let dup = event("a", "s", 9, Some("t3"));
    match &s.insert_events(&[dup.clone()]).await.unwrap()[0] {
        Inserted::Duplicate(e) => assert_eq!(**e, evs[2]),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(s.event("m", "a", "s", &dup.event_id).await.unwrap(), None);

    // Newest first, keyset paged, expiry and metadata filters.
    let mut q = EventQuery {
        memory_id: "m".into(),
        actor_id: "a".into(),
        session_id: "s".into(),
        min_ts: 2,
        limit: 2,
        ..Default::default()
    };
    let page = s.list_events(&q).await.unwrap();
    assert_eq!(page.iter().map(|e| e.event_ts).collect::<Vec<_>>(), [5, 4]);
    q.before = Some(page[1].event_id.clone());
    let page = s.list_events(&q).await.unwrap();
    assert_eq!(page.iter().map(|e| e.event_ts).collect::<Vec<_>>(), [3, 2]);
    q.before = None;
    q.limit = 10;
    q.metadata = vec![MetaCond::Equals("k".into(), "v1".into())];
    assert_eq!(
        s.list_events(&q)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event_ts)
            .collect::<Vec<_>>(),
        [5, 3]
    );
    q.metadata = vec![MetaCond::Exists("k".into())];
    assert_eq!(s.list_events(&q).await.unwrap().len(), 4);
    q.metadata = vec![MetaCond::NotExists("k".into())];
    assert!(s.list_events(&q).await.unwrap().is_empty());

    // Branches: the branch's own events, plus the main branch up to its root when asked.
    let mut b = event("a", "s", 6, None);
    b.branch_name = Some("alt".into());
    b.branch_root = Some(evs[1].event_id.clone());
    s.insert_events(&[b.clone()]).await.unwrap();
    q.metadata = vec![];
    q.min_ts = 0;
    q.branch = Some("alt".into());
    assert_eq!(s.list_events(&q).await.unwrap(), [b.clone()]);
    q.parent_upto = Some(evs[1].event_id.clone());
    assert_eq!(
        s.list_events(&q)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event_ts)
            .collect::<Vec<_>>(),
        [6, 2, 1]
    );

    // Oldest first after a cursor, for extraction.
    let after = s
        .events_after("m", "a", "s", Some(&evs[2].event_id), 0, 2)
        .await
        .unwrap();
    assert_eq!(after.iter().map(|e| e.event_ts).collect::<Vec<_>>(), [4, 5]);
    let after = s.events_after("m", "a", "s", None, 2, 1).await.unwrap();
    assert_eq!(after.iter().map(|e| e.event_ts).collect::<Vec<_>>(), [2]);

    assert!(
        s.delete_event("m", "a", "s", &evs[0].event_id)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_event("m", "a", "s", &evs[0].event_id)
            .await
            .unwrap()
    );
    assert_eq!(
        s.event("m", "a", "s", &evs[0].event_id).await.unwrap(),
        None
    );

    // Expiry deletes old events, at most `limit` per call.
    assert_eq!(s.purge_expired_events("m", 4, 1).await.unwrap(), 1);
    assert_eq!(s.purge_expired_events("m", 4, 100).await.unwrap(), 1);
    assert_eq!(s.purge_expired_events("m", 4, 100).await.unwrap(), 0);
}

async fn sessions_actors_and_extraction_cursor<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    s.insert_events(&[
        event("a", "s1", 10, None),
        event("a", "s1", 12, None),
        event("a", "s2", 20, None),
        event("b", "s3", 5, None),
    ])
    .await
    .unwrap();
    // Most recently active first, paged by (last_event_ts, session_id).
    let sessions = s.list_sessions("m", "a", 0, None, 1).await.unwrap();
    assert_eq!(sessions[0].session_id, "s2");
    assert_eq!(sessions[0].last_event_ts, 20);
    let c = (sessions[0].last_event_ts, sessions[0].session_id.clone());
    let rest = s.list_sessions("m", "a", 0, Some(c), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].session_id.as_str(), rest[0].last_event_ts),
        ("s1", 12)
    );
    assert_eq!(rest[0].extracted_upto, None);
    assert_eq!(
        s.list_sessions("m", "a", 15, None, 10).await.unwrap().len(),
        1
    );
    assert_eq!(s.list_actors("m", 0, None, 10).await.unwrap(), ["a", "b"]);
    assert_eq!(s.list_actors("m", 0, Some("a"), 10).await.unwrap(), ["b"]);
    assert_eq!(s.list_actors("m", 6, None, 10).await.unwrap(), ["a"]);

    // Sessions with no event after `quiet_before` are ready to extract.
    let ready = s.sessions_to_extract("m", 15, 10).await.unwrap();
    let mut names: Vec<_> = ready.iter().map(|r| r.session_id.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["s1", "s3"]);
    let upto = event("a", "s1", 12, None).event_id;
    s.put_jobs_and_cursor(
        "m",
        "a",
        "s1",
        None,
        &upto,
        &[job("job-1", "PENDING", "s1", 1)],
    )
    .await
    .unwrap();
    assert!(s.job("m", "job-1").await.unwrap().is_some());
    let ready = s.sessions_to_extract("m", 15, 10).await.unwrap();
    assert_eq!(
        ready
            .iter()
            .map(|r| r.session_id.as_str())
            .collect::<Vec<_>>(),
        ["s3"]
    );
    let s1 = s.list_sessions("m", "a", 0, None, 10).await.unwrap();
    assert_eq!(s1[1].extracted_upto.as_deref(), Some(upto.as_str()));
    // A new event makes the session ready again once quiet.
    s.insert_events(&[event("a", "s1", 14, None)])
        .await
        .unwrap();
    let ready = s.sessions_to_extract("m", 15, 10).await.unwrap();
    assert!(ready.iter().any(|r| r.session_id == "s1"));
    // Purging expired events takes the sessions left empty.
    s.purge_expired_events("m", 8, 100).await.unwrap();
    assert_eq!(s.list_actors("m", 0, None, 10).await.unwrap(), ["a"]);
}

/// Two extractors that read the same cursor: only the first records jobs; the second fails
/// with a precondition and writes nothing.
async fn extraction_cursor_is_a_conditional_write<H: Harness>(h: &H) {
    let a = node(h).await.memory;
    let b = node(h).await.memory;
    a.insert_events(&[event("a", "s", 1, None), event("a", "s", 2, None)])
        .await
        .unwrap();
    let read = a.sessions_to_extract("m", 100, 10).await.unwrap();
    let cursor = read[0].extracted_upto.clone();
    let upto = event("a", "s", 2, None).event_id;
    a.put_jobs_and_cursor(
        "m",
        "a",
        "s",
        cursor.as_deref(),
        &upto,
        &[job("job-a", "PENDING", "s", 1)],
    )
    .await
    .unwrap();
    let late = b
        .put_jobs_and_cursor(
            "m",
            "a",
            "s",
            cursor.as_deref(),
            &upto,
            &[job("job-b", "PENDING", "s", 1)],
        )
        .await;
    assert!(
        matches!(late, Err(Error::Precondition("extraction cursor"))),
        "{late:?}"
    );
    assert_eq!(b.job("m", "job-b").await.unwrap(), None);
    // From the cursor it now holds, the next plan goes through.
    a.insert_events(&[event("a", "s", 3, None)]).await.unwrap();
    let next = event("a", "s", 3, None).event_id;
    b.put_jobs_and_cursor("m", "a", "s", Some(&upto), &next, &[])
        .await
        .unwrap();
    // A session that does not exist is a precondition failure too, not a silent success.
    let gone = a
        .put_jobs_and_cursor(
            "m",
            "a",
            "nope",
            None,
            &next,
            &[job("job-c", "PENDING", "nope", 1)],
        )
        .await;
    assert!(matches!(gone, Err(Error::Precondition(_))), "{gone:?}");
    assert_eq!(a.job("m", "job-c").await.unwrap(), None);
}

async fn records_put_search_list_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    let r1 = record("mem-1", "/facts/alice", "alice likes green tea", 1);
    let r2 = record("mem-2", "/facts/alice", "alice owns a bicycle", 2);
    let mut r3 = record("mem-3", "/facts/bob", "bob likes coffee", 3);
    r3.embedding = None;
    r3.metadata = Some(json!({"source": {"stringValue": "chat"}}));
    s.put_records(&[r1.clone(), r2.clone(), r3.clone()])
        .await
        .unwrap();
    assert_eq!(s.record("m", "mem-1").await.unwrap(), Some(r1.clone()));
    assert_eq!(s.record("m", "mem-3").await.unwrap(), Some(r3.clone()));
    assert_eq!(s.record("other", "mem-1").await.unwrap(), None);
    // By id without embeddings; missing ids are left out.
    let got = s
        .records("m", &["mem-2".into(), "mem-9".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content, r2.content);
    assert_eq!(got[0].embedding, None);

    let scope = |ns: Option<&str>, prefix: Option<&str>| RecordScope {
        memory_id: "m".into(),
        namespace: ns.map(str::to_owned),
        namespace_prefix: prefix.map(str::to_owned),
        strategy_id: None,
        now: 0,
    };
    let page = s.list_records(&scope(None, None), None, 2).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|r| r.record_id.as_str())
            .collect::<Vec<_>>(),
        ["mem-3", "mem-2"]
    );
    let c = (page[1].created_at, page[1].record_id.clone());
    let rest = s
        .list_records(&scope(None, None), Some(c), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter()
            .map(|r| r.record_id.as_str())
            .collect::<Vec<_>>(),
        ["mem-1"]
    );
    assert_eq!(
        s.list_records(&scope(Some("/facts/bob"), None), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.list_records(&scope(None, Some("/facts/")), None, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        s.list_records(&scope(None, Some("/facts/c")), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Keyword search scores matching records, best first.
    let hits = s
        .search_keywords(&scope(None, None), &["likes".into(), "tea".into()], 10)
        .await
        .unwrap();
    let ids: Vec<_> = hits.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids[0], "mem-1");
    assert!(
        ids.contains(&"mem-3") && !ids.contains(&"mem-2"),
        "{hits:?}"
    );
    assert!(hits[0].1 >= hits[1].1);
    let hits = s
        .search_keywords(&scope(Some("/facts/bob"), None), &["likes".into()], 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!(
        s.search_keywords(&scope(None, None), &["zebra".into()], 10)
            .await
            .unwrap()
            .is_empty()
    );

    let mut embedded: Vec<_> = s.embeddings("m").await.unwrap();
    embedded.sort_by(|a, b| a.record_id.cmp(&b.record_id));
    assert_eq!(
        embedded
            .iter()
            .map(|e| e.record_id.as_str())
            .collect::<Vec<_>>(),
        ["mem-1", "mem-2"]
    );
    assert_eq!(embedded[0].embedding, [1.0, 0.0, 0.5]);
    assert_eq!(embedded[0].namespace, "/facts/alice");

    // A put replaces by record id, and the keyword index follows.
    let r1b = RecordRow {
        content: "alice prefers black coffee".into(),
        updated_at: 9,
        ..r1.clone()
    };
    s.put_records(&[r1b.clone()]).await.unwrap();
    assert_eq!(s.record("m", "mem-1").await.unwrap(), Some(r1b));
    let hits = s
        .search_keywords(&scope(None, None), &["tea".into()], 10)
        .await
        .unwrap();
    assert!(hits.is_empty(), "{hits:?}");

    let gone = s
        .delete_records("m", &["mem-2".into(), "mem-9".into()])
        .await
        .unwrap();
    assert_eq!(gone, ["mem-2"]);
    assert_eq!(s.record("m", "mem-2").await.unwrap(), None);

    // Expired records are purged (at most `limit`) and skipped by scopes meanwhile.
    let mut expiring = record("mem-4", "/facts/alice", "short lived", 4);
    expiring.expires_at = Some(50);
    s.put_records(&[expiring]).await.unwrap();
    let mut later = scope(None, None);
    later.now = 60;
    assert!(
        !s.list_records(&later, None, 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.record_id == "mem-4")
    );
    assert!(s.purge_expired_records(49, 10).await.unwrap().is_empty());
    assert_eq!(
        s.purge_expired_records(50, 10).await.unwrap(),
        [("m".to_owned(), "mem-4".to_owned())]
    );
    assert_eq!(s.record("m", "mem-4").await.unwrap(), None);
}

async fn jobs_put_list_and_filter<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    assert_eq!(s.job("m", "job-1").await.unwrap(), None);
    let j1 = job("job-1", "PENDING", "s1", 1);
    let j2 = job("job-2", "PENDING", "s2", 2);
    let j3 = job("job-3", "SUCCEEDED", "s1", 3);
    s.put_jobs(&[j1.clone(), j2.clone(), j3.clone()])
        .await
        .unwrap();
    assert_eq!(s.job("m", "job-2").await.unwrap(), Some(j2.clone()));
    let q = |status: Option<&str>, session: Option<&str>| JobQuery {
        memory_id: "m".into(),
        status: status.map(str::to_owned),
        strategy_id: None,
        actor_id: None,
        session_id: session.map(str::to_owned),
        after: None,
        limit: 10,
    };
    assert_eq!(
        s.list_jobs(&q(None, None)).await.unwrap(),
        [j1.clone(), j2.clone(), j3.clone()]
    );
    assert_eq!(
        s.list_jobs(&q(Some("PENDING"), None)).await.unwrap(),
        [j1.clone(), j2.clone()]
    );
    assert_eq!(
        s.list_jobs(&q(None, Some("s1"))).await.unwrap(),
        [j1.clone(), j3.clone()]
    );
    let mut paged = q(None, None);
    paged.after = Some((j1.created_at, j1.job_id.clone()));
    paged.limit = 1;
    assert_eq!(s.list_jobs(&paged).await.unwrap(), [j2.clone()]);
    assert_eq!(s.jobs_in_status("PENDING", 1).await.unwrap(), [j1.clone()]);

    // A put replaces by job id.
    let failed = JobRow {
        status: "FAILED".into(),
        failure_reason: Some("provider unreachable".into()),
        updated_at: 9,
        ..j1.clone()
    };
    s.put_jobs(&[failed.clone()]).await.unwrap();
    assert_eq!(s.job("m", "job-1").await.unwrap(), Some(failed.clone()));
    assert_eq!(s.jobs_in_status("PENDING", 10).await.unwrap(), [j2]);
    assert_eq!(s.jobs_in_status("FAILED", 10).await.unwrap(), [failed]);
}

/// Namespace prefixes compare case-sensitively, and `_` / `%` in them are literal.
async fn record_namespace_prefixes_match_exactly<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    s.put_records(&[
        record("lower", "/users/alice/", "record lower", 1),
        record("upper", "/users/ALICE/", "record upper", 2),
        record("wild", "/users/a_x%/", "record wild", 3),
        record("other", "/users/abx9/", "record other", 4),
    ])
    .await
    .unwrap();
    let ids = |prefix: &str| {
        let scope = RecordScope {
            memory_id: "m".into(),
            namespace_prefix: Some(prefix.into()),
            ..Default::default()
        };
        let s = &s;
        async move {
            let mut v: Vec<String> = s
                .list_records(&scope, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.record_id)
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(ids("/users/alice/").await, ["lower"]);
    assert_eq!(ids("/users/ALICE/").await, ["upper"]);
    assert_eq!(ids("/users/a_x%").await, ["wild"]);
    assert_eq!(ids("/users/").await.len(), 4);
}

/// In a large index (pruning starts at 1,000 records) a term most records hold is not searched;
/// a rare one still decides.
async fn keyword_search_skips_common_terms_in_a_large_index<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    let rows: Vec<RecordRow> = (0..1200)
        .map(|i| {
            let text = if i == 7 {
                "the user keeps a zebra".to_owned()
            } else {
                format!("the user owns item {i}")
            };
            let mut r = record(&format!("r{i}"), "/a/", &text, 1);
            r.embedding = None;
            r
        })
        .collect();
    s.put_records(&rows).await.unwrap();
    let scope = RecordScope {
        memory_id: "m".into(),
        namespace_prefix: Some("/".into()),
        ..Default::default()
    };
    let terms = |t: &[&str]| t.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let hits = s
        .search_keywords(&scope, &terms(&["user", "zebra"]), 10)
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
        ["r7"]
    );
    assert!(
        s.search_keywords(&scope, &terms(&["the", "user"]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.search_keywords(&scope, &terms(&["item", "1000"]), 10)
            .await
            .unwrap()[0]
            .0,
        "r1000"
    );
}

/// Words are split at punctuation and matched by stem; a rarer term outranks a common one.
async fn keyword_search_splits_and_stems_words<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    s.put_records(&[
        record("mail", "/a/", "Alice's email is alice@example.com", 1),
        record("run", "/a/", "Bob runs marathons", 2),
        record("tea1", "/a/", "Carol drinks tea", 3),
        record("tea2", "/a/", "Dave drinks tea daily", 4),
        record("tea3", "/a/", "Erin drinks green tea", 5),
        record("jazz", "/a/", "Frank drinks coffee and likes jazz", 6),
    ])
    .await
    .unwrap();
    let scope = RecordScope {
        memory_id: "m".into(),
        ..Default::default()
    };
    let ids = |terms: &[&str]| {
        let terms: Vec<String> = terms.iter().map(|t| (*t).to_owned()).collect();
        let (s, scope) = (&s, &scope);
        async move {
            s.search_keywords(scope, &terms, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(&["example"]).await, ["mail"]);
    assert_eq!(ids(&["alice"]).await, ["mail"]);
    assert_eq!(ids(&["running"]).await, ["run"]);
    assert_eq!(ids(&["run"]).await, ["run"]);
    // "jazz" is in one record, "drinks" in four: the jazz record ranks first.
    assert_eq!(ids(&["drinks", "jazz"]).await[0], "jazz");
    assert_eq!(ids(&["drinks", "jazz"]).await.len(), 4);
}

/// Two nodes committing the same client token at once: one stores it, the other is told.
async fn client_tokens_taken_at_once_store_one_event<H: Harness>(h: &H) {
    let a = node(h).await.memory;
    let b = node(h).await.memory;
    for round in 0..20 {
        let tok = format!("tok{round}");
        let ea = event("a", "s", 100 + round, Some(&tok));
        let mut eb = event("a", "s", 1000 + round, Some(&tok));
        eb.actor_id = "b".into();
        let (a2, b2) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { a2.insert_events(&[ea]).await });
        let tb = tokio::spawn(async move { b2.insert_events(&[eb]).await });
        let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
        let new = [&ra[0], &rb[0]]
            .iter()
            .filter(|r| ***r == Inserted::New)
            .count();
        assert_eq!(new, 1, "{ra:?} {rb:?}");
    }
}

/// Two nodes group-committing batches over the same sessions, in opposite orders, both commit.
async fn overlapping_event_batches_from_two_nodes_both_commit<H: Harness>(h: &H) {
    let a = node(h).await.memory;
    let b = node(h).await.memory;
    for round in 0..20i64 {
        let batch = |first: &str, second: &str, ts: i64, node: &str| {
            let mut x = event("a", first, ts, Some(&format!("{node}{round}x")));
            let mut y = event("a", second, ts + 1, Some(&format!("{node}{round}y")));
            x.event_id = format!("{:019}#{node}", ts);
            y.event_id = format!("{:019}#{node}", ts + 1);
            vec![x, y]
        };
        let ba = batch("s1", "s2", round * 10, "a");
        let bb = batch("s2", "s1", round * 10, "b");
        let (a2, b2) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { a2.insert_events(&ba).await });
        let tb = tokio::spawn(async move { b2.insert_events(&bb).await });
        for r in [ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap()] {
            assert_eq!(r, [Inserted::New, Inserted::New]);
        }
    }
    let sessions = a.list_sessions("m", "a", 0, None, 10).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions.iter().all(|s| s.last_event_ts == 191),
        "{sessions:?}"
    );
}

/// Claiming takes pending jobs oldest first and lapsed running ones, marking them running.
async fn jobs_are_claimed_once<H: Harness>(h: &H) {
    let s = node(h).await.memory;
    let mut lapsed = job("job-4", "RUNNING", "s", 4);
    lapsed.updated_at = 5;
    let mut running = job("job-5", "RUNNING", "s", 5);
    running.updated_at = 50;
    s.put_jobs(&[
        job("job-2", "PENDING", "s", 2),
        job("job-1", "PENDING", "s", 1),
        job("job-3", "SUCCEEDED", "s", 3),
        lapsed,
        running,
    ])
    .await
    .unwrap();
    let ids = |jobs: &[JobRow]| jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
    let first = s.claim_jobs(100, 10, 2).await.unwrap();
    assert_eq!(ids(&first), ["job-1", "job-2"]);
    assert!(
        first
            .iter()
            .all(|j| j.status == "RUNNING" && j.updated_at == 100)
    );
    assert_eq!(
        s.job("m", "job-1").await.unwrap().unwrap().status,
        "RUNNING"
    );
    assert_eq!(ids(&s.claim_jobs(100, 10, 10).await.unwrap()), ["job-4"]);
    assert!(s.claim_jobs(100, 10, 10).await.unwrap().is_empty());
    // Once its claim lapses, a job is claimed again (its runner died).
    assert_eq!(
        ids(&s.claim_jobs(200, 101, 10).await.unwrap()),
        ["job-1", "job-2", "job-4", "job-5"]
    );
}

/// Several nodes claiming at once: every job goes to exactly one of them.
async fn jobs_claimed_at_once_by_several_nodes_go_to_one<H: Harness>(h: &H) {
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(node(h).await.memory);
    }
    let jobs: Vec<JobRow> = (0..30)
        .map(|i| job(&format!("job-{i:02}"), "PENDING", "s", i))
        .collect();
    nodes[0].put_jobs(&jobs).await.unwrap();
    let mut claimed: Vec<String> = Vec::new();
    loop {
        let mut set = tokio::task::JoinSet::new();
        for n in &nodes {
            let n = n.clone();
            set.spawn(async move { n.claim_jobs(100, 10, 4).await.unwrap() });
        }
        let round: Vec<String> = set
            .join_all()
            .await
            .into_iter()
            .flatten()
            .map(|j| j.job_id)
            .collect();
        if round.is_empty() {
            break;
        }
        claimed.extend(round);
    }
    claimed.sort();
    let all: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    assert_eq!(claimed, all, "each job claimed exactly once");
}

// ---------------------------------------------------------------------------------------------
// Evaluations

fn evaluator(id: &str, name: &str, status: &str, created_at: i64) -> EvaluatorRow {
    EvaluatorRow {
        id: id.into(),
        name: name.into(),
        level: "TRACE".into(),
        status: status.into(),
        spec: json!({"evaluatorConfig": {"llmAsAJudge": {"instructions": "judge"}}}),
        created_at,
        updated_at: created_at,
    }
}

fn online_config(id: &str, name: &str, status: &str, created_at: i64) -> OnlineConfigRow {
    OnlineConfigRow {
        id: id.into(),
        name: name.into(),
        status: status.into(),
        execution_status: "ENABLED".into(),
        failure_reason: None,
        spec: json!({"rule": {"samplingConfig": {"samplingPercentage": 10.0}}}),
        created_at,
        updated_at: created_at,
    }
}

async fn evaluators_insert_put_list_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.eval;
    assert_eq!(s.evaluator("e1").await.unwrap(), None);
    let e = evaluator("e1", "first", "CREATING", 1);
    s.insert_evaluator(&e, Some(&token("CreateEvaluator", "t1")))
        .await
        .unwrap();
    assert_eq!(s.evaluator("e1").await.unwrap(), Some(e.clone()));
    assert_eq!(
        s.eval_token("CreateEvaluator", "t1").await.unwrap(),
        Some(token("CreateEvaluator", "t1"))
    );
    // Tokens are per operation, and kept apart from memory's.
    assert_eq!(s.eval_token("UpdateEvaluator", "t1").await.unwrap(), None);
    let taken = s
        .insert_evaluator(&evaluator("e2", "first", "CREATING", 2), None)
        .await;
    assert!(
        matches!(taken, Err(Error::AlreadyExists("evaluator name"))),
        "{taken:?}"
    );
    // A token is taken once; the evaluator written with it is rolled back.
    let reused = s
        .insert_evaluator(
            &evaluator("e3", "third", "CREATING", 3),
            Some(&token("CreateEvaluator", "t1")),
        )
        .await;
    assert!(
        matches!(reused, Err(Error::AlreadyExists("client token"))),
        "{reused:?}"
    );
    assert_eq!(s.evaluator("e3").await.unwrap(), None);

    let active = EvaluatorRow {
        status: "ACTIVE".into(),
        updated_at: 4,
        ..e.clone()
    };
    s.put_evaluator(&active, None).await.unwrap();
    assert_eq!(s.evaluator("e1").await.unwrap(), Some(active.clone()));
    s.insert_evaluator(&evaluator("e2", "second", "CREATING", 1), None)
        .await
        .unwrap();
    // Creation order, ties broken by id.
    let page = s.list_evaluators(None, 1).await.unwrap();
    assert_eq!(page[0].id, "e1");
    let rest = s
        .list_evaluators(Some((page[0].created_at, page[0].id.clone())), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2"]
    );
    assert_eq!(s.evaluators_in_status("ACTIVE").await.unwrap(), [active]);
    assert!(s.delete_evaluator("e1").await.unwrap());
    assert!(!s.delete_evaluator("e1").await.unwrap());
    assert_eq!(s.evaluator("e1").await.unwrap(), None);
    // The name is free again.
    s.insert_evaluator(&evaluator("e4", "first", "CREATING", 5), None)
        .await
        .unwrap();
}

async fn online_configs_insert_put_list_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.eval;
    let c = online_config("c1", "first", "CREATING", 1);
    s.insert_online_config(&c, Some(&token("CreateOnlineEvaluationConfig", "t")))
        .await
        .unwrap();
    assert_eq!(s.online_config("c1").await.unwrap(), Some(c.clone()));
    let taken = s
        .insert_online_config(&online_config("c2", "first", "CREATING", 2), None)
        .await;
    assert!(
        matches!(
            taken,
            Err(Error::AlreadyExists("online evaluation config name"))
        ),
        "{taken:?}"
    );
    let disabled = OnlineConfigRow {
        status: "ACTIVE".into(),
        execution_status: "DISABLED".into(),
        failure_reason: Some("why".into()),
        updated_at: 3,
        ..c.clone()
    };
    s.put_online_config(&disabled, Some(&token("UpdateOnlineEvaluationConfig", "u")))
        .await
        .unwrap();
    assert_eq!(s.online_config("c1").await.unwrap(), Some(disabled.clone()));
    assert!(
        s.eval_token("UpdateOnlineEvaluationConfig", "u")
            .await
            .unwrap()
            .is_some()
    );
    s.insert_online_config(&online_config("c0", "zeroth", "CREATING", 1), None)
        .await
        .unwrap();
    let all = s.list_online_configs().await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c0", "c1"]
    );
    let page = s.page_online_configs(None, 1).await.unwrap();
    assert_eq!(page[0].id, "c0");
    let rest = s
        .page_online_configs(Some((1, "c0".into())), 10)
        .await
        .unwrap();
    assert_eq!(rest, [disabled]);
    assert_eq!(
        s.online_configs_in_status("CREATING").await.unwrap().len(),
        1
    );
    // A second node sees what the first wrote.
    let other = node(h).await.eval;
    assert_eq!(other.list_online_configs().await.unwrap().len(), 2);
    assert!(s.delete_online_config("c1").await.unwrap());
    assert_eq!(other.online_config("c1").await.unwrap(), None);
    assert!(!s.delete_online_config("c1").await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Evaluation datasets and batch evaluations

fn dataset(id: &str, name: &str, created_at: i64) -> berth_store::eval_data::DatasetRow {
    berth_store::eval_data::DatasetRow {
        id: id.into(),
        name: name.into(),
        arn: format!("arn:aws:bedrock-agentcore:us-east-1:000000000000:dataset/{id}"),
        description: None,
        schema_type: Some("AGENTCORE_EVALUATION_PREDEFINED_V1".into()),
        status: "ACTIVE".into(),
        failure_reason: None,
        kms_key_arn: None,
        tags: json!({}),
        draft_modified: true,
        latest_version: 0,
        created_at,
        updated_at: created_at,
    }
}

fn example(id: &str) -> (String, serde_json::Value) {
    (
        id.into(),
        json!({"scenario_id": id, "turns": [{"input": "hi"}]}),
    )
}

fn data_token(op: &str, t: &str) -> berth_store::eval_data::TokenRow {
    berth_store::eval_data::TokenRow {
        token: t.into(),
        operation: op.into(),
        request_hash: "h".into(),
        response: json!({"datasetId": "d1"}),
        created_at: 1,
    }
}

async fn datasets_examples_and_versions<H: Harness>(h: &H) {
    use berth_store::eval_data::{DRAFT, ExampleChange};
    let s = node(h).await.eval_data;
    let d = dataset("d1", "first", 1);
    s.insert_dataset(
        &d,
        &[example("a"), example("b")],
        Some(&data_token("CreateDataset", "t1")),
    )
    .await
    .unwrap();
    assert_eq!(s.dataset("d1").await.unwrap(), Some(d.clone()));
    assert_eq!(
        s.eval_token("t1", "CreateDataset")
            .await
            .unwrap()
            .unwrap()
            .response,
        json!({"datasetId": "d1"})
    );
    assert!(matches!(
        s.insert_dataset(&dataset("d2", "first", 2), &[], None)
            .await,
        Err(Error::AlreadyExists("dataset name"))
    ));
    s.insert_dataset(&dataset("d2", "second", 2), &[], None)
        .await
        .unwrap();
    let page: Vec<String> = s
        .datasets(None, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(page, ["d1"]);
    let page: Vec<String> = s
        .datasets(Some("d1"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(page, ["d2"]);

    let c = s.example_counts("d1", DRAFT).await.unwrap();
    assert_eq!((c.total, c.turns, c.input, c.actor_profile), (2, 2, 0, 0));
    assert_eq!(s.publish_version("d1", 5, None).await.unwrap(), 1);
    let row = s.dataset("d1").await.unwrap().unwrap();
    assert!(!row.draft_modified && row.latest_version == 1);
    s.change_examples("d1", &ExampleChange::Delete(vec!["a".into()]), 6, None)
        .await
        .unwrap();
    assert!(s.dataset("d1").await.unwrap().unwrap().draft_modified);
    assert_eq!(s.example_counts("d1", DRAFT).await.unwrap().total, 1);
    // The published version kept what the DRAFT had, in order.
    let v1 = s.examples("d1", 1, 0, 10).await.unwrap();
    assert_eq!(
        v1.iter().map(|e| e.example_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let rest = s.examples("d1", 1, v1[0].position, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(s.publish_version("d1", 7, None).await.unwrap(), 2);
    let vs: Vec<i64> = s
        .versions("d1")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(vs, [2, 1]);
    assert!(s.delete_version("d1", 1).await.unwrap());
    assert!(!s.delete_version("d1", 1).await.unwrap());
    assert_eq!(s.examples("d1", 1, 0, 10).await.unwrap().len(), 0);
    // Numbers are never reused.
    assert_eq!(s.publish_version("d1", 8, None).await.unwrap(), 3);
    assert!(s.delete_dataset("d1").await.unwrap());
    assert_eq!(s.dataset("d1").await.unwrap(), None);
    assert_eq!(s.examples("d1", DRAFT, 0, 10).await.unwrap().len(), 0);
    assert!(!s.delete_dataset("d1").await.unwrap());
}

async fn dataset_example_changes_are_all_or_nothing<H: Harness>(h: &H) {
    use berth_store::eval_data::{DRAFT, ExampleChange};
    let s = node(h).await.eval_data;
    s.insert_dataset(&dataset("d1", "first", 1), &[example("a")], None)
        .await
        .unwrap();
    // A repeated id fails the whole add.
    let add = ExampleChange::Add(vec![example("b"), example("a")]);
    assert!(matches!(
        s.change_examples("d1", &add, 2, None).await,
        Err(Error::AlreadyExists("example id"))
    ));
    assert_eq!(s.example_counts("d1", DRAFT).await.unwrap().total, 1);
    // An unknown id fails the whole update or delete.
    let upd = ExampleChange::Update(vec![example("a"), example("zz")]);
    assert!(matches!(
        s.change_examples("d1", &upd, 2, None).await,
        Err(Error::Precondition("example"))
    ));
    let del = ExampleChange::Delete(vec!["a".into(), "zz".into()]);
    assert!(s.change_examples("d1", &del, 2, None).await.is_err());
    assert_eq!(s.example_counts("d1", DRAFT).await.unwrap().total, 1);
    let n = s
        .change_examples(
            "d1",
            &ExampleChange::Add(vec![example("b")]),
            3,
            Some(&data_token("AddDatasetExamples", "t")),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    // A token taken meanwhile fails the change.
    assert!(matches!(
        s.change_examples(
            "d1",
            &ExampleChange::Add(vec![example("c")]),
            4,
            Some(&data_token("AddDatasetExamples", "t"))
        )
        .await,
        Err(Error::AlreadyExists("client token"))
    ));
    assert_eq!(s.example_counts("d1", DRAFT).await.unwrap().total, 2);
}

async fn dataset_changes_from_two_nodes_take_turns<H: Harness>(h: &H) {
    use berth_store::eval_data::{DRAFT, ExampleChange};
    let (one, two) = (node(h).await.eval_data, node(h).await.eval_data);
    one.insert_dataset(&dataset("d1", "first", 1), &[], None)
        .await
        .unwrap();
    // Adds from two nodes at once: each takes the next positions, none is lost or shares one.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.spawn(async move {
            s.change_examples(
                "d1",
                &ExampleChange::Add(vec![example(&format!("e{i}"))]),
                10 + i,
                None,
            )
            .await
            .unwrap()
        });
    }
    assert_eq!(tasks.join_all().await, vec![1; 20]);
    let rows = one.examples("d1", DRAFT, 0, 100).await.unwrap();
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    assert_eq!(positions, (1..=20).collect::<Vec<i64>>());
    // Publishes from two nodes at once: both succeed, with versions 1 and 2.
    let (a, b) = tokio::join!(
        one.publish_version("d1", 100, None),
        two.publish_version("d1", 101, None)
    );
    let mut published = vec![a.unwrap(), b.unwrap()];
    published.sort_unstable();
    assert_eq!(published, [1, 2]);
    assert_eq!(one.versions("d1").await.unwrap().len(), 2);
}

async fn batch_evaluations_insert_update_and_recover<H: Harness>(h: &H) {
    use berth_store::eval_data::BatchRow;
    let s = node(h).await.eval_data;
    let batch = |id: &str, status: &str, at: i64| BatchRow {
        id: id.into(),
        name: "b".into(),
        arn: format!("arn:aws:bedrock-agentcore:us-east-1:000000000000:batch-evaluation/{id}"),
        status: status.into(),
        request: json!({"batchEvaluationName": "b"}),
        results: None,
        error: None,
        execution: None,
        created_at: at,
        updated_at: at,
    };
    s.insert_batch(&batch("b1", "PENDING", 1), None)
        .await
        .unwrap();
    s.insert_batch(&batch("b2", "IN_PROGRESS", 2), None)
        .await
        .unwrap();
    s.insert_batch(&batch("b3", "COMPLETED", 3), None)
        .await
        .unwrap();
    let newest: Vec<String> = s
        .batches(None, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(newest, ["b3", "b2"]);
    let rest: Vec<String> = s
        .batches(Some("b2"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(rest, ["b1"]);
    let open: Vec<String> = s
        .unfinished_batches()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(open, ["b1", "b2"]);
    // A stop that came first wins over the runner's write.
    let mut stopping = batch("b2", "STOPPING", 2);
    assert!(s.update_batch(&stopping, &[]).await.unwrap());
    let mut running = batch("b2", "IN_PROGRESS", 2);
    running.results = Some(json!({"totalNumberOfSessions": 1}));
    assert!(!s.update_batch(&running, &["STOPPING"]).await.unwrap());
    assert_eq!(s.batch("b2").await.unwrap().unwrap().status, "STOPPING");
    stopping.status = "STOPPED".into();
    stopping.error = Some("stopped".into());
    assert!(s.update_batch(&stopping, &["COMPLETED"]).await.unwrap());
    assert_eq!(s.batch("b2").await.unwrap(), Some(stopping));
    assert!(s.delete_batch("b1").await.unwrap());
    assert!(
        !s.update_batch(&batch("b1", "COMPLETED", 1), &[])
            .await
            .unwrap()
    );
    assert_eq!(s.batch("b1").await.unwrap(), None);
}

fn identity_row(kind: &str, name: &str, secret: Option<&[u8]>) -> IdentityRow {
    IdentityRow {
        kind: kind.into(),
        name: name.into(),
        spec: json!({"tags": {"k": name}}),
        secret: secret.map(<[u8]>::to_vec),
        created_at: 1_000,
        updated_at: 1_000,
    }
}

async fn identities_insert_update_page_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.identity;
    for n in ["c", "a", "b"] {
        s.insert_identity(&identity_row("workload-identity", n, None))
            .await
            .unwrap();
    }
    // The same name in another kind is another resource.
    s.insert_identity(&identity_row("apikey-provider", "a", Some(b"sealed")))
        .await
        .unwrap();
    assert!(matches!(
        s.insert_identity(&identity_row("workload-identity", "a", None))
            .await,
        Err(Error::AlreadyExists(_))
    ));
    let page = s
        .list_identities("workload-identity", None, 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let rest = s
        .list_identities("workload-identity", Some("b"), 2)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    let key = s.identity("apikey-provider", "a").await.unwrap().unwrap();
    assert_eq!(key.secret.as_deref(), Some(&b"sealed"[..]));
    assert_eq!(key.spec, json!({"tags": {"k": "a"}}));

    let mut changed = key.clone();
    changed.secret = Some(b"resealed".to_vec());
    changed.updated_at = 2_000;
    assert!(s.update_identity(&changed).await.unwrap());
    let got = s.identity("apikey-provider", "a").await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some(&b"resealed"[..]));
    assert_eq!((got.created_at, got.updated_at), (1_000, 2_000));
    assert!(
        !s.update_identity(&identity_row("apikey-provider", "zz", None))
            .await
            .unwrap()
    );

    let mut old_session = identity_row("oauth2-session", "old", None);
    old_session.updated_at = 100;
    s.insert_identity(&old_session).await.unwrap();
    s.insert_identity(&identity_row("oauth2-session", "new", None))
        .await
        .unwrap();
    assert_eq!(
        s.delete_identities_before("oauth2-session", 500)
            .await
            .unwrap(),
        1
    );
    assert!(s.identity("oauth2-session", "old").await.unwrap().is_none());
    assert!(s.identity("oauth2-session", "new").await.unwrap().is_some());
    assert!(
        s.identity("workload-identity", "b")
            .await
            .unwrap()
            .is_some()
    );

    assert!(s.delete_identity("workload-identity", "a").await.unwrap());
    assert!(!s.delete_identity("workload-identity", "a").await.unwrap());
    assert!(
        s.identity("workload-identity", "a")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.identity("apikey-provider", "a").await.unwrap().is_some());
}

async fn identity_token_cache_expires_and_clears<H: Harness>(h: &H) {
    let s = node(h).await.identity;
    s.insert_identity(&identity_row("oauth2-provider", "p", Some(b"x")))
        .await
        .unwrap();
    s.put_cached_token("oauth2-provider/p", "m2m|read", b"t1", 5_000)
        .await
        .unwrap();
    let at = |now| s.cached_token("oauth2-provider/p", "m2m|read", now);
    assert_eq!(at(4_999).await.unwrap().as_deref(), Some(&b"t1"[..]));
    assert_eq!(at(5_000).await.unwrap(), None, "expired at its expiry");
    s.put_cached_token("oauth2-provider/p", "m2m|read", b"t2", 9_000)
        .await
        .unwrap();
    assert_eq!(at(6_000).await.unwrap().as_deref(), Some(&b"t2"[..]));
    s.clear_cached_tokens("oauth2-provider/p").await.unwrap();
    assert_eq!(at(6_000).await.unwrap(), None);
    s.put_cached_token("oauth2-provider/p", "m2m|read", b"t3", 9_000)
        .await
        .unwrap();
    // Deleting the provider drops its tokens.
    assert!(s.delete_identity("oauth2-provider", "p").await.unwrap());
    assert_eq!(at(6_000).await.unwrap(), None);
}

async fn secrets_put_bumps_versions_lists_by_prefix_and_delete<H: Harness>(h: &H) {
    let s = node(h).await.secrets;
    let a = s.put_secret("team/a", b"sealed-1", 1_000).await.unwrap();
    assert_eq!(
        (a.name.as_str(), a.version, a.created_at, a.updated_at),
        ("team/a", 1, 1_000, 1_000)
    );
    let a2 = s.put_secret("team/a", b"sealed-2", 2_000).await.unwrap();
    assert_eq!(
        (a2.version, a2.created_at, a2.updated_at),
        (2, 1_000, 2_000),
        "a put keeps the creation time and bumps the version"
    );
    let got = s.secret("team/a").await.unwrap().unwrap();
    assert_eq!(got.row, a2);
    assert_eq!(got.sealed, b"sealed-2");
    s.put_secret("team_b", b"x", 3_000).await.unwrap();
    s.put_secret("teamXa", b"x", 3_000).await.unwrap();
    s.put_secret("other", b"x", 3_000).await.unwrap();
    let names = |rows: Vec<berth_store::secrets::SecretRow>| {
        rows.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(s.list_secrets("").await.unwrap()),
        ["other", "team/a", "teamXa", "team_b"]
    );
    // `_` is a plain character in a prefix, not a wildcard.
    assert_eq!(names(s.list_secrets("team_").await.unwrap()), ["team_b"]);
    assert_eq!(names(s.list_secrets("team/").await.unwrap()), ["team/a"]);
    assert!(s.list_secrets("nope").await.unwrap().is_empty());

    assert!(s.delete_secret("team/a", 4_000).await.unwrap());
    assert!(!s.delete_secret("team/a", 4_001).await.unwrap());
    assert!(!s.delete_secret("never", 4_001).await.unwrap());
    assert!(s.secret("team/a").await.unwrap().is_none());
    assert_eq!(
        names(s.list_secrets("team/").await.unwrap()),
        Vec::<String>::new()
    );
    // Created again: a new creation time, and the version goes on from the deleted one.
    let again = s.put_secret("team/a", b"sealed-3", 5_000).await.unwrap();
    assert_eq!((again.version, again.created_at), (3, 5_000));
}

async fn secrets_from_two_nodes_share_one_version_sequence<H: Harness>(h: &H) {
    let (one, two) = (node(h).await.secrets, node(h).await.secrets);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.spawn(async move {
            s.put_secret("shared", b"v", 1_000 + i)
                .await
                .unwrap()
                .version
        });
    }
    let mut versions = tasks.join_all().await;
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=20).collect::<Vec<u64>>(),
        "every put got its own version"
    );
}

// ---- nodes, session owners, leases -------------------------------------------------------------

fn node_row(id: &str, now: i64) -> berth_store::nodes::NodeRow {
    berth_store::nodes::NodeRow {
        id: id.into(),
        address: format!("http://{id}.test:1"),
        started_at: now,
        seen_at: now,
        lease_until: now + 5_000,
        draining: false,
    }
}

async fn nodes_register_renew_drain_and_leave<H: Harness>(h: &H) {
    let s = node(h).await.nodes;
    s.register_node(&node_row("b", 1_000)).await.unwrap();
    s.register_node(&node_row("a", 1_000)).await.unwrap();
    let ids: Vec<_> = s.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["a", "b"]);
    // Draining is set by an operator through any node; the drained node learns it on renewal.
    assert!(s.set_draining("a", true).await.unwrap());
    assert!(!s.set_draining("nope", true).await.unwrap());
    let renewed = s.renew_node("a", 2_000, 7_000).await.unwrap().unwrap();
    assert!(renewed.draining);
    assert_eq!((renewed.seen_at, renewed.lease_until), (2_000, 7_000));
    assert!(renewed.alive(6_999) && !renewed.alive(7_000));
    assert_eq!(s.renew_node("nope", 2_000, 7_000).await.unwrap(), None);
    // A restart registers again: not draining, a new start.
    s.register_node(&node_row("a", 3_000)).await.unwrap();
    let a = s.node("a").await.unwrap().unwrap();
    assert_eq!((a.started_at, a.draining), (3_000, false));
    // Leaving ends the lease and gives up sessions and leases at once.
    assert_eq!(
        s.claim_session("rt", "s1", "a", 3_000, false)
            .await
            .unwrap(),
        berth_store::nodes::Claim::Mine
    );
    assert!(s.acquire_lease("job", "a", 3_000, 8_000).await.unwrap());
    s.leave("a", 3_500).await.unwrap();
    assert!(!s.node("a").await.unwrap().unwrap().alive(3_500));
    assert!(s.leases().await.unwrap().is_empty());
    assert_eq!(
        s.claim_session("rt", "s1", "b", 3_600, false)
            .await
            .unwrap(),
        berth_store::nodes::Claim::Mine
    );
}

async fn a_session_has_one_live_owner<H: Harness>(h: &H) {
    use berth_store::nodes::Claim;
    let (s1, s2) = (node(h).await.nodes, node(h).await.nodes);
    s1.register_node(&node_row("a", 1_000)).await.unwrap();
    s2.register_node(&node_row("b", 1_000)).await.unwrap();
    assert_eq!(
        s1.claim_session("rt", "s", "a", 1_100, false)
            .await
            .unwrap(),
        Claim::Mine
    );
    // Claiming again is idempotent for the owner, and answers the owner to anyone else.
    assert_eq!(
        s1.claim_session("rt", "s", "a", 1_200, false)
            .await
            .unwrap(),
        Claim::Mine
    );
    match s2
        .claim_session("rt", "s", "b", 1_300, false)
        .await
        .unwrap()
    {
        Claim::Owner(n) => assert_eq!(
            (n.id.as_str(), n.address.as_str()),
            ("a", "http://a.test:1")
        ),
        Claim::Mine => panic!("b took a live owner's session"),
    }
    assert_eq!(s2.session_owner("rt", "s").await.unwrap().unwrap().id, "a");
    assert_eq!(s2.session_owner("rt", "other").await.unwrap(), None);
    // The same session id of another runtime is another session.
    assert_eq!(
        s2.claim_session("rt2", "s", "b", 1_300, false)
            .await
            .unwrap(),
        Claim::Mine
    );
    // Forced (the owner handed it over), b takes it.
    assert_eq!(
        s2.claim_session("rt", "s", "b", 1_400, true).await.unwrap(),
        Claim::Mine
    );
    assert!(matches!(
        s1.claim_session("rt", "s", "a", 1_500, false).await.unwrap(),
        Claim::Owner(n) if n.id == "b"
    ));
    // b's lease lapses (b died): a claims the session at once.
    assert_eq!(
        s1.claim_session("rt", "s", "a", 6_000, false)
            .await
            .unwrap(),
        Claim::Mine
    );
    // Releasing is the owner's alone.
    s2.release_session("rt", "s", "b").await.unwrap();
    assert!(matches!(
        s2.claim_session("rt", "s", "b", 5_900, false).await.unwrap(),
        Claim::Owner(n) if n.id == "a"
    ));
    s1.release_session("rt", "s", "a").await.unwrap();
    assert_eq!(
        s2.claim_session("rt", "s", "b", 5_900, false)
            .await
            .unwrap(),
        Claim::Mine
    );
}

async fn sessions_claimed_at_once_get_one_owner<H: Harness>(h: &H) {
    use berth_store::nodes::Claim;
    let mut stores = Vec::new();
    for i in 0..4 {
        let s = node(h).await.nodes;
        s.register_node(&node_row(&format!("n{i}"), 1_000))
            .await
            .unwrap();
        stores.push(s);
    }
    for round in 0..10 {
        let session = format!("s{round}");
        let mut set = tokio::task::JoinSet::new();
        for (i, s) in stores.iter().enumerate() {
            let (s, session, me) = (s.clone(), session.clone(), format!("n{i}"));
            set.spawn(async move {
                let c = s
                    .claim_session("rt", &session, &me, 1_100, false)
                    .await
                    .unwrap();
                (me, c)
            });
        }
        let claims = set.join_all().await;
        let mine: Vec<_> = claims.iter().filter(|(_, c)| *c == Claim::Mine).collect();
        assert_eq!(mine.len(), 1, "round {round}: {claims:?}");
        let owner = &mine[0].0;
        for (_, c) in &claims {
            if let Claim::Owner(n) = c {
                assert_eq!(&n.id, owner);
            }
        }
    }
}

async fn a_lease_has_one_holder_until_it_lapses<H: Harness>(h: &H) {
    let (s1, s2) = (node(h).await.nodes, node(h).await.nodes);
    assert!(
        s1.acquire_lease("rollouts", "a", 1_000, 4_000)
            .await
            .unwrap()
    );
    assert!(
        !s2.acquire_lease("rollouts", "b", 1_500, 4_500)
            .await
            .unwrap()
    );
    // The holder renews.
    assert!(
        s1.acquire_lease("rollouts", "a", 3_000, 6_000)
            .await
            .unwrap()
    );
    assert!(
        !s2.acquire_lease("rollouts", "b", 5_999, 9_000)
            .await
            .unwrap()
    );
    // Lapsed: the next node takes it, and the old holder cannot renew over it.
    assert!(
        s2.acquire_lease("rollouts", "b", 6_000, 9_000)
            .await
            .unwrap()
    );
    assert!(
        !s1.acquire_lease("rollouts", "a", 6_100, 9_100)
            .await
            .unwrap()
    );
    // Releasing is the holder's alone.
    s1.release_lease("rollouts", "a").await.unwrap();
    let leases = s1.leases().await.unwrap();
    assert_eq!(
        leases,
        [berth_store::nodes::LeaseRow {
            name: "rollouts".into(),
            holder: "b".into(),
            until: 9_000
        }]
    );
    s2.release_lease("rollouts", "b").await.unwrap();
    assert!(
        s1.acquire_lease("rollouts", "a", 6_200, 9_200)
            .await
            .unwrap()
    );
    // Several nodes at once: exactly one wins.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(node(h).await.nodes);
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        set.spawn(async move {
            s.acquire_lease("drift", &format!("n{i}"), 10_000, 20_000)
                .await
                .unwrap()
        });
    }
    let won = set.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}
