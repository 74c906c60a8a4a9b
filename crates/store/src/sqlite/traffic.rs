//! The SQL of the traffic layer and the audit log on SQLite: the shared SQL of
//! [`crate::sql::traffic`].

crate::sql::traffic::traffic_sql!(
    crate::SqliteStore,
    sqlx::Sqlite,
    merge_counts: "(SELECT json_group_array(total ORDER BY i) FROM \
        (SELECT i, SUM(n) AS total FROM \
          (SELECT key AS i, value AS n FROM json_each(health_buckets.latency_counts) \
           UNION ALL SELECT key, value FROM json_each(excluded.latency_counts)) \
         GROUP BY i))",
    audit_lock: ""
);
pub(crate) use sql::*;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::traffic::ChainCheck;
    use crate::traffic::{AssignmentRow, AuditRecord, HealthRow, RolloutRow};
    use crate::{ControlStore, SqliteStore, Write};
    use berth_types::records::Runtime;
    use serde_json::json;

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        (s, dir)
    }

    fn record(i: u32) -> AuditRecord {
        AuditRecord {
            at: 1_000 + i64::from(i),
            actor: "AKIATEST".into(),
            action: "traffic.set".into(),
            resource: format!("arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/rt-{i}"),
            // Keys out of order: the stored text must be canonical anyway.
            before: json!({"b": 1, "a": {"z": 1, "y": 2}}),
            after: json!({"weights": [{"version": 1, "weight": 100}]}),
            request_id: Some(format!("req-{i}")),
        }
    }

    async fn verify(s: &SqliteStore) -> Result<u64, String> {
        let mut check = ChainCheck::default();
        let mut after = 0;
        loop {
            let page = s.audit(None, after, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            for row in &page {
                check.next(row)?;
            }
            after = page.last().unwrap().seq;
        }
        check.finish(s.audit_head().await.unwrap())
    }

    #[tokio::test]
    async fn audit_chain_verifies_and_detects_edits_and_deletions() {
        let (s, _d) = store().await;
        assert_eq!(verify(&s).await, Ok(0));
        for i in 1..=5 {
            s.apply(vec![Write::AppendAudit(record(i))]).await.unwrap();
        }
        assert_eq!(verify(&s).await, Ok(5));
        let rows = s.audit(None, 0, 10).await.unwrap();
        assert_eq!(rows[0].before, r#"{"a":{"y":2,"z":1},"b":1}"#);
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        let filtered = s
            .audit(
                Some("arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/rt-3"),
                0,
                10,
            )
            .await
            .unwrap();
        assert_eq!(filtered.len(), 1);

        // Edit one entry's content.
        sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
            .execute(s.writer())
            .await
            .unwrap();
        let e = verify(&s).await.unwrap_err();
        assert!(e.contains("entry 3 was edited"), "{e}");
        sqlx::query("UPDATE audit_log SET actor = 'AKIATEST' WHERE seq = 3")
            .execute(s.writer())
            .await
            .unwrap();
        assert_eq!(verify(&s).await, Ok(5));

        // Delete a middle entry.
        sqlx::query("DELETE FROM audit_log WHERE seq = 2")
            .execute(s.writer())
            .await
            .unwrap();
        let e = verify(&s).await.unwrap_err();
        assert!(e.contains("entry 2 is missing"), "{e}");
    }

    #[tokio::test]
    async fn deleting_the_tail_is_detected_and_appends_keep_the_gap() {
        let (s, _d) = store().await;
        for i in 1..=3 {
            s.apply(vec![Write::AppendAudit(record(i))]).await.unwrap();
        }
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(s.writer())
            .await
            .unwrap();
        let e = verify(&s).await.unwrap_err();
        assert!(e.contains("entries were deleted"), "{e}");
        s.apply(vec![Write::AppendAudit(record(4))]).await.unwrap();
        let e = verify(&s).await.unwrap_err();
        assert!(e.contains("entry 3 is missing"), "{e}");
    }

    async fn runtime(s: &SqliteStore) -> String {
        s.apply(vec![Write::InsertRuntime(Runtime {
            id: "rt-0123456789".into(),
            name: "rt".into(),
            latest_version: 1,
            deleting: false,
            created_at: 1,
            updated_at: 1,
        })])
        .await
        .unwrap();
        "rt-0123456789".into()
    }

    #[tokio::test]
    async fn health_buckets_add_up() {
        let (s, _d) = store().await;
        let rt = runtime(&s).await;
        let h = HealthRow {
            runtime_id: rt.clone(),
            endpoint: "prod".into(),
            version: 2,
            bucket_start: 10_000,
            invocations: 3,
            errors_5xx: 1,
            errors_424: 0,
            timeouts: 0,
            new_sessions: 1,
            latency_sum_ms: 30,
            latency_counts: vec![1, 2],
        };
        s.apply(vec![
            Write::AddHealth(h.clone()),
            Write::AddHealth(HealthRow {
                latency_counts: vec![0, 0, 5],
                ..h.clone()
            }),
        ])
        .await
        .unwrap();
        let rows = s.health(&rt, "prod", 0, 20_000).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].invocations, 6);
        assert_eq!(rows[0].errors_5xx, 2);
        assert_eq!(rows[0].latency_counts, vec![1, 2, 5]);
        assert!(
            s.health(&rt, "prod", 10_001, 20_000)
                .await
                .unwrap()
                .is_empty()
        );
        // Health of a runtime that no longer exists is dropped, not an error.
        s.apply(vec![Write::AddHealth(HealthRow {
            runtime_id: "gone-0123456789".into(),
            ..h.clone()
        })])
        .await
        .unwrap();
        s.apply(vec![Write::PruneHealth { before: 10_001 }])
            .await
            .unwrap();
        assert!(s.health(&rt, "prod", 0, 20_000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn first_assignment_wins_unless_replaced_and_version_deletion_forgets() {
        let (s, _d) = store().await;
        let rt = runtime(&s).await;
        let a = AssignmentRow {
            runtime_id: rt.clone(),
            session_id: "s1".into(),
            endpoint: "prod".into(),
            version: 1,
            created_at: 5,
        };
        s.apply(vec![Write::PutAssignment {
            assignment: a.clone(),
            replace: false,
        }])
        .await
        .unwrap();
        s.apply(vec![Write::PutAssignment {
            assignment: AssignmentRow {
                version: 2,
                ..a.clone()
            },
            replace: false,
        }])
        .await
        .unwrap();
        assert_eq!(s.assignment(&rt, "s1").await.unwrap().unwrap().version, 1);
        s.apply(vec![Write::PutAssignment {
            assignment: AssignmentRow {
                version: 2,
                ..a.clone()
            },
            replace: true,
        }])
        .await
        .unwrap();
        assert_eq!(s.assignment(&rt, "s1").await.unwrap().unwrap().version, 2);
        assert_eq!(
            s.assignment_counts(&rt, "prod").await.unwrap(),
            vec![(2, 1)]
        );
        s.apply(vec![Write::DeleteVersion {
            runtime_id: rt.clone(),
            version: 2,
        }])
        .await
        .unwrap();
        assert!(s.assignment(&rt, "s1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn one_active_rollout_per_endpoint() {
        let (s, _d) = store().await;
        let rt = runtime(&s).await;
        let r = RolloutRow {
            id: "ro-1".into(),
            runtime_id: rt.clone(),
            endpoint: "prod".into(),
            from_version: 1,
            to_version: 2,
            state: "RUNNING".into(),
            step_index: 0,
            step_started_at: 1,
            spec: json!({}),
            analysis: None,
            reason: None,
            created_by: "me".into(),
            created_at: 1,
            updated_at: 1,
        };
        s.apply(vec![Write::InsertRollout(r.clone())])
            .await
            .unwrap();
        let e = s
            .apply(vec![Write::InsertRollout(RolloutRow {
                id: "ro-2".into(),
                ..r.clone()
            })])
            .await
            .unwrap_err();
        assert!(matches!(e, crate::Error::AlreadyExists("active rollout")));
        s.apply(vec![Write::PutRollout(RolloutRow {
            state: "ABORTED".into(),
            ..r.clone()
        })])
        .await
        .unwrap();
        s.apply(vec![Write::InsertRollout(RolloutRow {
            id: "ro-2".into(),
            ..r.clone()
        })])
        .await
        .unwrap();
        assert_eq!(s.active_rollouts().await.unwrap().len(), 1);
        assert_eq!(s.rollouts(&rt, "prod", 10).await.unwrap().len(), 2);
    }
}
