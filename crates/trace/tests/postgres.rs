//! What only the PostgreSQL trace store has to show: it lives beside the control store in one
//! database without either migrator seeing the other's, and its sessions commit durably. (What
//! the traits promise is in the suites run on both backends.)

#![allow(clippy::unwrap_used)]

use berth_trace::PgTraceStore;
use berth_trace::postgres::SCHEMA;

async fn fresh_url() -> String {
    tokio::task::spawn_blocking(|| {
        berth_pgtest::PgCluster::shared().and_then(|c| c.create_database())
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_trace_schema_and_the_control_store_share_a_database_apart() {
    let url = fresh_url().await;
    // Either order, twice each (nodes starting and restarting): no migration clashes.
    let traces = PgTraceStore::open(&url).await.unwrap();
    let control = berth_store::open_all(&url).await.unwrap();
    drop(PgTraceStore::open(&url).await.unwrap());
    drop(berth_store::open_all(&url).await.unwrap());
    assert!(control.control.roles().await.unwrap().is_empty());
    let schema_of = |table: &'static str| {
        let pool = traces.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT table_schema::text FROM information_schema.tables \
                 WHERE table_name = $1 ORDER BY 1",
            )
            .bind(table)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    // Each migrator keeps its own bookkeeping; the trace tables are in their schema only.
    assert_eq!(schema_of("_sqlx_migrations").await, [SCHEMA, "public"]);
    assert_eq!(schema_of("spans").await, [SCHEMA]);
    assert_eq!(schema_of("runtimes").await, ["public"]);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(traces.pool())
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(usize::try_from(applied).unwrap(), files);
}

#[tokio::test]
async fn every_connection_commits_synchronously_in_the_trace_schema() {
    let s = PgTraceStore::open(&fresh_url().await).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = s.pool().acquire().await.unwrap();
        let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(sync, "on");
        let path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(path, SCHEMA);
        held.push(c);
    }
}
