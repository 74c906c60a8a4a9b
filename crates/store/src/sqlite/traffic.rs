//! SQLite SQL of the traffic layer and the audit log (rows in [`crate::traffic`]).

use super::cols::{corrupt, json_col};
use crate::traffic::{
    AssignmentRow, AuditRecord, AuditRow, DrainRow, GENESIS_HASH, HealthRow, PolicyRow, RolloutRow,
    audit_hash, canonical_json,
};
use crate::{Error, RolloutGuard};
use berth_types::EpochMillis;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

fn u32_col(r: &SqliteRow, col: &str) -> Result<u32, Error> {
    Ok(r.try_get::<i64, _>(col)? as u32)
}

fn u64_col(r: &SqliteRow, col: &str) -> Result<u64, Error> {
    Ok(r.try_get::<i64, _>(col)?.max(0) as u64)
}

fn policy_row(r: &SqliteRow) -> Result<PolicyRow, Error> {
    Ok(PolicyRow {
        runtime_id: r.try_get("runtime_id")?,
        endpoint: r.try_get("endpoint")?,
        weights: json_col(r, "weights", "traffic_policies")?,
        rules: json_col(r, "rules", "traffic_policies")?,
        previous_version: r
            .try_get::<Option<i64>, _>("previous_version")?
            .map(|v| v as u32),
        updated_at: r.try_get("updated_at")?,
    })
}

fn assignment_row(r: &SqliteRow) -> Result<AssignmentRow, Error> {
    Ok(AssignmentRow {
        runtime_id: r.try_get("runtime_id")?,
        session_id: r.try_get("session_id")?,
        endpoint: r.try_get("endpoint")?,
        version: u32_col(r, "version")?,
        created_at: r.try_get("created_at")?,
    })
}

fn drain_row(r: &SqliteRow) -> Result<DrainRow, Error> {
    Ok(DrainRow {
        runtime_id: r.try_get("runtime_id")?,
        endpoint: r.try_get("endpoint")?,
        version: u32_col(r, "version")?,
        deadline: r.try_get("deadline")?,
        created_at: r.try_get("created_at")?,
    })
}

fn rollout_row(r: &SqliteRow) -> Result<RolloutRow, Error> {
    let analysis: Option<String> = r.try_get("analysis")?;
    Ok(RolloutRow {
        id: r.try_get("id")?,
        runtime_id: r.try_get("runtime_id")?,
        endpoint: r.try_get("endpoint")?,
        from_version: u32_col(r, "from_version")?,
        to_version: u32_col(r, "to_version")?,
        state: r.try_get("state")?,
        step_index: u32_col(r, "step_index")?,
        step_started_at: r.try_get("step_started_at")?,
        spec: json_col(r, "spec", "rollouts")?,
        analysis: analysis
            .map(|a| serde_json::from_str(&a).map_err(|e| corrupt("rollouts", e)))
            .transpose()?,
        reason: r.try_get("reason")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn health_row(r: &SqliteRow) -> Result<HealthRow, Error> {
    let counts: String = r.try_get("latency_counts")?;
    Ok(HealthRow {
        runtime_id: r.try_get("runtime_id")?,
        endpoint: r.try_get("endpoint")?,
        version: u32_col(r, "version")?,
        bucket_start: r.try_get("bucket_start")?,
        invocations: u64_col(r, "invocations")?,
        errors_5xx: u64_col(r, "errors_5xx")?,
        errors_424: u64_col(r, "errors_424")?,
        timeouts: u64_col(r, "timeouts")?,
        new_sessions: u64_col(r, "new_sessions")?,
        latency_sum_ms: u64_col(r, "latency_sum_ms")?,
        latency_counts: serde_json::from_str(&counts).map_err(|e| corrupt("health_buckets", e))?,
    })
}

fn audit_row(r: &SqliteRow) -> Result<AuditRow, Error> {
    Ok(AuditRow {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        resource: r.try_get("resource")?,
        before: r.try_get("before")?,
        after: r.try_get("after")?,
        request_id: r.try_get("request_id")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) async fn put_policy(tx: &mut SqliteConnection, p: &PolicyRow) -> Result<(), Error> {
    sqlx::query(
        "INSERT OR REPLACE INTO traffic_policies (runtime_id, endpoint, weights, rules, \
         previous_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&p.runtime_id)
    .bind(&p.endpoint)
    .bind(p.weights.to_string())
    .bind(p.rules.to_string())
    .bind(p.previous_version.map(i64::from))
    .bind(p.updated_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn put_assignment(
    tx: &mut SqliteConnection,
    a: &AssignmentRow,
    replace: bool,
) -> Result<(), Error> {
    let verb = if replace {
        "INSERT OR REPLACE"
    } else {
        "INSERT OR IGNORE"
    };
    sqlx::query(&format!(
        "{verb} INTO session_assignments (runtime_id, session_id, endpoint, version, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&a.runtime_id)
    .bind(&a.session_id)
    .bind(&a.endpoint)
    .bind(i64::from(a.version))
    .bind(a.created_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn delete_assignments(
    tx: &mut SqliteConnection,
    runtime_id: &str,
    endpoint: &str,
    version: u32,
) -> Result<(), Error> {
    sqlx::query(
        "DELETE FROM session_assignments WHERE runtime_id = $1 AND endpoint = $2 AND version = $3",
    )
    .bind(runtime_id)
    .bind(endpoint)
    .bind(i64::from(version))
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn expire_assignments(
    tx: &mut SqliteConnection,
    before: EpochMillis,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM session_assignments WHERE created_at < $1")
        .bind(before)
        .execute(tx)
        .await?;
    Ok(())
}

pub(crate) async fn put_drain(tx: &mut SqliteConnection, d: &DrainRow) -> Result<(), Error> {
    sqlx::query(
        "INSERT OR REPLACE INTO drains (runtime_id, endpoint, version, deadline, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&d.runtime_id)
    .bind(&d.endpoint)
    .bind(i64::from(d.version))
    .bind(d.deadline)
    .bind(d.created_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn delete_drain(
    tx: &mut SqliteConnection,
    runtime_id: &str,
    endpoint: &str,
    version: u32,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM drains WHERE runtime_id = $1 AND endpoint = $2 AND version = $3")
        .bind(runtime_id)
        .bind(endpoint)
        .bind(i64::from(version))
        .execute(tx)
        .await?;
    Ok(())
}

pub(crate) async fn write_rollout(
    tx: &mut SqliteConnection,
    r: &RolloutRow,
    insert: bool,
) -> Result<(), Error> {
    let verb = if insert {
        "INSERT"
    } else {
        "INSERT OR REPLACE"
    };
    let res = sqlx::query(&format!(
        "{verb} INTO rollouts (id, runtime_id, endpoint, from_version, to_version, state, \
         step_index, step_started_at, spec, analysis, reason, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&r.id)
    .bind(&r.runtime_id)
    .bind(&r.endpoint)
    .bind(i64::from(r.from_version))
    .bind(i64::from(r.to_version))
    .bind(&r.state)
    .bind(i64::from(r.step_index))
    .bind(r.step_started_at)
    .bind(r.spec.to_string())
    .bind(r.analysis.as_ref().map(Value::to_string))
    .bind(&r.reason)
    .bind(&r.created_by)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(tx)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            Err(Error::AlreadyExists("active rollout"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Conditional replace of a rollout row: only while the stored row still matches `expect`.
pub(crate) async fn update_rollout(
    tx: &mut SqliteConnection,
    r: &RolloutRow,
    expect: &RolloutGuard,
) -> Result<(), Error> {
    let n = sqlx::query(
        "UPDATE rollouts SET from_version = $1, to_version = $2, state = $3, step_index = $4, \
         step_started_at = $5, spec = $6, analysis = $7, reason = $8, updated_at = $9 \
         WHERE id = $10 AND state = $11 AND step_index = $12 AND updated_at = $13",
    )
    .bind(i64::from(r.from_version))
    .bind(i64::from(r.to_version))
    .bind(&r.state)
    .bind(i64::from(r.step_index))
    .bind(r.step_started_at)
    .bind(r.spec.to_string())
    .bind(r.analysis.as_ref().map(Value::to_string))
    .bind(&r.reason)
    .bind(r.updated_at)
    .bind(&r.id)
    .bind(&expect.state)
    .bind(i64::from(expect.step_index))
    .bind(expect.updated_at)
    .execute(tx)
    .await?
    .rows_affected();
    if n != 1 {
        return Err(Error::Precondition("rollout"));
    }
    Ok(())
}

pub(crate) async fn add_health(tx: &mut SqliteConnection, h: &HealthRow) -> Result<(), Error> {
    // One statement, so two writers adding to one bucket both count (no read-then-write): the
    // counters and the latency histogram (a JSON array, summed index by index, the longer one
    // kept) are added in SQL. Invocations recorded just before their runtime was deleted have
    // nowhere to go; the `EXISTS` drops them so one stale series cannot fail every later flush.
    let counts =
        serde_json::to_string(&h.latency_counts).map_err(|e| corrupt("health_buckets", e))?;
    sqlx::query(
        "INSERT INTO health_buckets (runtime_id, endpoint, version, bucket_start, \
         invocations, errors_5xx, errors_424, timeouts, new_sessions, latency_sum_ms, latency_counts) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
         WHERE EXISTS (SELECT 1 FROM runtimes WHERE id = $1) \
         ON CONFLICT (runtime_id, endpoint, version, bucket_start) DO UPDATE SET \
         invocations = invocations + excluded.invocations, \
         errors_5xx = errors_5xx + excluded.errors_5xx, \
         errors_424 = errors_424 + excluded.errors_424, \
         timeouts = timeouts + excluded.timeouts, \
         new_sessions = new_sessions + excluded.new_sessions, \
         latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms, \
         latency_counts = (SELECT json_group_array(total ORDER BY i) FROM \
           (SELECT i, SUM(n) AS total FROM \
             (SELECT key AS i, value AS n FROM json_each(health_buckets.latency_counts) \
              UNION ALL SELECT key, value FROM json_each(excluded.latency_counts)) \
            GROUP BY i))",
    )
    .bind(&h.runtime_id)
    .bind(&h.endpoint)
    .bind(i64::from(h.version))
    .bind(h.bucket_start)
    .bind(i64_of(h.invocations))
    .bind(i64_of(h.errors_5xx))
    .bind(i64_of(h.errors_424))
    .bind(i64_of(h.timeouts))
    .bind(i64_of(h.new_sessions))
    .bind(i64_of(h.latency_sum_ms))
    .bind(counts)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn prune_health(
    tx: &mut SqliteConnection,
    before: EpochMillis,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM health_buckets WHERE bucket_start < $1")
        .bind(before)
        .execute(tx)
        .await?;
    Ok(())
}

pub(crate) async fn append_audit(tx: &mut SqliteConnection, a: &AuditRecord) -> Result<(), Error> {
    // The head, not MAX(seq): if the tail was deleted behind our back, new entries continue
    // after the recorded head and the gap stays visible to verification.
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
    let head_seq = head.as_ref().map(|(s, _)| *s);
    let (seq, prev) = match head {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut row = AuditRow {
        seq,
        at: a.at,
        actor: a.actor.clone(),
        action: a.action.clone(),
        resource: a.resource.clone(),
        before: canonical_json(&a.before),
        after: canonical_json(&a.after),
        request_id: a.request_id.clone(),
        prev_hash: prev,
        hash: String::new(),
    };
    row.hash = audit_hash(&row);
    let inserted = sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, resource, before, after, request_id, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.seq)
    .bind(row.at)
    .bind(&row.actor)
    .bind(&row.action)
    .bind(&row.resource)
    .bind(&row.before)
    .bind(&row.after)
    .bind(&row.request_id)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            return Err(Error::Precondition("audit head"));
        }
        other => other?,
    };
    // A conditional write on the head: it moves only from the entry this one links to. The write
    // transaction already holds the database lock, so this never fails on SQLite; it is what keeps
    // the chain linear on a backend where two writers could read the same head.
    let moved = match head_seq {
        Some(prev_seq) => {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3")
                .bind(row.seq)
                .bind(&row.hash)
                .bind(prev_seq)
                .execute(tx)
                .await?
                .rows_affected()
        }
        None => sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(row.seq)
        .bind(&row.hash)
        .execute(tx)
        .await?
        .rows_affected(),
    };
    if moved != 1 {
        return Err(Error::Precondition("audit head"));
    }
    Ok(())
}

/// Removes the traffic state of a deleted endpoint.
pub(crate) async fn forget_endpoint(
    tx: &mut SqliteConnection,
    runtime_id: &str,
    endpoint: &str,
) -> Result<(), Error> {
    for table in [
        "traffic_policies",
        "session_assignments",
        "drains",
        "rollouts",
    ] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE runtime_id = $1 AND endpoint = $2"
        ))
        .bind(runtime_id)
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Removes assignments and drains of a deleted version.
pub(crate) async fn forget_version(
    tx: &mut SqliteConnection,
    runtime_id: &str,
    version: u32,
) -> Result<(), Error> {
    for table in ["session_assignments", "drains"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE runtime_id = $1 AND version = $2"
        ))
        .bind(runtime_id)
        .bind(i64::from(version))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub(crate) async fn policy(
    pool: &SqlitePool,
    runtime_id: &str,
    endpoint: &str,
) -> Result<Option<PolicyRow>, Error> {
    sqlx::query("SELECT * FROM traffic_policies WHERE runtime_id = $1 AND endpoint = $2")
        .bind(runtime_id)
        .bind(endpoint)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(policy_row)
        .transpose()
}

pub(crate) async fn assignment(
    pool: &SqlitePool,
    runtime_id: &str,
    session_id: &str,
) -> Result<Option<AssignmentRow>, Error> {
    sqlx::query("SELECT * FROM session_assignments WHERE runtime_id = $1 AND session_id = $2")
        .bind(runtime_id)
        .bind(session_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(assignment_row)
        .transpose()
}

pub(crate) async fn assignment_counts(
    pool: &SqlitePool,
    runtime_id: &str,
    endpoint: &str,
) -> Result<Vec<(u32, u64)>, Error> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version, COUNT(*) FROM session_assignments WHERE runtime_id = $1 AND endpoint = $2 \
         GROUP BY version ORDER BY version",
    )
    .bind(runtime_id)
    .bind(endpoint)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(v, n)| (v as u32, n.max(0) as u64))
        .collect())
}

pub(crate) async fn drains(
    pool: &SqlitePool,
    runtime_id: &str,
    endpoint: &str,
) -> Result<Vec<DrainRow>, Error> {
    let rows = sqlx::query(
        "SELECT * FROM drains WHERE runtime_id = $1 AND endpoint = $2 ORDER BY version",
    )
    .bind(runtime_id)
    .bind(endpoint)
    .fetch_all(pool)
    .await?;
    rows.iter().map(drain_row).collect()
}

pub(crate) async fn expired_drains(
    pool: &SqlitePool,
    now: EpochMillis,
) -> Result<Vec<DrainRow>, Error> {
    let rows = sqlx::query("SELECT * FROM drains WHERE deadline <= $1 ORDER BY deadline")
        .bind(now)
        .fetch_all(pool)
        .await?;
    rows.iter().map(drain_row).collect()
}

pub(crate) async fn rollout(pool: &SqlitePool, id: &str) -> Result<Option<RolloutRow>, Error> {
    sqlx::query("SELECT * FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rollout_row)
        .transpose()
}

pub(crate) async fn active_rollouts(pool: &SqlitePool) -> Result<Vec<RolloutRow>, Error> {
    let rows = sqlx::query(
        "SELECT * FROM rollouts WHERE state IN ('RUNNING', 'PAUSED') ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(rollout_row).collect()
}

pub(crate) async fn rollouts(
    pool: &SqlitePool,
    runtime_id: &str,
    endpoint: &str,
    limit: u32,
) -> Result<Vec<RolloutRow>, Error> {
    let rows = sqlx::query(
        "SELECT * FROM rollouts WHERE runtime_id = $1 AND endpoint = $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(runtime_id)
    .bind(endpoint)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(rollout_row).collect()
}

pub(crate) async fn health(
    pool: &SqlitePool,
    runtime_id: &str,
    endpoint: &str,
    from: EpochMillis,
    to: EpochMillis,
) -> Result<Vec<HealthRow>, Error> {
    let rows = sqlx::query(
        "SELECT * FROM health_buckets WHERE runtime_id = $1 AND endpoint = $2 \
         AND bucket_start >= $3 AND bucket_start < $4 ORDER BY version, bucket_start",
    )
    .bind(runtime_id)
    .bind(endpoint)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter().map(health_row).collect()
}

pub(crate) async fn audit(
    pool: &SqlitePool,
    resource: Option<&str>,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<AuditRow>, Error> {
    let rows = match resource {
        None => {
            sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }
        Some(r) => {
            // The resource itself and everything under it (a runtime's endpoints).
            sqlx::query(
                "SELECT * FROM audit_log WHERE (resource = $1 OR substr(resource, 1, length($1) + 1) = $1 || '/') \
                 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(r)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(audit_row).collect()
}

pub(crate) async fn audit_head(pool: &SqlitePool) -> Result<Option<(i64, String)>, Error> {
    Ok(
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(pool)
            .await?,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::traffic::ChainCheck;
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
