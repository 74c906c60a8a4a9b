//! [`EvalStore`](crate::eval::EvalStore) for every backend: `eval_sql!(Store, Database)` (see
//! [`crate::sql`]). Evaluators and online evaluation configs are kept alike (a row with a unique
//! name, paged in creation order, an idempotency token per write), so one set of statements,
//! parameterised by table, serves both.

use crate::Error;
use crate::cols::{Cols, json_col};
use crate::eval::{EvaluatorRow, OnlineConfigRow, TokenRow};

pub(crate) fn evaluator_row(r: &impl Cols) -> Result<EvaluatorRow, Error> {
    Ok(EvaluatorRow {
        id: r.text("id")?,
        name: r.text("name")?,
        level: r.text("level")?,
        status: r.text("status")?,
        spec: json_col(r, "spec", "evaluators")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(crate) fn online_config_row(r: &impl Cols) -> Result<OnlineConfigRow, Error> {
    Ok(OnlineConfigRow {
        id: r.text("id")?,
        name: r.text("name")?,
        status: r.text("status")?,
        execution_status: r.text("execution_status")?,
        failure_reason: r.opt_text("failure_reason")?,
        spec: json_col(r, "spec", "online_evaluation_configs")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(crate) fn token_row(r: &impl Cols) -> Result<TokenRow, Error> {
    Ok(TokenRow {
        operation: r.text("operation")?,
        token: r.text("token")?,
        request_hash: r.text("request_hash")?,
        response: json_col(r, "response", "eval_tokens")?,
        created_at: r.int("created_at")?,
    })
}

/// The shared implementation, as a module `sql` of the invoking backend module.
macro_rules! eval_sql {
    ($store:ty, $db:ty) => {
        mod sql {
            use crate::Error;
            use crate::eval::{EvalStore, EvaluatorRow, OnlineConfigRow, TokenRow};
            use crate::sql::eval::{evaluator_row, online_config_row, token_row};
            use crate::sql::or_exists;
            use async_trait::async_trait;
            use berth_types::EpochMillis;

            type Row = <$db as sqlx::Database>::Row;
            type Decode<T> = fn(&Row) -> Result<T, Error>;

            const EVALUATORS: &str = "evaluators";
            const CONFIGS: &str = "online_evaluation_configs";

            /// A row to write, with what its unique name is called in `AlreadyExists`.
            enum Written<'a> {
                Evaluator(&'a EvaluatorRow),
                Config(&'a OnlineConfigRow),
            }

            /// Inserts (or with `upsert` replaces, by id) a row and remembers `token`, in one
            /// transaction.
            async fn write(
                store: &$store,
                row: Written<'_>,
                upsert: bool,
                token: Option<&TokenRow>,
            ) -> Result<(), Error> {
                let mut tx = store.begin().await?;
                let (res, name) = match row {
                    Written::Evaluator(e) => {
                        let tail = if upsert {
                            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                             level = excluded.level, status = excluded.status, spec = excluded.spec, \
                             created_at = excluded.created_at, updated_at = excluded.updated_at"
                        } else {
                            ""
                        };
                        let res = sqlx::query(&format!(
                            "INSERT INTO evaluators (id, name, level, status, spec, created_at, \
                             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7){tail}"
                        ))
                        .bind(&e.id)
                        .bind(&e.name)
                        .bind(&e.level)
                        .bind(&e.status)
                        .bind(e.spec.to_string())
                        .bind(e.created_at)
                        .bind(e.updated_at)
                        .execute(&mut *tx)
                        .await;
                        (res, "evaluator name")
                    }
                    Written::Config(c) => {
                        let tail = if upsert {
                            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                             status = excluded.status, execution_status = excluded.execution_status, \
                             failure_reason = excluded.failure_reason, spec = excluded.spec, \
                             created_at = excluded.created_at, updated_at = excluded.updated_at"
                        } else {
                            ""
                        };
                        let res = sqlx::query(&format!(
                            "INSERT INTO online_evaluation_configs (id, name, status, \
                             execution_status, failure_reason, spec, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8){tail}"
                        ))
                        .bind(&c.id)
                        .bind(&c.name)
                        .bind(&c.status)
                        .bind(&c.execution_status)
                        .bind(&c.failure_reason)
                        .bind(c.spec.to_string())
                        .bind(c.created_at)
                        .bind(c.updated_at)
                        .execute(&mut *tx)
                        .await;
                        (res, "online evaluation config name")
                    }
                };
                or_exists(res, name)?;
                if let Some(t) = token {
                    let res = sqlx::query(
                        "INSERT INTO eval_tokens (operation, token, request_hash, response, \
                         created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&t.operation)
                    .bind(&t.token)
                    .bind(&t.request_hash)
                    .bind(t.response.to_string())
                    .bind(t.created_at)
                    .execute(&mut *tx)
                    .await;
                    or_exists(res, "client token")?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// A row of `table` by id.
            async fn by_id<T>(
                store: &$store,
                table: &str,
                id: &str,
                decode: Decode<T>,
            ) -> Result<Option<T>, Error> {
                sqlx::query(&format!("SELECT * FROM {table} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(store.reader())
                    .await?
                    .as_ref()
                    .map(decode)
                    .transpose()
            }

            /// Rows of `table` in creation order after the cursor, at most `limit`.
            async fn page<T>(
                store: &$store,
                table: &str,
                after: Option<(EpochMillis, String)>,
                limit: i64,
                decode: Decode<T>,
            ) -> Result<Vec<T>, Error> {
                let (t, id) = after.unwrap_or((i64::MIN, String::new()));
                sqlx::query(&format!(
                    "SELECT * FROM {table} WHERE (created_at, id) > ($1, $2) \
                     ORDER BY created_at, id LIMIT $3"
                ))
                .bind(t)
                .bind(id)
                .bind(limit)
                .fetch_all(store.reader())
                .await?
                .iter()
                .map(decode)
                .collect()
            }

            /// Rows of `table` in a status, in creation order.
            async fn in_status<T>(
                store: &$store,
                table: &str,
                status: &str,
                decode: Decode<T>,
            ) -> Result<Vec<T>, Error> {
                sqlx::query(&format!(
                    "SELECT * FROM {table} WHERE status = $1 ORDER BY created_at, id"
                ))
                .bind(status)
                .fetch_all(store.reader())
                .await?
                .iter()
                .map(decode)
                .collect()
            }

            /// Deletes a row of `table`; false when there was none.
            async fn delete(store: &$store, table: &str, id: &str) -> Result<bool, Error> {
                let n = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
                    .bind(id)
                    .execute(store.writer())
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            #[async_trait]
            impl EvalStore for $store {
                async fn insert_evaluator(
                    &self,
                    e: &EvaluatorRow,
                    token: Option<&TokenRow>,
                ) -> Result<(), Error> {
                    write(self, Written::Evaluator(e), false, token).await
                }

                async fn put_evaluator(
                    &self,
                    e: &EvaluatorRow,
                    token: Option<&TokenRow>,
                ) -> Result<(), Error> {
                    write(self, Written::Evaluator(e), true, token).await
                }

                async fn evaluator(&self, id: &str) -> Result<Option<EvaluatorRow>, Error> {
                    by_id(self, EVALUATORS, id, evaluator_row).await
                }

                async fn list_evaluators(
                    &self,
                    after: Option<(EpochMillis, String)>,
                    limit: u32,
                ) -> Result<Vec<EvaluatorRow>, Error> {
                    page(self, EVALUATORS, after, i64::from(limit), evaluator_row).await
                }

                async fn evaluators_in_status(
                    &self,
                    status: &str,
                ) -> Result<Vec<EvaluatorRow>, Error> {
                    in_status(self, EVALUATORS, status, evaluator_row).await
                }

                async fn delete_evaluator(&self, id: &str) -> Result<bool, Error> {
                    delete(self, EVALUATORS, id).await
                }

                async fn insert_online_config(
                    &self,
                    c: &OnlineConfigRow,
                    token: Option<&TokenRow>,
                ) -> Result<(), Error> {
                    write(self, Written::Config(c), false, token).await
                }

                async fn put_online_config(
                    &self,
                    c: &OnlineConfigRow,
                    token: Option<&TokenRow>,
                ) -> Result<(), Error> {
                    write(self, Written::Config(c), true, token).await
                }

                async fn online_config(&self, id: &str) -> Result<Option<OnlineConfigRow>, Error> {
                    by_id(self, CONFIGS, id, online_config_row).await
                }

                async fn page_online_configs(
                    &self,
                    after: Option<(EpochMillis, String)>,
                    limit: u32,
                ) -> Result<Vec<OnlineConfigRow>, Error> {
                    page(self, CONFIGS, after, i64::from(limit), online_config_row).await
                }

                async fn list_online_configs(&self) -> Result<Vec<OnlineConfigRow>, Error> {
                    page(self, CONFIGS, None, i64::MAX, online_config_row).await
                }

                async fn online_configs_in_status(
                    &self,
                    status: &str,
                ) -> Result<Vec<OnlineConfigRow>, Error> {
                    in_status(self, CONFIGS, status, online_config_row).await
                }

                async fn delete_online_config(&self, id: &str) -> Result<bool, Error> {
                    delete(self, CONFIGS, id).await
                }

                async fn eval_token(
                    &self,
                    operation: &str,
                    token: &str,
                ) -> Result<Option<TokenRow>, Error> {
                    sqlx::query("SELECT * FROM eval_tokens WHERE operation = $1 AND token = $2")
                        .bind(operation)
                        .bind(token)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(token_row)
                        .transpose()
                }
            }
        }
    };
}
pub(crate) use eval_sql;
