//! [`NodeStore`](crate::nodes::NodeStore) for every backend: `nodes_sql!(Store, Database)` (see
//! [`crate::sql`]).

/// The shared implementation, as a module `sql` of the invoking backend module.
macro_rules! nodes_sql {
    ($store:ty, $db:ty) => {
        mod sql {
            use crate::nodes::*;
            use crate::Error;
            use async_trait::async_trait;
            use berth_types::EpochMillis;
            use sqlx::Row;

            fn node_row(r: &<$db as sqlx::Database>::Row) -> Result<NodeRow, Error> {
                Ok(NodeRow {
                    id: r.try_get("id")?,
                    address: r.try_get("address")?,
                    started_at: r.try_get("started_at")?,
                    seen_at: r.try_get("seen_at")?,
                    lease_until: r.try_get("lease_until")?,
                    draining: r.try_get::<i64, _>("draining")? != 0,
                })
            }

            const OWNER: &str = "SELECT n.id, n.address, n.started_at, n.seen_at, n.lease_until, n.draining \
                 FROM session_owners o JOIN nodes n ON n.id = o.node_id \
                 WHERE o.runtime_id = $1 AND o.session_id = $2";

            const NODE_COLS: &str = "id, address, started_at, seen_at, lease_until, draining";

            #[async_trait]
            impl NodeStore for $store {
                async fn register_node(&self, node: &NodeRow) -> Result<(), Error> {
                    sqlx::query(
                        "INSERT INTO nodes (id, address, started_at, seen_at, lease_until, draining) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (id) DO UPDATE SET address = excluded.address, \
                             started_at = excluded.started_at, seen_at = excluded.seen_at, \
                             lease_until = excluded.lease_until, draining = excluded.draining",
                    )
                    .bind(&node.id)
                    .bind(&node.address)
                    .bind(node.started_at)
                    .bind(node.seen_at)
                    .bind(node.lease_until)
                    .bind(i64::from(node.draining))
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn renew_node(
                    &self,
                    id: &str,
                    now: EpochMillis,
                    until: EpochMillis,
                ) -> Result<Option<NodeRow>, Error> {
                    sqlx::query(&format!(
                        "UPDATE nodes SET seen_at = $2, lease_until = $3 WHERE id = $1 RETURNING {NODE_COLS}"
                    ))
                    .bind(id)
                    .bind(now)
                    .bind(until)
                    .fetch_optional(self.writer())
                    .await?
                    .as_ref()
                    .map(node_row)
                    .transpose()
                }

                async fn node(&self, id: &str) -> Result<Option<NodeRow>, Error> {
                    sqlx::query(&format!("SELECT {NODE_COLS} FROM nodes WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(node_row)
                        .transpose()
                }

                async fn nodes(&self) -> Result<Vec<NodeRow>, Error> {
                    sqlx::query(&format!("SELECT {NODE_COLS} FROM nodes ORDER BY id"))
                        .fetch_all(self.reader())
                        .await?
                        .iter()
                        .map(node_row)
                        .collect()
                }

                async fn set_draining(&self, id: &str, draining: bool) -> Result<bool, Error> {
                    let n = sqlx::query("UPDATE nodes SET draining = $2 WHERE id = $1")
                        .bind(id)
                        .bind(i64::from(draining))
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    Ok(n > 0)
                }

                async fn leave(&self, id: &str, now: EpochMillis) -> Result<(), Error> {
                    let mut tx = self.begin().await?;
                    sqlx::query("UPDATE nodes SET lease_until = $2, seen_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM session_owners WHERE node_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM leases WHERE holder = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn claim_session(
                    &self,
                    runtime_id: &str,
                    session_id: &str,
                    node_id: &str,
                    now: EpochMillis,
                    force: bool,
                ) -> Result<Claim, Error> {
                    // The update happens only when the row is ours, forced, or its node is not alive: the
                    // decision and the write are one statement under the database's write lock.
                    let mut tx = self.begin().await?;
                    let taken = sqlx::query(
                        "INSERT INTO session_owners (runtime_id, session_id, node_id, claimed_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (runtime_id, session_id) DO UPDATE SET \
                             node_id = excluded.node_id, claimed_at = excluded.claimed_at \
                         WHERE session_owners.node_id = excluded.node_id OR $5 <> 0 OR NOT EXISTS ( \
                             SELECT 1 FROM nodes n WHERE n.id = session_owners.node_id AND n.lease_until > $4)",
                    )
                    .bind(runtime_id)
                    .bind(session_id)
                    .bind(node_id)
                    .bind(now)
                    .bind(i64::from(force))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if taken > 0 {
                        tx.commit().await?;
                        return Ok(Claim::Mine);
                    }
                    let owner = sqlx::query(OWNER)
                        .bind(runtime_id)
                        .bind(session_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Claim::Owner(node_row(&owner)?))
                }

                async fn session_owner(
                    &self,
                    runtime_id: &str,
                    session_id: &str,
                ) -> Result<Option<NodeRow>, Error> {
                    sqlx::query(OWNER)
                        .bind(runtime_id)
                        .bind(session_id)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(node_row)
                        .transpose()
                }

                async fn release_session(
                    &self,
                    runtime_id: &str,
                    session_id: &str,
                    node_id: &str,
                ) -> Result<(), Error> {
                    sqlx::query(
                        "DELETE FROM session_owners WHERE runtime_id = $1 AND session_id = $2 AND node_id = $3",
                    )
                    .bind(runtime_id)
                    .bind(session_id)
                    .bind(node_id)
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn acquire_lease(
                    &self,
                    name: &str,
                    holder: &str,
                    now: EpochMillis,
                    until: EpochMillis,
                ) -> Result<bool, Error> {
                    let n = sqlx::query(
                        "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                         WHERE leases.holder = excluded.holder OR leases.until <= $3",
                    )
                    .bind(name)
                    .bind(holder)
                    .bind(now)
                    .bind(until)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    Ok(n > 0)
                }

                async fn release_lease(&self, name: &str, holder: &str) -> Result<(), Error> {
                    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                        .bind(name)
                        .bind(holder)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }

                async fn leases(&self) -> Result<Vec<LeaseRow>, Error> {
                    sqlx::query("SELECT name, holder, until FROM leases ORDER BY name")
                        .fetch_all(self.reader())
                        .await?
                        .iter()
                        .map(|r| {
                            Ok(LeaseRow {
                                name: r.try_get("name")?,
                                holder: r.try_get("holder")?,
                                until: r.try_get("until")?,
                            })
                        })
                        .collect()
                }
            }
        }
    };
}
pub(crate) use nodes_sql;
