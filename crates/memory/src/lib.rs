//! AgentCore Memory: memory resources and their strategies (control plane), short-term events,
//! long-term records with hybrid retrieval, and asynchronous extraction of records from events.
//!
//! Handlers hand this crate a request already validated against the service model and read
//! into its typed form (`berth_api::memory`, AgentCore member names), and get back the typed
//! response, which they serialise.
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
    /// How long what this node loaded from the store (memory rows, vector indexes) is trusted
    /// when other nodes write the same store (`None`: this node is the only writer) [default:
    /// `None`].
    pub cache_max_age: Option<Duration>,
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
            cache_max_age: None,
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

/// Memory's settings, typed: what [`Options::configure`] reads. `berth serve` fills them from its
/// layered configuration (file <- `BERTH_*` <- flags); [`Settings::from_vars`] reads them from
/// variables in the `BERTH_*` / `AWS_*` naming (tests, other embedders). Errors name a setting
/// by its variable, which `berth serve` maps to its flag. `Debug` shows which are set, never a
/// value (API keys, AWS secrets).
#[derive(Clone, Default)]
pub struct Settings {
    /// `BERTH_EMBEDDING_MODEL`: MiniLM's directory, or `none`.
    pub embedding_model: Option<String>,
    /// `BERTH_EMBEDDING_API_URL`.
    pub embedding_api_url: Option<String>,
    /// `BERTH_EMBEDDING_API_MODEL`.
    pub embedding_api_model: Option<String>,
    /// `BERTH_EMBEDDING_API_KEY`.
    pub embedding_api_key: Option<String>,
    /// `BERTH_EMBEDDING_API_DIMS`.
    pub embedding_api_dims: Option<usize>,
    /// `BERTH_MEMORY_MODEL_PROVIDER`.
    pub model_provider: Option<String>,
    /// `BERTH_MEMORY_MODEL_URL`.
    pub model_url: Option<String>,
    /// `BERTH_MEMORY_MODEL`.
    pub model: Option<String>,
    /// `BERTH_MEMORY_MODEL_API_KEY`.
    pub model_api_key: Option<String>,
    /// `BERTH_MEMORY_MODEL_REGION`.
    pub model_region: Option<String>,
    /// `BERTH_MEMORY_EXTRACTION_DELAY_MS`.
    pub extraction_delay_ms: Option<u64>,
    /// `AWS_REGION`, then `AWS_DEFAULT_REGION`: Bedrock's region when no model region is set.
    pub aws_region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: Bedrock signing.
    pub aws_credentials: (Option<String>, Option<String>, Option<String>),
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.is_some();
        f.debug_struct("Settings")
            .field("embedding_model", &self.embedding_model)
            .field("embedding_api_url", &self.embedding_api_url)
            .field("embedding_api_model", &self.embedding_api_model)
            .field("embedding_api_key_set", &set(&self.embedding_api_key))
            .field("embedding_api_dims", &self.embedding_api_dims)
            .field("model_provider", &self.model_provider)
            .field("model_url", &self.model_url)
            .field("model", &self.model)
            .field("model_api_key_set", &set(&self.model_api_key))
            .field("model_region", &self.model_region)
            .field("extraction_delay_ms", &self.extraction_delay_ms)
            .field("aws_region", &self.aws_region)
            .field("aws_credentials_set", &set(&self.aws_credentials.0))
            .finish()
    }
}

impl Settings {
    /// Settings from variables in the `BERTH_*` / `AWS_*` naming (empty means unset); numbers
    /// that do not parse are refused naming their variable.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let dims = match get("BERTH_EMBEDDING_API_DIMS") {
            None => None,
            Some(d) => Some(d.parse::<usize>().map_err(|_| ConfigError::Invalid {
                key: "BERTH_EMBEDDING_API_DIMS",
                detail: format!("{d:?} is not a positive number of dimensions"),
            })?),
        };
        let delay = match get("BERTH_MEMORY_EXTRACTION_DELAY_MS") {
            None => None,
            Some(ms) => Some(ms.parse::<u64>().map_err(|_| ConfigError::Invalid {
                key: "BERTH_MEMORY_EXTRACTION_DELAY_MS",
                detail: format!("{ms:?} is not a number of milliseconds"),
            })?),
        };
        Ok(Self {
            embedding_model: get("BERTH_EMBEDDING_MODEL"),
            embedding_api_url: get("BERTH_EMBEDDING_API_URL"),
            embedding_api_model: get("BERTH_EMBEDDING_API_MODEL"),
            embedding_api_key: get("BERTH_EMBEDDING_API_KEY"),
            embedding_api_dims: dims,
            model_provider: get("BERTH_MEMORY_MODEL_PROVIDER"),
            model_url: get("BERTH_MEMORY_MODEL_URL"),
            model: get("BERTH_MEMORY_MODEL"),
            model_api_key: get("BERTH_MEMORY_MODEL_API_KEY"),
            model_region: get("BERTH_MEMORY_MODEL_REGION"),
            extraction_delay_ms: delay,
            aws_region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            aws_credentials: (
                get("AWS_ACCESS_KEY_ID"),
                get("AWS_SECRET_ACCESS_KEY"),
                get("AWS_SESSION_TOKEN"),
            ),
        })
    }
}

impl Options {
    /// Options from [`Settings`]:
    ///
    /// - `embedding_model` (`BERTH_EMBEDDING_MODEL`): directory with MiniLM's `config.json`,
    ///   `tokenizer.json`, `model.safetensors` [default: `.cache/models/all-minilm-l6-v2` under
    ///   the data dir, the working dir, or an ancestor of the executable (a repository
    ///   checkout)]; `none` disables vector retrieval.
    /// - `embedding_api_*` (`BERTH_EMBEDDING_API_URL`, `_MODEL`, `_KEY`, `_DIMS`): an
    ///   OpenAI-compatible embeddings API in place of MiniLM (not combinable with
    ///   `embedding_model`).
    /// - `model_provider` (`openai`, the default when a URL is given, `anthropic` or
    ///   `bedrock-converse`), `model` (required with a provider), `model_url` (default: the
    ///   provider's public endpoint; for Bedrock `https://bedrock-runtime.{region}.amazonaws.com`),
    ///   `model_api_key`, `model_region` (Bedrock; default `aws_region`, then the partition's
    ///   region): the extraction model. Bedrock without an API key signs with `aws_credentials`.
    /// - `extraction_delay_ms`: quiet time before a session is extracted [10000].
    ///
    /// Errors name the setting at fault by its variable.
    pub fn configure(
        partition: Partition,
        data_dir: &std::path::Path,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        let mut o = Self::new(partition);
        if let Some(api) = EmbeddingsApi::from_settings(settings)? {
            o.embedder = Some(Arc::new(api));
        } else {
            let explicit = settings.embedding_model.clone();
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
        o.set_model(settings)?;
        if let Some(ms) = settings.extraction_delay_ms {
            o.extraction_delay = Duration::from_millis(ms);
        }
        Ok(o)
    }

    /// Sets the extraction model from `settings` alone (`model_*`), leaving the embedder as it is:
    /// `serve` points the model at its own gateway once its listener is bound, without loading
    /// the embedding model again.
    pub fn set_model(&mut self, settings: &Settings) -> Result<(), ConfigError> {
        self.provider = ModelProvider::from_settings(settings, &self.partition.region)?;
        Ok(())
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
    /// Memory rows by id, with when each was loaded (see `Options::cache_max_age`).
    cache: RwLock<HashMap<String, (MemoryRow, std::time::Instant)>>,
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
        let index = index::Indexes::with_max_age(opts.cache_max_age);
        let this = Self {
            inner: Arc::new(Inner {
                store,
                opts,
                cache: RwLock::new(HashMap::new()),
                resource_lock: Mutex::new(()),
                events_tx,
                index,
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
