//! [`EvalDataStore`](crate::eval_data::EvalDataStore) on PostgreSQL: the shared SQL of
//! [`crate::sql::eval_data`].

crate::sql::eval_data::eval_data_sql!(
    crate::PgStore,
    sqlx::Postgres,
    for_update: " FOR UPDATE",
    has_key: |k| format!("(body::jsonb -> '{k}') IS NOT NULL")
);
