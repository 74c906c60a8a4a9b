//! [`IdentityStore`](crate::identity::IdentityStore) on SQLite: the shared SQL of
//! [`crate::sql::identity`].

crate::sql::identity::identity_sql!(crate::SqliteStore, sqlx::Sqlite);
