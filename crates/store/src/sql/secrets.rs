//! [`SecretStore`](crate::secrets::SecretStore) for every backend: `secrets_sql!(Store, Database)`
//! (see [`crate::sql`]).

/// The shared implementation, as a module `sql` of the invoking backend module.
macro_rules! secrets_sql {
    ($store:ty, $db:ty) => {
        mod sql {
            use crate::Error;
            use crate::secrets::*;
            use async_trait::async_trait;
            use berth_types::EpochMillis;
            use sqlx::Row;

            fn secret_row(r: &<$db as sqlx::Database>::Row) -> Result<SecretRow, Error> {
                let version: i64 = r.try_get("version")?;
                Ok(SecretRow {
                    name: r.try_get("name")?,
                    version: u64::try_from(version).map_err(|_| Error::Corrupt {
                        table: "secrets",
                        detail: format!("negative version {version}"),
                    })?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            #[async_trait]
            impl SecretStore for $store {
                async fn put_secret(
                    &self,
                    name: &str,
                    sealed: &[u8],
                    now: EpochMillis,
                ) -> Result<SecretRow, Error> {
                    // One statement: the version bump cannot interleave with another writer's. A tombstone
                    // (sealed NULL) is created again: a new creation time, the version goes on climbing.
                    let r = sqlx::query(
                        "INSERT INTO secrets (name, version, sealed, created_at, updated_at) \
                         VALUES ($1, 1, $2, $3, $3) \
                         ON CONFLICT (name) DO UPDATE SET \
                             version = secrets.version + 1, \
                             sealed = excluded.sealed, \
                             created_at = CASE WHEN secrets.sealed IS NULL \
                                 THEN excluded.created_at ELSE secrets.created_at END, \
                             updated_at = excluded.updated_at \
                         RETURNING name, version, created_at, updated_at",
                    )
                    .bind(name)
                    .bind(sealed)
                    .bind(now)
                    .fetch_one(self.writer())
                    .await?;
                    secret_row(&r)
                }

                async fn secret(&self, name: &str) -> Result<Option<SealedSecret>, Error> {
                    let Some(r) = sqlx::query(
                        "SELECT name, version, sealed, created_at, updated_at FROM secrets \
                         WHERE name = $1 AND sealed IS NOT NULL",
                    )
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?
                    else {
                        return Ok(None);
                    };
                    Ok(Some(SealedSecret {
                        row: secret_row(&r)?,
                        sealed: r.try_get("sealed")?,
                    }))
                }

                async fn list_secrets(&self, prefix: &str) -> Result<Vec<SecretRow>, Error> {
                    // `substr`, not LIKE: names may hold `_`, which LIKE would read as a wildcard.
                    sqlx::query(
                        "SELECT name, version, created_at, updated_at FROM secrets \
                         WHERE sealed IS NOT NULL AND substr(name, 1, length($1)) = $1 \
                         ORDER BY name",
                    )
                    .bind(prefix)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(secret_row)
                    .collect()
                }

                async fn delete_secret(&self, name: &str, now: EpochMillis) -> Result<bool, Error> {
                    let n = sqlx::query(
                        "UPDATE secrets SET sealed = NULL, updated_at = $2 \
                         WHERE name = $1 AND sealed IS NOT NULL",
                    )
                    .bind(name)
                    .bind(now)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    Ok(n > 0)
                }
            }
        }
    };
}
pub(crate) use secrets_sql;
