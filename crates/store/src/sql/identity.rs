//! [`IdentityStore`](crate::identity::IdentityStore) for every backend: `identity_sql!(Store,
//! Database)` (see [`crate::sql`]).

/// The shared implementation, as a module `sql` of the invoking backend module.
macro_rules! identity_sql {
    ($store:ty, $db:ty) => {
        mod sql {
            use crate::cols::json_col;
            use crate::identity::*;
            use crate::Error;
            use async_trait::async_trait;
            use berth_types::EpochMillis;
            use sqlx::Row;

            fn identity_row(r: &<$db as sqlx::Database>::Row) -> Result<IdentityRow, Error> {
                Ok(IdentityRow {
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    spec: json_col(r, "spec", "identity_resources")?,
                    secret: r.try_get("secret")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            #[async_trait]
            impl IdentityStore for $store {
                async fn insert_identity(&self, r: &IdentityRow) -> Result<(), Error> {
                    let res = sqlx::query(
                        "INSERT INTO identity_resources (kind, name, spec, secret, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&r.kind)
                    .bind(&r.name)
                    .bind(r.spec.to_string())
                    .bind(r.secret.as_deref())
                    .bind(r.created_at)
                    .bind(r.updated_at)
                    .execute(self.writer())
                    .await;
                    match res {
                        Ok(_) => Ok(()),
                        Err(e) if crate::sql::unique_violation(&e) => {
                            Err(Error::AlreadyExists("identity resource name"))
                        }
                        Err(e) => Err(e.into()),
                    }
                }

                async fn update_identity(&self, r: &IdentityRow) -> Result<bool, Error> {
                    let n = sqlx::query(
                        "UPDATE identity_resources SET spec = $3, secret = $4, updated_at = $5 \
                         WHERE kind = $1 AND name = $2",
                    )
                    .bind(&r.kind)
                    .bind(&r.name)
                    .bind(r.spec.to_string())
                    .bind(r.secret.as_deref())
                    .bind(r.updated_at)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    Ok(n > 0)
                }

                async fn identity(&self, kind: &str, name: &str) -> Result<Option<IdentityRow>, Error> {
                    sqlx::query("SELECT * FROM identity_resources WHERE kind = $1 AND name = $2")
                        .bind(kind)
                        .bind(name)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(identity_row)
                        .transpose()
                }

                async fn list_identities(
                    &self,
                    kind: &str,
                    after: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<IdentityRow>, Error> {
                    sqlx::query(
                        "SELECT * FROM identity_resources WHERE kind = $1 AND name > $2 \
                         ORDER BY name LIMIT $3",
                    )
                    .bind(kind)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(identity_row)
                    .collect()
                }

                async fn delete_identity(&self, kind: &str, name: &str) -> Result<bool, Error> {
                    let mut tx = self.begin().await?;
                    let n = sqlx::query("DELETE FROM identity_resources WHERE kind = $1 AND name = $2")
                        .bind(kind)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query("DELETE FROM identity_token_cache WHERE provider = $1")
                        .bind(format!("{kind}/{name}"))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(n > 0)
                }

                async fn cached_token(
                    &self,
                    provider: &str,
                    key: &str,
                    now: EpochMillis,
                ) -> Result<Option<Vec<u8>>, Error> {
                    Ok(sqlx::query(
                        "SELECT sealed FROM identity_token_cache \
                         WHERE provider = $1 AND cache_key = $2 AND expires_at > $3",
                    )
                    .bind(provider)
                    .bind(key)
                    .bind(now)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|r| r.try_get("sealed"))
                    .transpose()?)
                }

                async fn put_cached_token(
                    &self,
                    provider: &str,
                    key: &str,
                    sealed: &[u8],
                    expires_at: EpochMillis,
                ) -> Result<(), Error> {
                    sqlx::query(
                        "INSERT INTO identity_token_cache (provider, cache_key, sealed, expires_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (provider, cache_key) DO UPDATE \
                         SET sealed = excluded.sealed, expires_at = excluded.expires_at",
                    )
                    .bind(provider)
                    .bind(key)
                    .bind(sealed)
                    .bind(expires_at)
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn clear_cached_tokens(&self, provider: &str) -> Result<(), Error> {
                    sqlx::query("DELETE FROM identity_token_cache WHERE provider = $1")
                        .bind(provider)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }

                async fn delete_identities_before(
                    &self,
                    kind: &str,
                    before: EpochMillis,
                ) -> Result<u64, Error> {
                    Ok(
                        sqlx::query("DELETE FROM identity_resources WHERE kind = $1 AND updated_at < $2")
                            .bind(kind)
                            .bind(before)
                            .execute(self.writer())
                            .await?
                            .rows_affected(),
                    )
                }
            }
        }
    };
}
pub(crate) use identity_sql;
