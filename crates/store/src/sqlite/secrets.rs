//! [`SecretStore`](crate::secrets::SecretStore) on SQLite: the shared SQL of
//! [`crate::sql::secrets`].

crate::sql::secrets::secrets_sql!(crate::SqliteStore, sqlx::Sqlite);
