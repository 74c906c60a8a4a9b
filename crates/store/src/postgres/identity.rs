//! [`IdentityStore`](crate::identity::IdentityStore) on PostgreSQL: the shared SQL of
//! [`crate::sql::identity`].

crate::sql::identity::identity_sql!(crate::PgStore, sqlx::Postgres);
