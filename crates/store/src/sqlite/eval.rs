//! SQLite's [`EvalStore`](crate::eval::EvalStore): the shared SQL of [`crate::sql::eval`].

crate::sql::eval::eval_store!(crate::SqliteStore, sqlx::Sqlite);
