//! SQLite implementation of [`EvalStore`].

use super::cols::json_col;
use crate::eval::*;
use crate::{Error, SqliteStore};
use async_trait::async_trait;
use berth_types::EpochMillis;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

fn evaluator_row(r: &SqliteRow) -> Result<EvaluatorRow, Error> {
    Ok(EvaluatorRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        level: r.try_get("level")?,
        status: r.try_get("status")?,
        spec: json_col(r, "spec", "evaluators")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn online_config_row(r: &SqliteRow) -> Result<OnlineConfigRow, Error> {
    Ok(OnlineConfigRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        execution_status: r.try_get("execution_status")?,
        failure_reason: r.try_get("failure_reason")?,
        spec: json_col(r, "spec", "online_evaluation_configs")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn put_token(tx: &mut sqlx::SqliteConnection, t: Option<&TokenRow>) -> Result<(), Error> {
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
    match res {
        Ok(_) => Ok(()),
        Err(e) if super::unique_violation(&e) => Err(Error::AlreadyExists("client token")),
        Err(e) => Err(e.into()),
    }
}

async fn write_evaluator(
    tx: &mut sqlx::SqliteConnection,
    verb: &str,
    e: &EvaluatorRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "{verb} INTO evaluators (id, name, level, status, spec, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)"
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
    tx: &mut sqlx::SqliteConnection,
    verb: &str,
    c: &OnlineConfigRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "{verb} INTO online_evaluation_configs (id, name, status, execution_status, \
         failure_reason, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
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

#[async_trait]
impl EvalStore for SqliteStore {
    async fn insert_evaluator(
        &self,
        e: &EvaluatorRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        match write_evaluator(&mut tx, "INSERT", e).await {
            Ok(()) => {}
            Err(err) if super::unique_violation(&err) => {
                return Err(Error::AlreadyExists("evaluator name"));
            }
            Err(err) => return Err(err.into()),
        }
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_evaluator(&self, e: &EvaluatorRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        write_evaluator(&mut tx, "INSERT OR REPLACE", e).await?;
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn evaluator(&self, id: &str) -> Result<Option<EvaluatorRow>, Error> {
        sqlx::query("SELECT * FROM evaluators WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(evaluator_row)
            .transpose()
    }

    async fn list_evaluators(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<EvaluatorRow>, Error> {
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
        .map(evaluator_row)
        .collect()
    }

    async fn evaluators_in_status(&self, status: &str) -> Result<Vec<EvaluatorRow>, Error> {
        sqlx::query("SELECT * FROM evaluators WHERE status = $1 ORDER BY created_at, id")
            .bind(status)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(evaluator_row)
            .collect()
    }

    async fn delete_evaluator(&self, id: &str) -> Result<bool, Error> {
        let n = sqlx::query("DELETE FROM evaluators WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn insert_online_config(
        &self,
        c: &OnlineConfigRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        match write_online_config(&mut tx, "INSERT", c).await {
            Ok(()) => {}
            Err(err) if super::unique_violation(&err) => {
                return Err(Error::AlreadyExists("online evaluation config name"));
            }
            Err(err) => return Err(err.into()),
        }
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_online_config(
        &self,
        c: &OnlineConfigRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        write_online_config(&mut tx, "INSERT OR REPLACE", c).await?;
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn online_config(&self, id: &str) -> Result<Option<OnlineConfigRow>, Error> {
        sqlx::query("SELECT * FROM online_evaluation_configs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(online_config_row)
            .transpose()
    }

    async fn page_online_configs(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<OnlineConfigRow>, Error> {
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
        .map(online_config_row)
        .collect()
    }

    async fn list_online_configs(&self) -> Result<Vec<OnlineConfigRow>, Error> {
        sqlx::query("SELECT * FROM online_evaluation_configs ORDER BY created_at, id")
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(online_config_row)
            .collect()
    }

    async fn online_configs_in_status(&self, status: &str) -> Result<Vec<OnlineConfigRow>, Error> {
        sqlx::query(
            "SELECT * FROM online_evaluation_configs WHERE status = $1 ORDER BY created_at, id",
        )
        .bind(status)
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(online_config_row)
        .collect()
    }

    async fn delete_online_config(&self, id: &str) -> Result<bool, Error> {
        let n = sqlx::query("DELETE FROM online_evaluation_configs WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn eval_token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        let Some(r) = sqlx::query("SELECT * FROM eval_tokens WHERE operation = $1 AND token = $2")
            .bind(operation)
            .bind(token)
            .fetch_optional(self.reader())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(TokenRow {
            operation: r.try_get("operation")?,
            token: r.try_get("token")?,
            request_hash: r.try_get("request_hash")?,
            response: json_col(&r, "response", "eval_tokens")?,
            created_at: r.try_get("created_at")?,
        }))
    }
}
