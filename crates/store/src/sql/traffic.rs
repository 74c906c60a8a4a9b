//! The SQL of the traffic layer and the audit log (rows in [`crate::traffic`]) for every backend:
//! `traffic_sql!(Store, Database)` (see [`crate::sql`]).

/// The shared implementation, as a module `sql` of the invoking backend module. Dialect:
/// `merge_counts` is the SQL expression adding the stored latency histogram
/// (`health_buckets.latency_counts`) and the new one (`excluded.latency_counts`), JSON arrays
/// summed index by index, the longer one kept; `audit_lock` a statement run before the audit head
/// is read, serialising appenders (empty on SQLite, whose write transactions hold the lock).
macro_rules! traffic_sql {
    ($store:ty, $db:ty, merge_counts: $merge_counts:literal, audit_lock: $audit_lock:literal) => {
        mod sql {
            use crate::cols::{corrupt, json_col};
            use crate::traffic::{
                AssignmentRow, AuditRecord, AuditRow, DrainRow, GENESIS_HASH, HealthRow, PolicyRow, RolloutRow,
                audit_hash, canonical_json,
            };
            use crate::{Error, RolloutGuard};
            use berth_types::EpochMillis;
            use serde_json::Value;
            use sqlx::Row;

            fn u32_col(r: &<$db as sqlx::Database>::Row, col: &str) -> Result<u32, Error> {
                Ok(r.try_get::<i64, _>(col)? as u32)
            }

            fn u64_col(r: &<$db as sqlx::Database>::Row, col: &str) -> Result<u64, Error> {
                Ok(r.try_get::<i64, _>(col)?.max(0) as u64)
            }

            fn policy_row(r: &<$db as sqlx::Database>::Row) -> Result<PolicyRow, Error> {
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

            fn assignment_row(r: &<$db as sqlx::Database>::Row) -> Result<AssignmentRow, Error> {
                Ok(AssignmentRow {
                    runtime_id: r.try_get("runtime_id")?,
                    session_id: r.try_get("session_id")?,
                    endpoint: r.try_get("endpoint")?,
                    version: u32_col(r, "version")?,
                    created_at: r.try_get("created_at")?,
                })
            }

            fn drain_row(r: &<$db as sqlx::Database>::Row) -> Result<DrainRow, Error> {
                Ok(DrainRow {
                    runtime_id: r.try_get("runtime_id")?,
                    endpoint: r.try_get("endpoint")?,
                    version: u32_col(r, "version")?,
                    deadline: r.try_get("deadline")?,
                    created_at: r.try_get("created_at")?,
                })
            }

            fn rollout_row(r: &<$db as sqlx::Database>::Row) -> Result<RolloutRow, Error> {
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

            fn health_row(r: &<$db as sqlx::Database>::Row) -> Result<HealthRow, Error> {
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

            fn audit_row(r: &<$db as sqlx::Database>::Row) -> Result<AuditRow, Error> {
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

            pub(crate) async fn put_policy(tx: &mut <$db as sqlx::Database>::Connection, p: &PolicyRow) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO traffic_policies (runtime_id, endpoint, weights, rules, \
                     previous_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (runtime_id, endpoint) DO UPDATE SET weights = excluded.weights, \
                     rules = excluded.rules, previous_version = excluded.previous_version, \
                     updated_at = excluded.updated_at",
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
                tx: &mut <$db as sqlx::Database>::Connection,
                a: &AssignmentRow,
                replace: bool,
            ) -> Result<(), Error> {
                let on_conflict = if replace {
                    "DO UPDATE SET endpoint = excluded.endpoint, version = excluded.version, \
                     created_at = excluded.created_at"
                } else {
                    "DO NOTHING"
                };
                sqlx::query(&format!(
                    "INSERT INTO session_assignments (runtime_id, session_id, endpoint, version, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (runtime_id, session_id) {on_conflict}"
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
                tx: &mut <$db as sqlx::Database>::Connection,
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
                tx: &mut <$db as sqlx::Database>::Connection,
                before: EpochMillis,
            ) -> Result<(), Error> {
                sqlx::query("DELETE FROM session_assignments WHERE created_at < $1")
                    .bind(before)
                    .execute(tx)
                    .await?;
                Ok(())
            }

            pub(crate) async fn put_drain(tx: &mut <$db as sqlx::Database>::Connection, d: &DrainRow) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO drains (runtime_id, endpoint, version, deadline, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (runtime_id, endpoint, version) \
                     DO UPDATE SET deadline = excluded.deadline, created_at = excluded.created_at",
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
                tx: &mut <$db as sqlx::Database>::Connection,
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
                tx: &mut <$db as sqlx::Database>::Connection,
                r: &RolloutRow,
                insert: bool,
            ) -> Result<(), Error> {
                // A put replaces the row with its id; either way a second rollout in progress on
                // the endpoint violates `rollouts_active`.
                let on_conflict = if insert {
                    ""
                } else {
                    " ON CONFLICT (id) DO UPDATE SET runtime_id = excluded.runtime_id, \
                     endpoint = excluded.endpoint, from_version = excluded.from_version, \
                     to_version = excluded.to_version, state = excluded.state, \
                     step_index = excluded.step_index, step_started_at = excluded.step_started_at, \
                     spec = excluded.spec, analysis = excluded.analysis, reason = excluded.reason, \
                     created_by = excluded.created_by, created_at = excluded.created_at, \
                     updated_at = excluded.updated_at"
                };
                let res = sqlx::query(&format!(
                    "INSERT INTO rollouts (id, runtime_id, endpoint, from_version, to_version, state, \
                     step_index, step_started_at, spec, analysis, reason, created_by, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14){on_conflict}"
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
                tx: &mut <$db as sqlx::Database>::Connection,
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

            pub(crate) async fn add_health(tx: &mut <$db as sqlx::Database>::Connection, h: &HealthRow) -> Result<(), Error> {
                // One statement, so two writers adding to one bucket both count (no read-then-write): the
                // counters and the latency histogram (a JSON array, summed index by index, the longer one
                // kept) are added in SQL. Invocations recorded just before their runtime was deleted have
                // nowhere to go; the `EXISTS` drops them so one stale series cannot fail every later flush.
                let counts =
                    serde_json::to_string(&h.latency_counts).map_err(|e| corrupt("health_buckets", e))?;
                sqlx::query(concat!(
                    "INSERT INTO health_buckets (runtime_id, endpoint, version, bucket_start, \
                     invocations, errors_5xx, errors_424, timeouts, new_sessions, latency_sum_ms, latency_counts) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
                     WHERE EXISTS (SELECT 1 FROM runtimes WHERE id = $1) \
                     ON CONFLICT (runtime_id, endpoint, version, bucket_start) DO UPDATE SET \
                     invocations = health_buckets.invocations + excluded.invocations, \
                     errors_5xx = health_buckets.errors_5xx + excluded.errors_5xx, \
                     errors_424 = health_buckets.errors_424 + excluded.errors_424, \
                     timeouts = health_buckets.timeouts + excluded.timeouts, \
                     new_sessions = health_buckets.new_sessions + excluded.new_sessions, \
                     latency_sum_ms = health_buckets.latency_sum_ms + excluded.latency_sum_ms, \
                     latency_counts = ",
                    $merge_counts
                ))
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
                tx: &mut <$db as sqlx::Database>::Connection,
                before: EpochMillis,
            ) -> Result<(), Error> {
                sqlx::query("DELETE FROM health_buckets WHERE bucket_start < $1")
                    .bind(before)
                    .execute(tx)
                    .await?;
                Ok(())
            }

            pub(crate) async fn append_audit(tx: &mut <$db as sqlx::Database>::Connection, a: &AuditRecord) -> Result<(), Error> {
                if !$audit_lock.is_empty() {
                    sqlx::query($audit_lock).execute(&mut *tx).await?;
                }
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
                tx: &mut <$db as sqlx::Database>::Connection,
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
                tx: &mut <$db as sqlx::Database>::Connection,
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
                pool: &sqlx::Pool<$db>,
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
                pool: &sqlx::Pool<$db>,
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
                pool: &sqlx::Pool<$db>,
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
                pool: &sqlx::Pool<$db>,
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
                pool: &sqlx::Pool<$db>,
                now: EpochMillis,
            ) -> Result<Vec<DrainRow>, Error> {
                let rows = sqlx::query("SELECT * FROM drains WHERE deadline <= $1 ORDER BY deadline")
                    .bind(now)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(drain_row).collect()
            }

            pub(crate) async fn rollout(pool: &sqlx::Pool<$db>, id: &str) -> Result<Option<RolloutRow>, Error> {
                sqlx::query("SELECT * FROM rollouts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .as_ref()
                    .map(rollout_row)
                    .transpose()
            }

            pub(crate) async fn active_rollouts(pool: &sqlx::Pool<$db>) -> Result<Vec<RolloutRow>, Error> {
                let rows = sqlx::query(
                    "SELECT * FROM rollouts WHERE state IN ('RUNNING', 'PAUSED') ORDER BY created_at",
                )
                .fetch_all(pool)
                .await?;
                rows.iter().map(rollout_row).collect()
            }

            pub(crate) async fn rollouts(
                pool: &sqlx::Pool<$db>,
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
                pool: &sqlx::Pool<$db>,
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
                pool: &sqlx::Pool<$db>,
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

            pub(crate) async fn audit_head(pool: &sqlx::Pool<$db>) -> Result<Option<(i64, String)>, Error> {
                Ok(
                    sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                        .fetch_optional(pool)
                        .await?,
                )
            }
        }
    };
}
pub(crate) use traffic_sql;
