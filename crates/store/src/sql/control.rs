//! [`ControlStore`](crate::ControlStore) for every backend: `control_sql!(Store, Database)` (see
//! [`crate::sql`]). Traffic and authorization writes call the backend's `traffic` and `authz`
//! modules (the shared SQL of [`crate::sql::traffic`] and [`crate::sql::authz`]).

/// The shared implementation, as a module `sql` of the invoking backend module.
macro_rules! control_sql {
    ($store:ty, $db:ty) => {
        mod sql {
            use crate::cols::{endpoint_row, idempotency_row, runtime_row, version_row};
            use crate::{
                AccessKeyRow, AssignmentRow, AuditRow, ControlStore, DrainRow, Error, HealthRow,
                Idempotency, PolicyRow, ResourcePolicyRow, RoleRow, RolloutRow, RuntimeCursor,
                Write,
            };
            use async_trait::async_trait;
            use berth_types::EpochMillis;
            use berth_types::records::{Endpoint, Runtime, RuntimeVersion};

            const INSERT_ENDPOINT: &str = "INSERT INTO endpoints (runtime_id, name, id, description, \
                live_version, target_version, status, failure_reason, created_at, updated_at) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
            const PUT_ENDPOINT: &str = "INSERT INTO endpoints (runtime_id, name, id, description, \
                live_version, target_version, status, failure_reason, created_at, updated_at) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                ON CONFLICT (runtime_id, name) DO UPDATE SET id = excluded.id, \
                description = excluded.description, live_version = excluded.live_version, \
                target_version = excluded.target_version, status = excluded.status, \
                failure_reason = excluded.failure_reason, created_at = excluded.created_at, \
                updated_at = excluded.updated_at";

            async fn write_endpoint(
                tx: &mut <$db as sqlx::Database>::Connection,
                sql: &str,
                e: &Endpoint,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(sql)
                    .bind(&e.runtime_id)
                    .bind(&e.name)
                    .bind(&e.id)
                    .bind(&e.description)
                    .bind(e.live_version.map(i64::from))
                    .bind(e.target_version.map(i64::from))
                    .bind(e.status.as_str())
                    .bind(&e.failure_reason)
                    .bind(e.created_at)
                    .bind(e.updated_at)
                    .execute(tx)
                    .await
                    .map(drop)
            }

            #[async_trait]
            impl ControlStore for $store {
                async fn apply(&self, writes: Vec<Write>) -> Result<(), Error> {
                    let mut tx = self.begin().await?;
                    for w in &writes {
                        match w {
                            Write::InsertRuntime(r) => {
                                let res = sqlx::query(
                                    "INSERT INTO runtimes (id, name, latest_version, deleting, created_at, updated_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6)",
                                )
                                .bind(&r.id)
                                .bind(&r.name)
                                .bind(i64::from(r.latest_version))
                                .bind(i64::from(r.deleting))
                                .bind(r.created_at)
                                .bind(r.updated_at)
                                .execute(&mut *tx)
                                .await;
                                if let Err(e) = &res
                                    && crate::sql::unique_violation(e)
                                {
                                    return Err(Error::AlreadyExists("runtime name"));
                                }
                                res?;
                            }
                            Write::UpdateRuntime {
                                runtime: r,
                                expect_latest,
                            } => {
                                let n = sqlx::query(
                                    "UPDATE runtimes SET latest_version = $1, deleting = $2, updated_at = $3 \
                                     WHERE id = $4 AND latest_version = $5",
                                )
                                .bind(i64::from(r.latest_version))
                                .bind(i64::from(r.deleting))
                                .bind(r.updated_at)
                                .bind(&r.id)
                                .bind(i64::from(*expect_latest))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                                if n != 1 {
                                    return Err(Error::Precondition("runtime"));
                                }
                            }
                            Write::PutVersion(v) => {
                                sqlx::query(
                                    "INSERT INTO runtime_versions (runtime_id, version, spec, status, \
                                     failure_reason, artifact_digest, created_at, updated_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                                     ON CONFLICT (runtime_id, version) DO UPDATE SET spec = excluded.spec, \
                                     status = excluded.status, failure_reason = excluded.failure_reason, \
                                     artifact_digest = excluded.artifact_digest, \
                                     created_at = excluded.created_at, updated_at = excluded.updated_at",
                                )
                                .bind(&v.runtime_id)
                                .bind(i64::from(v.version))
                                .bind(v.spec.to_string())
                                .bind(v.status.as_str())
                                .bind(&v.failure_reason)
                                .bind(&v.artifact_digest)
                                .bind(v.created_at)
                                .bind(v.updated_at)
                                .execute(&mut *tx)
                                .await?;
                            }
                            Write::InsertEndpoint(e) => {
                                if let Err(err) = write_endpoint(&mut tx, INSERT_ENDPOINT, e).await {
                                    if crate::sql::unique_violation(&err) {
                                        return Err(Error::AlreadyExists("endpoint name"));
                                    }
                                    return Err(err.into());
                                }
                            }
                            Write::PutEndpoint(e) => write_endpoint(&mut tx, PUT_ENDPOINT, e).await?,
                            Write::DeleteEndpoint { runtime_id, name } => {
                                sqlx::query("DELETE FROM endpoints WHERE runtime_id = $1 AND name = $2")
                                    .bind(runtime_id)
                                    .bind(name)
                                    .execute(&mut *tx)
                                    .await?;
                                super::traffic::forget_endpoint(&mut tx, runtime_id, name).await?;
                            }
                            Write::DeleteVersion {
                                runtime_id,
                                version,
                            } => {
                                sqlx::query(
                                    "DELETE FROM runtime_versions WHERE runtime_id = $1 AND version = $2",
                                )
                                .bind(runtime_id)
                                .bind(i64::from(*version))
                                .execute(&mut *tx)
                                .await?;
                                super::traffic::forget_version(&mut tx, runtime_id, *version).await?;
                            }
                            Write::DeleteRuntime { runtime_id, arn } => {
                                sqlx::query("DELETE FROM tags WHERE resource_arn = $1 OR resource_arn LIKE $2")
                                    .bind(arn)
                                    .bind(format!("{arn}/%"))
                                    .execute(&mut *tx)
                                    .await?;
                                super::authz::delete_resource_policy(&mut tx, arn, true).await?;
                                sqlx::query("DELETE FROM runtimes WHERE id = $1")
                                    .bind(runtime_id)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            Write::PutTags { arn, tags } => {
                                for (k, v) in tags {
                                    sqlx::query(
                                        "INSERT INTO tags (resource_arn, key, value) VALUES ($1, $2, $3) \
                                         ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value",
                                    )
                                    .bind(arn)
                                    .bind(k)
                                    .bind(v)
                                    .execute(&mut *tx)
                                    .await?;
                                }
                            }
                            Write::RemoveTags { arn, keys } => {
                                for k in keys {
                                    sqlx::query("DELETE FROM tags WHERE resource_arn = $1 AND key = $2")
                                        .bind(arn)
                                        .bind(k)
                                        .execute(&mut *tx)
                                        .await?;
                                }
                            }
                            Write::PutIdempotency(i) => {
                                let res = sqlx::query(
                                    "INSERT INTO idempotency (operation, token, request_hash, response, created_at) \
                                     VALUES ($1, $2, $3, $4, $5)",
                                )
                                .bind(&i.operation)
                                .bind(&i.token)
                                .bind(&i.request_hash)
                                .bind(i.response.to_string())
                                .bind(i.created_at)
                                .execute(&mut *tx)
                                .await;
                                if let Err(e) = &res
                                    && crate::sql::unique_violation(e)
                                {
                                    return Err(Error::AlreadyExists("client token"));
                                }
                                res?;
                            }
                            Write::PutPolicy(p) => super::traffic::put_policy(&mut tx, p).await?,
                            Write::PutAssignment {
                                assignment,
                                replace,
                            } => super::traffic::put_assignment(&mut tx, assignment, *replace).await?,
                            Write::DeleteAssignments {
                                runtime_id,
                                endpoint,
                                version,
                            } => super::traffic::delete_assignments(&mut tx, runtime_id, endpoint, *version).await?,
                            Write::ExpireAssignments { before } => {
                                super::traffic::expire_assignments(&mut tx, *before).await?
                            }
                            Write::PutDrain(d) => super::traffic::put_drain(&mut tx, d).await?,
                            Write::DeleteDrain {
                                runtime_id,
                                endpoint,
                                version,
                            } => super::traffic::delete_drain(&mut tx, runtime_id, endpoint, *version).await?,
                            Write::InsertRollout(r) => super::traffic::write_rollout(&mut tx, r, true).await?,
                            Write::PutRollout(r) => super::traffic::write_rollout(&mut tx, r, false).await?,
                            Write::UpdateRollout { rollout, expect } => {
                                super::traffic::update_rollout(&mut tx, rollout, expect).await?
                            }
                            Write::AddHealth(h) => super::traffic::add_health(&mut tx, h).await?,
                            Write::PruneHealth { before } => super::traffic::prune_health(&mut tx, *before).await?,
                            Write::AppendAudit(a) => super::traffic::append_audit(&mut tx, a).await?,
                            Write::PutRole(r) => super::authz::put_role(&mut tx, r).await?,
                            Write::DeleteRole { name } => super::authz::delete_role(&mut tx, name).await?,
                            Write::InsertAccessKey(k) => super::authz::insert_key(&mut tx, k).await?,
                            Write::RevokeAccessKey { id, at } => super::authz::revoke_key(&mut tx, id, *at).await?,
                            Write::PutResourcePolicy(r) => super::authz::put_resource_policy(&mut tx, r).await?,
                            Write::DeleteResourcePolicy { arn, children } => {
                                super::authz::delete_resource_policy(&mut tx, arn, *children).await?
                            }
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn runtime(&self, id: &str) -> Result<Option<Runtime>, Error> {
                    sqlx::query("SELECT * FROM runtimes WHERE id = $1")
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(runtime_row)
                        .transpose()
                }

                async fn list_runtimes(
                    &self,
                    after: Option<&RuntimeCursor>,
                    limit: u32,
                ) -> Result<Vec<Runtime>, Error> {
                    let rows = match after {
                        None => sqlx::query("SELECT * FROM runtimes ORDER BY created_at, id LIMIT $1")
                            .bind(i64::from(limit))
                            .fetch_all(self.reader())
                            .await?,
                        Some(c) => sqlx::query(
                            "SELECT * FROM runtimes WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT $3",
                        )
                        .bind(c.created_at)
                        .bind(&c.id)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await?,
                    };
                    rows.iter().map(runtime_row).collect()
                }

                async fn version(
                    &self,
                    runtime_id: &str,
                    version: u32,
                ) -> Result<Option<RuntimeVersion>, Error> {
                    sqlx::query("SELECT * FROM runtime_versions WHERE runtime_id = $1 AND version = $2")
                        .bind(runtime_id)
                        .bind(i64::from(version))
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(version_row)
                        .transpose()
                }

                async fn list_versions(
                    &self,
                    runtime_id: &str,
                    below: Option<u32>,
                    limit: u32,
                ) -> Result<Vec<RuntimeVersion>, Error> {
                    let rows = sqlx::query(
                        "SELECT * FROM runtime_versions WHERE runtime_id = $1 AND version < $2 \
                         ORDER BY version DESC LIMIT $3",
                    )
                    .bind(runtime_id)
                    .bind(below.map_or(i64::MAX, i64::from))
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter().map(version_row).collect()
                }

                async fn unfinished_versions(&self) -> Result<Vec<RuntimeVersion>, Error> {
                    let rows = sqlx::query(
                        "SELECT * FROM runtime_versions WHERE status IN ('CREATING', 'UPDATING') \
                         ORDER BY created_at",
                    )
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter().map(version_row).collect()
                }

                async fn deleting_runtimes(&self) -> Result<Vec<String>, Error> {
                    Ok(
                        sqlx::query_scalar("SELECT id FROM runtimes WHERE deleting = 1")
                            .fetch_all(self.reader())
                            .await?,
                    )
                }

                async fn endpoint(&self, runtime_id: &str, name: &str) -> Result<Option<Endpoint>, Error> {
                    sqlx::query("SELECT * FROM endpoints WHERE runtime_id = $1 AND name = $2")
                        .bind(runtime_id)
                        .bind(name)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(endpoint_row)
                        .transpose()
                }

                async fn list_endpoints(
                    &self,
                    runtime_id: &str,
                    after: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<Endpoint>, Error> {
                    let rows = sqlx::query(
                        "SELECT * FROM endpoints WHERE runtime_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                    )
                    .bind(runtime_id)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter().map(endpoint_row).collect()
                }

                async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, Error> {
                    Ok(
                        sqlx::query_as("SELECT key, value FROM tags WHERE resource_arn = $1 ORDER BY key")
                            .bind(arn)
                            .fetch_all(self.reader())
                            .await?,
                    )
                }

                async fn idempotency(
                    &self,
                    operation: &str,
                    token: &str,
                ) -> Result<Option<Idempotency>, Error> {
                    sqlx::query(
                        "SELECT request_hash, response, created_at FROM idempotency WHERE operation = $1 AND token = $2",
                    )
                    .bind(operation)
                    .bind(token)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|r| idempotency_row(&r, operation, token))
                    .transpose()
                }

                async fn policy(&self, runtime_id: &str, endpoint: &str) -> Result<Option<PolicyRow>, Error> {
                    super::traffic::policy(self.reader(), runtime_id, endpoint).await
                }

                async fn assignment(
                    &self,
                    runtime_id: &str,
                    session_id: &str,
                ) -> Result<Option<AssignmentRow>, Error> {
                    super::traffic::assignment(self.reader(), runtime_id, session_id).await
                }

                async fn assignment_counts(
                    &self,
                    runtime_id: &str,
                    endpoint: &str,
                ) -> Result<Vec<(u32, u64)>, Error> {
                    super::traffic::assignment_counts(self.reader(), runtime_id, endpoint).await
                }

                async fn drains(&self, runtime_id: &str, endpoint: &str) -> Result<Vec<DrainRow>, Error> {
                    super::traffic::drains(self.reader(), runtime_id, endpoint).await
                }

                async fn expired_drains(&self, now: EpochMillis) -> Result<Vec<DrainRow>, Error> {
                    super::traffic::expired_drains(self.reader(), now).await
                }

                async fn rollout(&self, id: &str) -> Result<Option<RolloutRow>, Error> {
                    super::traffic::rollout(self.reader(), id).await
                }

                async fn active_rollouts(&self) -> Result<Vec<RolloutRow>, Error> {
                    super::traffic::active_rollouts(self.reader()).await
                }

                async fn rollouts(
                    &self,
                    runtime_id: &str,
                    endpoint: &str,
                    limit: u32,
                ) -> Result<Vec<RolloutRow>, Error> {
                    super::traffic::rollouts(self.reader(), runtime_id, endpoint, limit).await
                }

                async fn health(
                    &self,
                    runtime_id: &str,
                    endpoint: &str,
                    from: EpochMillis,
                    to: EpochMillis,
                ) -> Result<Vec<HealthRow>, Error> {
                    super::traffic::health(self.reader(), runtime_id, endpoint, from, to).await
                }

                async fn audit(
                    &self,
                    resource: Option<&str>,
                    after_seq: i64,
                    limit: u32,
                ) -> Result<Vec<AuditRow>, Error> {
                    super::traffic::audit(self.reader(), resource, after_seq, limit).await
                }

                async fn audit_head(&self) -> Result<Option<(i64, String)>, Error> {
                    super::traffic::audit_head(self.reader()).await
                }

                async fn role(&self, name: &str) -> Result<Option<RoleRow>, Error> {
                    super::authz::role(self.reader(), name).await
                }

                async fn roles(&self) -> Result<Vec<RoleRow>, Error> {
                    super::authz::roles(self.reader()).await
                }

                async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRow>, Error> {
                    super::authz::access_key(self.reader(), id).await
                }

                async fn access_keys(&self) -> Result<Vec<AccessKeyRow>, Error> {
                    super::authz::access_keys(self.reader()).await
                }

                async fn resource_policy(&self, arn: &str) -> Result<Option<ResourcePolicyRow>, Error> {
                    super::authz::resource_policy(self.reader(), arn).await
                }
            }
        }
    };
}
pub(crate) use control_sql;
