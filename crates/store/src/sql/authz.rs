//! The SQL of roles, access keys and resource policies (rows in [`crate::authz`]) for every
//! backend: `authz_sql!(Store, Database)` (see [`crate::sql`]).

/// The shared implementation, as a module `sql` of the invoking backend module.
macro_rules! authz_sql {
    ($store:ty, $db:ty) => {
        mod sql {
            use crate::cols::corrupt;
            use crate::Error;
            use crate::authz::{AccessKeyRow, ResourcePolicyRow, RoleRow};
            use berth_types::EpochMillis;
            use sqlx::Row;

            fn role_row(r: &<$db as sqlx::Database>::Row) -> Result<RoleRow, Error> {
                let policies: String = r.try_get("policies")?;
                Ok(RoleRow {
                    name: r.try_get("name")?,
                    arn: r.try_get("arn")?,
                    policies: serde_json::from_str(&policies).map_err(|e| corrupt("roles", e))?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            fn key_row(r: &<$db as sqlx::Database>::Row) -> Result<AccessKeyRow, Error> {
                let policy: String = r.try_get("policy")?;
                let status: String = r.try_get("status")?;
                Ok(AccessKeyRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    policy: serde_json::from_str(&policy).map_err(|e| corrupt("access_keys", e))?,
                    active: match status.as_str() {
                        "Active" => true,
                        "Inactive" => false,
                        other => return Err(corrupt("access_keys", format!("unknown status {other:?}"))),
                    },
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            }

            pub(crate) async fn put_role(tx: &mut <$db as sqlx::Database>::Connection, r: &RoleRow) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO roles (name, arn, policies, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (name) DO UPDATE SET arn = excluded.arn, policies = excluded.policies, \
                     updated_at = excluded.updated_at",
                )
                .bind(&r.name)
                .bind(&r.arn)
                .bind(serde_json::Value::from(r.policies.clone()).to_string())
                .bind(r.created_at)
                .bind(r.updated_at)
                .execute(tx)
                .await?;
                Ok(())
            }

            pub(crate) async fn delete_role(tx: &mut <$db as sqlx::Database>::Connection, name: &str) -> Result<(), Error> {
                sqlx::query("DELETE FROM roles WHERE name = $1")
                    .bind(name)
                    .execute(tx)
                    .await?;
                Ok(())
            }

            pub(crate) async fn insert_key(tx: &mut <$db as sqlx::Database>::Connection, k: &AccessKeyRow) -> Result<(), Error> {
                let res = sqlx::query(
                    "INSERT INTO access_keys (id, name, policy, status, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&k.id)
                .bind(&k.name)
                .bind(k.policy.to_string())
                .bind(if k.active { "Active" } else { "Inactive" })
                .bind(k.created_at)
                .bind(k.revoked_at)
                .execute(tx)
                .await;
                match res {
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        Err(Error::AlreadyExists("access key"))
                    }
                    other => other.map(drop).map_err(Error::from),
                }
            }

            pub(crate) async fn revoke_key(
                tx: &mut <$db as sqlx::Database>::Connection,
                id: &str,
                at: EpochMillis,
            ) -> Result<(), Error> {
                sqlx::query(
                    "UPDATE access_keys SET status = 'Inactive', revoked_at = $2 WHERE id = $1 AND status = 'Active'",
                )
                .bind(id)
                .bind(at)
                .execute(tx)
                .await?;
                Ok(())
            }

            pub(crate) async fn role(pool: &sqlx::Pool<$db>, name: &str) -> Result<Option<RoleRow>, Error> {
                sqlx::query("SELECT * FROM roles WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
                    .as_ref()
                    .map(role_row)
                    .transpose()
            }

            pub(crate) async fn roles(pool: &sqlx::Pool<$db>) -> Result<Vec<RoleRow>, Error> {
                sqlx::query("SELECT * FROM roles ORDER BY name")
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(role_row)
                    .collect()
            }

            pub(crate) async fn access_key(pool: &sqlx::Pool<$db>, id: &str) -> Result<Option<AccessKeyRow>, Error> {
                sqlx::query("SELECT * FROM access_keys WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .as_ref()
                    .map(key_row)
                    .transpose()
            }

            pub(crate) async fn access_keys(pool: &sqlx::Pool<$db>) -> Result<Vec<AccessKeyRow>, Error> {
                sqlx::query("SELECT * FROM access_keys ORDER BY created_at, id")
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(key_row)
                    .collect()
            }

            pub(crate) async fn put_resource_policy(
                tx: &mut <$db as sqlx::Database>::Connection,
                r: &ResourcePolicyRow,
            ) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO resource_policies (resource_arn, policy, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (resource_arn) DO UPDATE SET policy = excluded.policy, \
                     updated_at = excluded.updated_at",
                )
                .bind(&r.resource_arn)
                .bind(&r.policy)
                .bind(r.updated_at)
                .execute(tx)
                .await?;
                Ok(())
            }

            pub(crate) async fn delete_resource_policy(
                tx: &mut <$db as sqlx::Database>::Connection,
                arn: &str,
                children: bool,
            ) -> Result<(), Error> {
                if children {
                    // `LIKE` with the ARN's own `_`/`%` escaped, so only ARNs under this one match.
                    let escaped = arn
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    sqlx::query(
                        "DELETE FROM resource_policies WHERE resource_arn = $1 \
                         OR resource_arn LIKE $2 ESCAPE '\\'",
                    )
                    .bind(arn)
                    .bind(format!("{escaped}/%"))
                    .execute(tx)
                    .await?;
                } else {
                    sqlx::query("DELETE FROM resource_policies WHERE resource_arn = $1")
                        .bind(arn)
                        .execute(tx)
                        .await?;
                }
                Ok(())
            }

            pub(crate) async fn resource_policy(
                pool: &sqlx::Pool<$db>,
                arn: &str,
            ) -> Result<Option<ResourcePolicyRow>, Error> {
                let Some(r) = sqlx::query("SELECT * FROM resource_policies WHERE resource_arn = $1")
                    .bind(arn)
                    .fetch_optional(pool)
                    .await?
                else {
                    return Ok(None);
                };
                Ok(Some(ResourcePolicyRow {
                    resource_arn: r.try_get("resource_arn")?,
                    policy: r.try_get("policy")?,
                    updated_at: r.try_get("updated_at")?,
                }))
            }
        }
    };
}
pub(crate) use authz_sql;
