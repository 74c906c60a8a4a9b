//! [`EvalDataStore`](crate::eval_data::EvalDataStore) on SQLite: the shared SQL of
//! [`crate::sql::eval_data`].

crate::sql::eval_data::eval_data_sql!(
    crate::SqliteStore,
    sqlx::Sqlite,
    for_update: "",
    has_key: |k| format!("json_type(body, '$.{k}') IS NOT NULL")
);
