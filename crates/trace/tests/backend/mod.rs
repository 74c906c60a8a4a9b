//! The trace store backends the store-level tests run on, written once and instantiated for
//! each by [`on_both_backends!`] (the way `crates/store/tests/conformance.rs` does): SQLite in a
//! temporary directory, and PostgreSQL in a fresh database of this test process's throwaway
//! cluster (`berth-pgtest`). `open` twice gives a second handle onto the same data: a restart,
//! or another server node.

#![allow(dead_code)]

use berth_trace::export::ExportSource;
use berth_trace::logs::LogStore;
use berth_trace::online::SessionFeed;
use berth_trace::scores::ScoreStore;
use berth_trace::{PgTraceStore, SqliteTraceStore, TraceStore};
use std::future::Future;

/// Everything a trace store backend implements.
pub trait Store: TraceStore + ScoreStore + LogStore + SessionFeed + ExportSource + Clone {}
impl<T: TraceStore + ScoreStore + LogStore + SessionFeed + ExportSource + Clone> Store for T {}

/// A backend under test.
pub trait Backend: Sized {
    type Store: Store;
    /// A fresh, empty place for a store.
    fn new() -> impl Future<Output = Self>;
    /// Opens (creating and migrating on first use) the store there.
    fn open(&self) -> impl Future<Output = Self::Store>;
}

pub struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    type Store = SqliteTraceStore;
    async fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    async fn open(&self) -> SqliteTraceStore {
        SqliteTraceStore::open(&self.0.path().join("traces.db"))
            .await
            .unwrap()
    }
}

pub struct Postgres(String);

impl Backend for Postgres {
    type Store = PgTraceStore;
    async fn new() -> Self {
        let url = tokio::task::spawn_blocking(|| {
            berth_pgtest::PgCluster::shared().and_then(|c| c.create_database())
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
        Self(url)
    }
    async fn open(&self) -> PgTraceStore {
        PgTraceStore::open(&self.0).await.unwrap()
    }
}

/// Instantiates each named test (an `async fn name<B: Backend>()`) for both backends.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test::<super::backend::Sqlite>().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test::<super::backend::Postgres>().await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
