//! [`EvalDataStore`](crate::eval_data::EvalDataStore) for every backend: `eval_data_sql!(Store,
//! Database)` (see [`crate::sql`]).

/// The shared implementation, as a module `sql` of the invoking backend module. Dialect:
/// `for_update` is appended to the reads that decide a write (`" FOR UPDATE"` where writers run
/// side by side; empty on SQLite, whose write transactions hold the database lock), and
/// `has_key(k)` is a SQL condition true when the JSON object `body` has member `k`.
macro_rules! eval_data_sql {
    ($store:ty, $db:ty, for_update: $for_update:literal, has_key: $has_key:expr) => {
        mod sql {
                        use crate::cols::{corrupt, json_col, opt_json_col};
            use crate::Error;
            use crate::eval_data::{
                BatchRow, DRAFT, DatasetRow, EvalDataStore, ExampleChange, ExampleCounts, ExampleRow, TokenRow,
                VersionRow,
            };
            use async_trait::async_trait;
            use berth_types::EpochMillis;
            use serde_json::Value;
            use sqlx::Row;

            fn dataset_row(r: &<$db as sqlx::Database>::Row) -> Result<DatasetRow, Error> {
                Ok(DatasetRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    arn: r.try_get("arn")?,
                    description: r.try_get("description")?,
                    schema_type: r.try_get("schema_type")?,
                    status: r.try_get("status")?,
                    failure_reason: r.try_get("failure_reason")?,
                    kms_key_arn: r.try_get("kms_key_arn")?,
                    tags: json_col(r, "tags", "eval_datasets")?,
                    draft_modified: r.try_get::<i64, _>("draft_modified")? != 0,
                    latest_version: r.try_get("latest_version")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            fn batch_row(r: &<$db as sqlx::Database>::Row) -> Result<BatchRow, Error> {
                Ok(BatchRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    arn: r.try_get("arn")?,
                    status: r.try_get("status")?,
                    request: json_col(r, "request", "batch_evaluations")?,
                    results: opt_json_col(r, "results", "batch_evaluations")?,
                    error: r.try_get("error")?,
                    execution: opt_json_col(r, "execution", "batch_evaluations")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            fn unique(e: sqlx::Error, what: &'static str) -> Error {
                match e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => Error::AlreadyExists(what),
                    other => Error::Db(other),
                }
            }

            async fn put_token(tx: &mut <$db as sqlx::Database>::Connection, t: Option<&TokenRow>) -> Result<(), Error> {
                let Some(t) = t else { return Ok(()) };
                sqlx::query(
                    "INSERT INTO eval_data_tokens (token, operation, request_hash, response, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&t.token)
                .bind(&t.operation)
                .bind(&t.request_hash)
                .bind(t.response.to_string())
                .bind(t.created_at)
                .execute(tx)
                .await
                .map_err(|e| unique(e, "client token"))?;
                Ok(())
            }

            /// Serialises the writers of one dataset (its DRAFT's positions, its version numbers).
            async fn lock_dataset(
                tx: &mut <$db as sqlx::Database>::Connection,
                id: &str,
            ) -> Result<(), Error> {
                sqlx::query(concat!("SELECT id FROM eval_datasets WHERE id = $1", $for_update))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                Ok(())
            }

            async fn next_position(tx: &mut <$db as sqlx::Database>::Connection, id: &str, version: i64) -> Result<i64, Error> {
                let max: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(position) FROM eval_dataset_examples WHERE dataset_id = $1 AND version = $2",
                )
                .bind(id)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
                Ok(max.unwrap_or(0) + 1)
            }

            async fn insert_examples(
                tx: &mut <$db as sqlx::Database>::Connection,
                id: &str,
                examples: &[(String, Value)],
            ) -> Result<(), Error> {
                let mut pos = next_position(tx, id, DRAFT).await?;
                for (example_id, body) in examples {
                    sqlx::query(
                        "INSERT INTO eval_dataset_examples (dataset_id, version, example_id, position, body) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(DRAFT)
                    .bind(example_id)
                    .bind(pos)
                    .bind(body.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique(e, "example id"))?;
                    pos += 1;
                }
                Ok(())
            }

            const DATASET_COLS: &str = "id, name, arn, description, schema_type, status, failure_reason, \
                 kms_key_arn, tags, draft_modified, latest_version, created_at, updated_at";

            #[async_trait]
            impl EvalDataStore for $store {
                async fn eval_token(&self, token: &str, operation: &str) -> Result<Option<TokenRow>, Error> {
                    let row = sqlx::query(
                        "SELECT token, operation, request_hash, response, created_at FROM eval_data_tokens \
                         WHERE token = $1 AND operation = $2",
                    )
                    .bind(token)
                    .bind(operation)
                    .fetch_optional(self.reader())
                    .await?;
                    row.map(|r| {
                        Ok(TokenRow {
                            token: r.try_get("token")?,
                            operation: r.try_get("operation")?,
                            request_hash: r.try_get("request_hash")?,
                            response: json_col(&r, "response", "eval_data_tokens")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .transpose()
                }

                async fn insert_dataset(
                    &self,
                    d: &DatasetRow,
                    examples: &[(String, Value)],
                    token: Option<&TokenRow>,
                ) -> Result<(), Error> {
                    let mut tx = self.begin().await?;
                    sqlx::query(&format!(
                        "INSERT INTO eval_datasets ({DATASET_COLS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                    ))
                    .bind(&d.id)
                    .bind(&d.name)
                    .bind(&d.arn)
                    .bind(&d.description)
                    .bind(&d.schema_type)
                    .bind(&d.status)
                    .bind(&d.failure_reason)
                    .bind(&d.kms_key_arn)
                    .bind(d.tags.to_string())
                    .bind(i64::from(d.draft_modified))
                    .bind(d.latest_version)
                    .bind(d.created_at)
                    .bind(d.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique(e, "dataset name"))?;
                    insert_examples(&mut tx, &d.id, examples).await?;
                    put_token(&mut tx, token).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, Error> {
                    let row = sqlx::query(&format!(
                        "SELECT {DATASET_COLS} FROM eval_datasets WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?;
                    row.as_ref().map(dataset_row).transpose()
                }

                async fn datasets(&self, after: Option<&str>, limit: u32) -> Result<Vec<DatasetRow>, Error> {
                    // Creation order with the id as tie-break; `after` names the last row of a page.
                    let rows = sqlx::query(&format!(
                        "SELECT {DATASET_COLS} FROM eval_datasets \
                         WHERE $1 IS NULL OR (created_at, id) > \
                           (SELECT created_at, id FROM eval_datasets WHERE id = $1) \
                         ORDER BY created_at, id LIMIT $2"
                    ))
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter().map(dataset_row).collect()
                }

                async fn put_dataset(&self, d: &DatasetRow, token: Option<&TokenRow>) -> Result<(), Error> {
                    let mut tx = self.begin().await?;
                    let done = sqlx::query(
                        "UPDATE eval_datasets SET description = $2, status = $3, failure_reason = $4, \
                         tags = $5, updated_at = $6 WHERE id = $1",
                    )
                    .bind(&d.id)
                    .bind(&d.description)
                    .bind(&d.status)
                    .bind(&d.failure_reason)
                    .bind(d.tags.to_string())
                    .bind(d.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(Error::Precondition("dataset"));
                    }
                    put_token(&mut tx, token).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn delete_dataset(&self, id: &str) -> Result<bool, Error> {
                    let mut tx = self.begin().await?;
                    for table in ["eval_dataset_examples", "eval_dataset_versions"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE dataset_id = $1"))
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let done = sqlx::query("DELETE FROM eval_datasets WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn change_examples(
                    &self,
                    id: &str,
                    change: &ExampleChange,
                    now: EpochMillis,
                    token: Option<&TokenRow>,
                ) -> Result<i64, Error> {
                    let mut tx = self.begin().await?;
                    lock_dataset(&mut tx, id).await?;
                    let n = match change {
                        ExampleChange::Add(examples) => {
                            insert_examples(&mut tx, id, examples).await?;
                            examples.len() as i64
                        }
                        ExampleChange::Update(examples) => {
                            for (example_id, body) in examples {
                                let done = sqlx::query(
                                    "UPDATE eval_dataset_examples SET body = $4 \
                                     WHERE dataset_id = $1 AND version = $2 AND example_id = $3",
                                )
                                .bind(id)
                                .bind(DRAFT)
                                .bind(example_id)
                                .bind(body.to_string())
                                .execute(&mut *tx)
                                .await?;
                                if done.rows_affected() == 0 {
                                    return Err(Error::Precondition("example"));
                                }
                            }
                            examples.len() as i64
                        }
                        ExampleChange::Delete(ids) => {
                            for example_id in ids {
                                let done = sqlx::query(
                                    "DELETE FROM eval_dataset_examples \
                                     WHERE dataset_id = $1 AND version = $2 AND example_id = $3",
                                )
                                .bind(id)
                                .bind(DRAFT)
                                .bind(example_id)
                                .execute(&mut *tx)
                                .await?;
                                if done.rows_affected() == 0 {
                                    return Err(Error::Precondition("example"));
                                }
                            }
                            ids.len() as i64
                        }
                    };
                    let done = sqlx::query(
                        "UPDATE eval_datasets SET draft_modified = 1, updated_at = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(Error::Precondition("dataset"));
                    }
                    put_token(&mut tx, token).await?;
                    tx.commit().await?;
                    Ok(n)
                }

                async fn examples(
                    &self,
                    id: &str,
                    version: i64,
                    after: i64,
                    limit: u32,
                ) -> Result<Vec<ExampleRow>, Error> {
                    let rows = sqlx::query(
                        "SELECT example_id, position, body FROM eval_dataset_examples \
                         WHERE dataset_id = $1 AND version = $2 AND position > $3 \
                         ORDER BY position LIMIT $4",
                    )
                    .bind(id)
                    .bind(version)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter()
                        .map(|r| {
                            Ok(ExampleRow {
                                example_id: r.try_get("example_id")?,
                                position: r.try_get("position")?,
                                body: json_col(r, "body", "eval_dataset_examples")?,
                            })
                        })
                        .collect()
                }

                async fn example_counts(&self, id: &str, version: i64) -> Result<ExampleCounts, Error> {
                    let has_key: fn(&str) -> String = $has_key;
                    let count = |k: &str| {
                        format!("CAST(COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS BIGINT)", has_key(k))
                    };
                    let sql = format!(
                        "SELECT COUNT(*) AS total, {} AS turns, {} AS input, {} AS actor \
                         FROM eval_dataset_examples WHERE dataset_id = $1 AND version = $2",
                        count("turns"),
                        count("input"),
                        count("actor_profile"),
                    );
                    let r = sqlx::query(&sql)
                    .bind(id)
                    .bind(version)
                    .fetch_one(self.reader())
                    .await?;
                    Ok(ExampleCounts {
                        total: r.try_get("total")?,
                        turns: r.try_get("turns")?,
                        input: r.try_get("input")?,
                        actor_profile: r.try_get("actor")?,
                    })
                }

                async fn publish_version(
                    &self,
                    id: &str,
                    now: EpochMillis,
                    token: Option<&TokenRow>,
                ) -> Result<i64, Error> {
                    let mut tx = self.begin().await?;
                    let latest: Option<i64> = sqlx::query_scalar(concat!(
                        "SELECT latest_version FROM eval_datasets WHERE id = $1",
                        $for_update
                    ))
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(latest) = latest else {
                        return Err(Error::Precondition("dataset"));
                    };
                    let version = latest + 1;
                    sqlx::query(
                        "INSERT INTO eval_dataset_versions (dataset_id, version, created_at) VALUES ($1, $2, $3)",
                    )
                    .bind(id)
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO eval_dataset_examples (dataset_id, version, example_id, position, body) \
                         SELECT dataset_id, $2, example_id, position, body FROM eval_dataset_examples \
                         WHERE dataset_id = $1 AND version = $3",
                    )
                    .bind(id)
                    .bind(version)
                    .bind(DRAFT)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE eval_datasets SET latest_version = $2, draft_modified = 0, updated_at = $3 \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    put_token(&mut tx, token).await?;
                    tx.commit().await?;
                    Ok(version)
                }

                async fn versions(&self, id: &str) -> Result<Vec<VersionRow>, Error> {
                    let rows = sqlx::query(
                        "SELECT version, created_at FROM eval_dataset_versions WHERE dataset_id = $1 \
                         ORDER BY version DESC",
                    )
                    .bind(id)
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter()
                        .map(|r| {
                            Ok(VersionRow {
                                version: r.try_get("version")?,
                                created_at: r.try_get("created_at")?,
                            })
                        })
                        .collect()
                }

                async fn delete_version(&self, id: &str, version: i64) -> Result<bool, Error> {
                    if version == DRAFT {
                        return Err(corrupt(
                            "eval_dataset_versions",
                            "the DRAFT is not a version row",
                        ));
                    }
                    let mut tx = self.begin().await?;
                    sqlx::query("DELETE FROM eval_dataset_examples WHERE dataset_id = $1 AND version = $2")
                        .bind(id)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    let done =
                        sqlx::query("DELETE FROM eval_dataset_versions WHERE dataset_id = $1 AND version = $2")
                            .bind(id)
                            .bind(version)
                            .execute(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn insert_batch(&self, b: &BatchRow, token: Option<&TokenRow>) -> Result<(), Error> {
                    let mut tx = self.begin().await?;
                    sqlx::query(
                        "INSERT INTO batch_evaluations (id, name, arn, status, request, results, error, \
                         execution, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&b.id)
                    .bind(&b.name)
                    .bind(&b.arn)
                    .bind(&b.status)
                    .bind(b.request.to_string())
                    .bind(b.results.as_ref().map(Value::to_string))
                    .bind(&b.error)
                    .bind(b.execution.as_ref().map(Value::to_string))
                    .bind(b.created_at)
                    .bind(b.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique(e, "batch evaluation id"))?;
                    put_token(&mut tx, token).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn batch(&self, id: &str) -> Result<Option<BatchRow>, Error> {
                    let row = sqlx::query("SELECT * FROM batch_evaluations WHERE id = $1")
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?;
                    row.as_ref().map(batch_row).transpose()
                }

                async fn batches(&self, after: Option<&str>, limit: u32) -> Result<Vec<BatchRow>, Error> {
                    let rows = sqlx::query(
                        "SELECT * FROM batch_evaluations \
                         WHERE $1 IS NULL OR (created_at, id) < \
                           (SELECT created_at, id FROM batch_evaluations WHERE id = $1) \
                         ORDER BY created_at DESC, id DESC LIMIT $2",
                    )
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter().map(batch_row).collect()
                }

                async fn update_batch(&self, b: &BatchRow, unless: &[&str]) -> Result<bool, Error> {
                    let mut tx = self.begin().await?;
                    let status: Option<String> = sqlx::query_scalar(concat!(
                        "SELECT status FROM batch_evaluations WHERE id = $1",
                        $for_update
                    ))
                            .bind(&b.id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    match status {
                        None => return Ok(false),
                        Some(s) if unless.contains(&s.as_str()) => return Ok(false),
                        Some(_) => {}
                    }
                    sqlx::query(
                        "UPDATE batch_evaluations SET status = $2, results = $3, error = $4, execution = $5, \
                         updated_at = $6 WHERE id = $1",
                    )
                    .bind(&b.id)
                    .bind(&b.status)
                    .bind(b.results.as_ref().map(Value::to_string))
                    .bind(&b.error)
                    .bind(b.execution.as_ref().map(Value::to_string))
                    .bind(b.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn delete_batch(&self, id: &str) -> Result<bool, Error> {
                    let done = sqlx::query("DELETE FROM batch_evaluations WHERE id = $1")
                        .bind(id)
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn unfinished_batches(&self) -> Result<Vec<BatchRow>, Error> {
                    let rows = sqlx::query(
                        "SELECT * FROM batch_evaluations WHERE status IN ('PENDING', 'IN_PROGRESS', 'STOPPING') \
                         ORDER BY created_at, id",
                    )
                    .fetch_all(self.reader())
                    .await?;
                    rows.iter().map(batch_row).collect()
                }
            }
        }
    };
}
pub(crate) use eval_data_sql;
