//! What only the PostgreSQL backend has to show: its sessions commit durably, and it opens from
//! the URL forms `--store` takes. (Everything the traits promise is in `conformance.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_store::PgStore;

async fn fresh_url() -> String {
    tokio::task::spawn_blocking(|| {
        berth_pgtest::PgCluster::shared().and_then(|c| c.create_database())
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn every_connection_commits_synchronously() {
    let s = PgStore::open(&fresh_url().await).await.unwrap();
    // Several connections: the setting is part of each connection's start-up, not one SET.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = s.pool().acquire().await.unwrap();
        let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(sync, "on");
        held.push(c);
    }
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(fsync, "on");
}

#[tokio::test]
async fn postgresql_urls_open_and_a_second_open_finds_the_schema_migrated() {
    let url = fresh_url().await;
    let alt = url.replacen("postgres://", "postgresql://", 1);
    let a = berth_store::open_all(&url).await.unwrap();
    // A second node opening the same database runs no migration twice.
    let b = berth_store::open_all(&alt).await.unwrap();
    assert!(a.control.roles().await.unwrap().is_empty());
    assert!(b.secrets.list_secrets("").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_database_fails_without_showing_its_password() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://berth:s3cret@127.0.0.1:{port}/berth");
    let e = berth_store::open_all(&url)
        .await
        .err()
        .expect("no server there");
    assert!(!e.to_string().contains("s3cret"), "{e}");
}
