//! AgentCore Memory: memory resources and their strategies (control plane), short-term events,
//! long-term records with hybrid retrieval, and asynchronous extraction of records from events.
//!
//! Like `berth-control`, handlers hand this crate a request already validated against the
//! service model (JSON in AgentCore member names) and get back the response body.
//!
//! ```text
//! CreateEvent ──> group-commit writer ──> memory_events (durable before 201)
//!                                              │ idle session
//!                                              ▼
//!                extraction worker: jobs per strategy ──> model provider ──> records (+ embeddings)
//! RetrieveMemoryRecords: FTS5 bm25 ─┐
//!                   vector index  ─┴─ reciprocal rank fusion ──> top K
//! ```
//!
//! Architecture Invariant: nothing on the `CreateEvent` path embeds or calls a model; both happen
//! in the extraction worker. Architecture Invariant: the vector index is a cache of the
//! embeddings stored with each record and is rebuilt from the store on first use.

pub mod embed;
mod embed_api;
mod events;
mod extract;
mod index;
pub mod provider;
mod records;
mod resources;
mod wire;

pub use embed::{Embedder, MiniLm};
pub use embed_api::EmbeddingsApi;
pub use provider::{AwsSigning, ModelProvider, ProviderKind};

use berth_store::memory::{EventRow, Inserted, MemoryRow, MemoryStore};
use berth_types::Partition;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, RwLock, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Configuration of the memory service.
#[derive(Clone)]
pub struct Options {
    /// Region and account in memory ARNs.
    pub partition: Partition,
    /// The embedder for vector retrieval; `None` leaves retrieval keyword-only (logged at start).
    pub embedder: Option<Arc<dyn Embedder>>,
    /// The model extraction calls; `None` makes extraction jobs fail with a reason that says
    /// what to configure.
    pub provider: Option<ModelProvider>,
    /// How long a session must be quiet before its new events are extracted [default: 10 s].
    pub extraction_delay: Duration,
    /// How often expired events and records are purged [default: 60 s].
    pub purge_interval: Duration,
}

impl Options {
    /// Defaults for `partition`: no embedder, no provider.
    pub fn new(partition: Partition) -> Self {
        Self {
            partition,
            embedder: None,
            provider: None,
            extraction_delay: Duration::from_secs(10),
            purge_interval: Duration::from_secs(60),
        }
    }
}

/// Why memory could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value that cannot work.
    #[error("{key}: {detail}")]
    Invalid {
        /// The setting, as named in the environment.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The embedding model named by the settings does not load.
    #[error("BERTH_EMBEDDING_MODEL: {0}")]
    Embedder(#[from] embed::Error),
}

impl Options {
    /// Options from settings in the `BERTH_*` naming (passed as a map so tests never touch the
    /// process environment; `berth serve` passes its environment with its flags laid over it):
    ///
    /// - `BERTH_EMBEDDING_MODEL`: directory with MiniLM's `config.json`, `tokenizer.json`,
    ///   `model.safetensors` [default: `.cache/models/all-minilm-l6-v2` under the data dir, the
    ///   working dir, or an ancestor of the executable (a repository checkout)]; `none`
    ///   disables vector retrieval.
    /// - `BERTH_EMBEDDING_API_URL`, `BERTH_EMBEDDING_API_MODEL`, `BERTH_EMBEDDING_API_KEY`,
    ///   `BERTH_EMBEDDING_API_DIMS`: an OpenAI-compatible embeddings API in place of MiniLM
    ///   (not combinable with `BERTH_EMBEDDING_MODEL`).
    /// - `BERTH_MEMORY_MODEL_PROVIDER` (`openai`, the default when a URL is given, `anthropic`
    ///   or `bedrock-converse`), `BERTH_MEMORY_MODEL` (required with a provider),
    ///   `BERTH_MEMORY_MODEL_URL` (default: the provider's public endpoint; for Bedrock
    ///   `https://bedrock-runtime.{region}.amazonaws.com`), `BERTH_MEMORY_MODEL_API_KEY`,
    ///   `BERTH_MEMORY_MODEL_REGION` (Bedrock; default `AWS_REGION`, `AWS_DEFAULT_REGION`, then
    ///   the partition's region): the extraction model. Bedrock without an API key signs with
    ///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    /// - `BERTH_MEMORY_EXTRACTION_DELAY_MS`: quiet time before a session is extracted [10000].
    ///
    /// Errors name the setting at fault.
    pub fn configure(
        partition: Partition,
        data_dir: &std::path::Path,
        settings: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut o = Self::new(partition);
        let get = |k: &str| settings.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(api) = EmbeddingsApi::from_settings(&get)? {
            o.embedder = Some(Arc::new(api));
        } else {
            let explicit = get("BERTH_EMBEDDING_MODEL");
            if explicit.as_deref() != Some("none") {
                let mut bases = vec![data_dir.to_path_buf()];
                if let Ok(cwd) = std::env::current_dir() {
                    bases.push(cwd);
                }
                if let Ok(exe) = std::env::current_exe() {
                    bases.extend(exe.ancestors().skip(1).take(4).map(PathBuf::from));
                }
                if let Some(dir) = default_model_dir(explicit.map(PathBuf::from), &bases) {
                    o.embedder = Some(Arc::new(MiniLm::load(&dir)?));
                }
            }
        }
        o.provider = ModelProvider::from_settings(&get, &o.partition.region)?;
        if let Some(ms) = get("BERTH_MEMORY_EXTRACTION_DELAY_MS") {
            let ms: u64 = ms.parse().map_err(|_| ConfigError::Invalid {
                key: "BERTH_MEMORY_EXTRACTION_DELAY_MS",
                detail: format!("{ms:?} is not a number of milliseconds"),
            })?;
            o.extraction_delay = Duration::from_millis(ms);
        }
        Ok(o)
    }
}

/// Where the default embedder's files are: `explicit` if given, else
/// `<base>/.cache/models/all-minilm-l6-v2` for the first base that holds a model.
pub fn default_model_dir(explicit: Option<PathBuf>, bases: &[PathBuf]) -> Option<PathBuf> {
    if explicit.is_some() {
        return explicit;
    }
    bases
        .iter()
        .map(|b| b.join(MiniLm::DEFAULT_SUBDIR))
        .find(|d| d.join("model.safetensors").is_file())
}

/// The memory service. Cheap to clone.
#[derive(Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

type EventReply = oneshot::Sender<Result<Inserted, berth_store::Error>>;

struct Inner {
    store: Arc<dyn MemoryStore>,
    opts: Options,
    /// Memory rows by id; every write goes through this service, so it stays coherent on one node.
    cache: RwLock<HashMap<String, MemoryRow>>,
    /// Serialises read-modify-write of memory resources. Event and record paths never take it.
    resource_lock: Mutex<()>,
    events_tx: mpsc::Sender<(EventRow, EventReply)>,
    index: index::Indexes,
    /// Wakes the extraction worker (new events, a re-started job).
    extract_wake: Notify,
    /// Last event-id sequence handed out (microseconds, bumped to stay unique).
    seq: std::sync::atomic::AtomicU64,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Memory {
    /// Starts the service and its background tasks (event writer, expiry purge, extraction),
    /// resuming work a previous process left unfinished.
    pub async fn start(
        store: Arc<dyn MemoryStore>,
        opts: Options,
        shutdown: CancellationToken,
    ) -> Result<Self, berth_store::Error> {
        let (events_tx, events_rx) = mpsc::channel(4096);
        match &opts.embedder {
            Some(e) => info!(
                embedder = e.name(),
                dims = e.dims(),
                "memory retrieval is hybrid"
            ),
            None => warn!(
                "no embedding model: memory retrieval is keyword-only; run scripts/fetch-model.sh \
                 or pass --embedding-model DIR"
            ),
        }
        if opts.provider.is_none() {
            warn!("no model provider: memory extraction jobs will fail until one is configured");
        }
        let this = Self {
            inner: Arc::new(Inner {
                store,
                opts,
                cache: RwLock::new(HashMap::new()),
                resource_lock: Mutex::new(()),
                events_tx,
                index: index::Indexes::default(),
                extract_wake: Notify::new(),
                seq: std::sync::atomic::AtomicU64::new(0),
                tasks: TaskTracker::new(),
                shutdown,
            }),
        };
        let t = this.clone();
        this.inner
            .tasks
            .spawn(async move { t.run_event_writer(events_rx).await });
        let t = this.clone();
        this.inner.tasks.spawn(async move { t.run_purge().await });
        let t = this.clone();
        this.inner
            .tasks
            .spawn(async move { t.run_extraction().await });
        this.resume().await?;
        Ok(this)
    }

    /// Waits for the background tasks to stop after shutdown was signalled.
    pub async fn closed(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// The region and account in memory ARNs.
    pub fn partition(&self) -> &Partition {
        &self.inner.opts.partition
    }
}
