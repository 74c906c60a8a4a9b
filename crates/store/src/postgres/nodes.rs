//! [`NodeStore`](crate::nodes::NodeStore) on PostgreSQL: the shared SQL of [`crate::sql::nodes`].

crate::sql::nodes::nodes_sql!(crate::PgStore, sqlx::Postgres);
