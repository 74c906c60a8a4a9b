//! [`EvalStore`](crate::eval::EvalStore) for every backend: `eval_store!(Store, Database)`.

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

/// The upsert tail of `write_evaluator` (a put replaces the row with the same id).
pub(crate) const EVALUATOR_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
    level = excluded.level, status = excluded.status, spec = excluded.spec, \
    created_at = excluded.created_at, updated_at = excluded.updated_at";
/// The upsert tail of `write_online_config`.
pub(crate) const ONLINE_CONFIG_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET \
    name = excluded.name, status = excluded.status, execution_status = excluded.execution_status, \
    failure_reason = excluded.failure_reason, spec = excluded.spec, \
    created_at = excluded.created_at, updated_at = excluded.updated_at";

/// `impl EvalStore for $store` over the sqlx database `$db`.
macro_rules! eval_store {
    ($store:ty, $db:ty) => {
        async fn put_token(
            tx: &mut <$db as sqlx::Database>::Connection,
            t: Option<&crate::eval::TokenRow>,
        ) -> Result<(), crate::Error> {
            let Some(t) = t else { return Ok(()) };
            let res = sqlx::query(
                "INSERT INTO eval_tokens (operation, token, request_hash, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&t.operation)
            .bind(&t.token)
            .bind(&t.request_hash)
            .bind(t.response.to_string())
            .bind(t.created_at)
            .execute(&mut *tx)
            .await;
            crate::sql::or_exists(res, "client token").map(drop)
        }

        async fn write_evaluator(
            tx: &mut <$db as sqlx::Database>::Connection,
            upsert: bool,
            e: &crate::eval::EvaluatorRow,
        ) -> Result<(), sqlx::Error> {
            let tail = if upsert {
                crate::sql::eval::EVALUATOR_UPSERT
            } else {
                ""
            };
            sqlx::query(&format!(
                "INSERT INTO evaluators (id, name, level, status, spec, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7){tail}"
            ))
            .bind(&e.id)
            .bind(&e.name)
            .bind(&e.level)
            .bind(&e.status)
            .bind(e.spec.to_string())
            .bind(e.created_at)
            .bind(e.updated_at)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }

        async fn write_online_config(
            tx: &mut <$db as sqlx::Database>::Connection,
            upsert: bool,
            c: &crate::eval::OnlineConfigRow,
        ) -> Result<(), sqlx::Error> {
            let tail = if upsert {
                crate::sql::eval::ONLINE_CONFIG_UPSERT
            } else {
                ""
            };
            sqlx::query(&format!(
                "INSERT INTO online_evaluation_configs (id, name, status, execution_status, \
                 failure_reason, spec, created_at, updated_at) \
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
            .await?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl crate::eval::EvalStore for $store {
            async fn insert_evaluator(
                &self,
                e: &crate::eval::EvaluatorRow,
                token: Option<&crate::eval::TokenRow>,
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                crate::sql::or_exists(write_evaluator(&mut tx, false, e).await, "evaluator name")?;
                put_token(&mut tx, token).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn put_evaluator(
                &self,
                e: &crate::eval::EvaluatorRow,
                token: Option<&crate::eval::TokenRow>,
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                crate::sql::or_exists(write_evaluator(&mut tx, true, e).await, "evaluator name")?;
                put_token(&mut tx, token).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn evaluator(
                &self,
                id: &str,
            ) -> Result<Option<crate::eval::EvaluatorRow>, crate::Error> {
                sqlx::query("SELECT * FROM evaluators WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::sql::eval::evaluator_row)
                    .transpose()
            }

            async fn list_evaluators(
                &self,
                after: Option<(berth_types::EpochMillis, String)>,
                limit: u32,
            ) -> Result<Vec<crate::eval::EvaluatorRow>, crate::Error> {
                let (t, id) = after.unwrap_or((i64::MIN, String::new()));
                sqlx::query(
                    "SELECT * FROM evaluators WHERE (created_at, id) > ($1, $2) \
                     ORDER BY created_at, id LIMIT $3",
                )
                .bind(t)
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(crate::sql::eval::evaluator_row)
                .collect()
            }

            async fn evaluators_in_status(
                &self,
                status: &str,
            ) -> Result<Vec<crate::eval::EvaluatorRow>, crate::Error> {
                sqlx::query("SELECT * FROM evaluators WHERE status = $1 ORDER BY created_at, id")
                    .bind(status)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::sql::eval::evaluator_row)
                    .collect()
            }

            async fn delete_evaluator(&self, id: &str) -> Result<bool, crate::Error> {
                let n = sqlx::query("DELETE FROM evaluators WHERE id = $1")
                    .bind(id)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn insert_online_config(
                &self,
                c: &crate::eval::OnlineConfigRow,
                token: Option<&crate::eval::TokenRow>,
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                crate::sql::or_exists(
                    write_online_config(&mut tx, false, c).await,
                    "online evaluation config name",
                )?;
                put_token(&mut tx, token).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn put_online_config(
                &self,
                c: &crate::eval::OnlineConfigRow,
                token: Option<&crate::eval::TokenRow>,
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                crate::sql::or_exists(
                    write_online_config(&mut tx, true, c).await,
                    "online evaluation config name",
                )?;
                put_token(&mut tx, token).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn online_config(
                &self,
                id: &str,
            ) -> Result<Option<crate::eval::OnlineConfigRow>, crate::Error> {
                sqlx::query("SELECT * FROM online_evaluation_configs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::sql::eval::online_config_row)
                    .transpose()
            }

            async fn page_online_configs(
                &self,
                after: Option<(berth_types::EpochMillis, String)>,
                limit: u32,
            ) -> Result<Vec<crate::eval::OnlineConfigRow>, crate::Error> {
                let (t, id) = after.unwrap_or((i64::MIN, String::new()));
                sqlx::query(
                    "SELECT * FROM online_evaluation_configs WHERE (created_at, id) > ($1, $2) \
                     ORDER BY created_at, id LIMIT $3",
                )
                .bind(t)
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(crate::sql::eval::online_config_row)
                .collect()
            }

            async fn list_online_configs(
                &self,
            ) -> Result<Vec<crate::eval::OnlineConfigRow>, crate::Error> {
                sqlx::query("SELECT * FROM online_evaluation_configs ORDER BY created_at, id")
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::sql::eval::online_config_row)
                    .collect()
            }

            async fn online_configs_in_status(
                &self,
                status: &str,
            ) -> Result<Vec<crate::eval::OnlineConfigRow>, crate::Error> {
                sqlx::query(
                    "SELECT * FROM online_evaluation_configs WHERE status = $1 \
                     ORDER BY created_at, id",
                )
                .bind(status)
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(crate::sql::eval::online_config_row)
                .collect()
            }

            async fn delete_online_config(&self, id: &str) -> Result<bool, crate::Error> {
                let n = sqlx::query("DELETE FROM online_evaluation_configs WHERE id = $1")
                    .bind(id)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn eval_token(
                &self,
                operation: &str,
                token: &str,
            ) -> Result<Option<crate::eval::TokenRow>, crate::Error> {
                sqlx::query("SELECT * FROM eval_tokens WHERE operation = $1 AND token = $2")
                    .bind(operation)
                    .bind(token)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::sql::eval::token_row)
                    .transpose()
            }
        }
    };
}
pub(crate) use eval_store;
