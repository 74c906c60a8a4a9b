//! The SQL of the traffic layer and the audit log on PostgreSQL: the shared SQL of
//! [`crate::sql::traffic`].

crate::sql::traffic::traffic_sql!(
    crate::PgStore,
    sqlx::Postgres,
    merge_counts: "(SELECT COALESCE(json_agg(COALESCE(a.n::BIGINT, 0) + COALESCE(b.n::BIGINT, 0) \
          ORDER BY COALESCE(a.i, b.i))::TEXT, '[]') \
        FROM json_array_elements_text(health_buckets.latency_counts::JSON) WITH ORDINALITY AS a(n, i) \
        FULL JOIN json_array_elements_text(excluded.latency_counts::JSON) WITH ORDINALITY AS b(n, i) \
        ON a.i = b.i)",
    // One appender at a time across nodes: the transaction-scoped advisory lock is taken before
    // the head is read, and released at commit or rollback.
    audit_lock: "SELECT pg_advisory_xact_lock(7021863923441577985)"
);
pub(crate) use sql::*;
