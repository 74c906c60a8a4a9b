//! [`SecretStore`](crate::secrets::SecretStore) on PostgreSQL: the shared SQL of
//! [`crate::sql::secrets`].

crate::sql::secrets::secrets_sql!(crate::PgStore, sqlx::Postgres);
