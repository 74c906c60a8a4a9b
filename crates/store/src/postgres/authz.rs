//! The SQL of roles, access keys and resource policies on PostgreSQL: the shared SQL of
//! [`crate::sql::authz`].

crate::sql::authz::authz_sql!(crate::PgStore, sqlx::Postgres);
pub(crate) use sql::*;
