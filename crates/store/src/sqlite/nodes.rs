//! [`NodeStore`](crate::nodes::NodeStore) on SQLite: the shared SQL of [`crate::sql::nodes`].

crate::sql::nodes::nodes_sql!(crate::SqliteStore, sqlx::Sqlite);
