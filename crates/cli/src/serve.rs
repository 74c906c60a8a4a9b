//! `berth serve`: configuration layering (defaults <- file <- env <- flags), root credentials,
//! and start-up of the store, the control plane and the HTTP listener.

use anyhow::{Context, bail};
use berth_auth::{Credentials, KeyRing};
use berth_types::Partition;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The configuration of `berth serve`, defined once: clap reads it from the flags and their
/// `BERTH_<NAME>` variables, serde from the config file (TOML, keys as the long flags with `_`,
/// the edge's in an `[edge]` table), and [`ServeArgs::over`] lays the first over the second.
/// [`ServeArgs::resolve`] then fills defaults and validates, naming the key at fault.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// Config file (TOML, keys as the long flags with `_`), e.g. `listen = "0.0.0.0:8750"`.
    #[arg(long, env = "BERTH_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8750].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the database, artifacts, builds and sessions [default: /var/lib/berth as
    /// root, else $XDG_DATA_HOME/berth or ~/.local/share/berth].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Region reported in ARNs [default: us-east-1].
    #[arg(long, env = "BERTH_REGION")]
    pub region: Option<String>,
    /// Twelve-digit account id reported in ARNs [default: 000000000000].
    #[arg(long, env = "BERTH_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Store URL [default: sqlite://<data-dir>/berth.db].
    #[arg(long, env = "BERTH_STORE")]
    pub store: Option<String>,
    /// Artifact store: `local` (in the data dir) or an external S3-compatible store URL
    /// (`s3://?endpoint=http://host:9000&region=us-east-1`) [default: local].
    #[arg(long, env = "BERTH_ARTIFACT_STORE")]
    pub artifact_store: Option<String>,
    /// Registries container images are pulled from (a TOML file): per registry host an optional
    /// `url` serving it, `credentials` (`{ basic = { username, password } }` or
    /// `{ bearer = { token } }`) and `allow_http`. ECR-style hosts not listed are served by Berth's
    /// own registry [default: none; ECR-style URIs go to the built-in registry].
    #[arg(long, env = "BERTH_REGISTRIES", value_name = "FILE")]
    pub registries: Option<PathBuf>,
    /// The model gateway (a TOML file): upstreams per model with credential pools from
    /// `berth secrets`, fallbacks, rate limits and token budgets (see ARCHITECTURE.md, "The model
    /// gateway"). With it, every sandbox gets `ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` and a key of its own [default: no gateway].
    #[arg(long, env = "BERTH_GATEWAY", value_name = "FILE")]
    pub gateway: Option<PathBuf>,
    /// How sessions are isolated: `namespaces` or `process` (no isolation: development only)
    /// [default: namespaces where the host allows them (root), else process, with a notice].
    #[arg(long, env = "BERTH_ISOLATION")]
    pub isolation: Option<String>,
    /// Pre-started sandboxes kept per serving version [default: 1].
    #[arg(long, env = "BERTH_WARM_POOL")]
    pub warm_pool: Option<usize>,
    /// Seconds an agent may take to answer its first /ping [default: 60].
    #[arg(long, env = "BERTH_START_TIMEOUT")]
    pub start_timeout: Option<u64>,
    /// Milliseconds between /ping polls of a live session [default: 2000].
    #[arg(long, env = "BERTH_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Memory limit per session in MiB [default: 2048].
    #[arg(long, env = "BERTH_SESSION_MEMORY_MIB")]
    pub session_memory_mib: Option<u64>,
    /// Process/thread limit per session [default: 512].
    #[arg(long, env = "BERTH_SESSION_PIDS")]
    pub session_pids: Option<u64>,
    /// CPU limit per session in thousandths of a core [default: 2000].
    #[arg(long, env = "BERTH_SESSION_CPU_MILLIS")]
    pub session_cpu_millis: Option<u64>,
    /// Accept lifecycle timeouts below AgentCore's 60 s minimum (for tests; off by default).
    #[arg(long, env = "BERTH_ALLOW_SHORT_LIFECYCLE")]
    pub allow_short_lifecycle: bool,
    /// Milliseconds in one second of rollout and drain time; lower it to compress rollouts in
    /// tests [default: 1000].
    #[arg(long, env = "BERTH_ROLLOUT_SECOND_MS")]
    pub rollout_second_ms: Option<u64>,
    /// Milliseconds between traffic controller runs: health flush, rollout analysis, drain
    /// deadlines [default: 1000].
    #[arg(long, env = "BERTH_TRAFFIC_TICK_MS")]
    pub traffic_tick_ms: Option<u64>,
    /// Width of a stored per-version health bucket in milliseconds [default: 10000].
    #[arg(long, env = "BERTH_HEALTH_BUCKET_MS")]
    pub health_bucket_ms: Option<u64>,
    /// Seconds a version leaving an endpoint keeps its sessions before they are stopped
    /// [default: 3600].
    #[arg(long, env = "BERTH_DRAIN_SECONDS")]
    pub drain_seconds: Option<u64>,
    /// Address of an unauthenticated Prometheus `/metrics` listener [default: none; the same
    /// text is always at the signed `/berth/v1/metrics`].
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Several nodes, one installation: the URL other nodes reach this node at
    /// (`http://host:port`; port 0 means the listener's), given to every node sharing one
    /// `--store` (PostgreSQL, or SQLite on one host). Without it the node serves alone [default:
    /// none].
    #[arg(long, env = "BERTH_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// Several nodes: milliseconds a node counts as alive after renewing its lease (renewed every
    /// third of it); a dead node's sessions restart elsewhere after it [default: 10000].
    #[arg(long, env = "BERTH_NODE_LEASE_MS")]
    pub node_lease_ms: Option<u64>,
    /// Egress allow-list: CIDRs, addresses or host names (`.example.com` for a domain) agents and
    /// builds may reach although the default egress policy denies them (private networks,
    /// metadata), e.g. an internal service or package mirror; the only destinations of VPC-mode
    /// runtimes. Repeat the flag or separate entries with commas [default: none].
    #[arg(long, env = "BERTH_EGRESS_ALLOW", value_name = "CIDR|HOST")]
    pub egress_allow: Vec<String>,
    /// Memory: directory of the in-process embedding model (MiniLM-L6-v2's `config.json`,
    /// `tokenizer.json`, `model.safetensors`; `scripts/fetch-model.sh` fetches them), or `none` for
    /// keyword-only retrieval [default: `.cache/models/all-minilm-l6-v2` under the data dir, the
    /// working dir or the checkout, if there].
    #[arg(long, env = "BERTH_EMBEDDING_MODEL", value_name = "DIR|none")]
    pub embedding_model: Option<String>,
    /// Memory: base URL of an OpenAI-compatible embeddings API (`POST {URL}/embeddings`) to use
    /// instead of the in-process model, e.g. `https://api.openai.com/v1`.
    #[arg(long, env = "BERTH_EMBEDDING_API_URL", value_name = "URL")]
    pub embedding_api_url: Option<String>,
    /// Memory: model name sent to the embeddings API (required with --embedding-api-url).
    #[arg(long, env = "BERTH_EMBEDDING_API_MODEL", value_name = "NAME")]
    pub embedding_api_model: Option<String>,
    /// Memory: name of the environment variable holding the embeddings API key, sent as a bearer
    /// token [default: the key itself in BERTH_EMBEDDING_API_KEY, if set].
    #[arg(long, env = "BERTH_EMBEDDING_API_KEY_ENV", value_name = "VAR")]
    pub embedding_api_key_env: Option<String>,
    /// Memory: vector dimension of the embeddings API [default: learned from its first answer].
    #[arg(long, env = "BERTH_EMBEDDING_API_DIMS", value_name = "N")]
    pub embedding_api_dims: Option<usize>,
    /// Memory: API of the extraction model: `openai` (chat completions), `anthropic` (Messages)
    /// or `bedrock-converse` (Bedrock Runtime Converse, SigV4-signed with AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) [default: openai if --memory-model-url is set;
    /// otherwise no model, and extraction jobs fail saying so].
    #[arg(long, env = "BERTH_MEMORY_MODEL_PROVIDER", value_name = "PROVIDER")]
    pub memory_model_provider: Option<String>,
    /// Memory: base URL of the extraction model's API [default: the provider's public endpoint;
    /// for bedrock-converse `https://bedrock-runtime.{region}.amazonaws.com`].
    #[arg(long, env = "BERTH_MEMORY_MODEL_URL", value_name = "URL")]
    pub memory_model_url: Option<String>,
    /// Memory: extraction model name (Bedrock: model id, inference profile id or ARN).
    #[arg(long, env = "BERTH_MEMORY_MODEL", value_name = "NAME")]
    pub memory_model: Option<String>,
    /// Memory: name of the environment variable holding the extraction model's API key
    /// (OpenAI bearer token, Anthropic x-api-key, or a Bedrock API key used instead of SigV4)
    /// [default: the key itself in BERTH_MEMORY_MODEL_API_KEY, if set].
    #[arg(long, env = "BERTH_MEMORY_MODEL_API_KEY_ENV", value_name = "VAR")]
    pub memory_model_api_key_env: Option<String>,
    /// Memory: region bedrock-converse requests are signed for [default: AWS_REGION,
    /// AWS_DEFAULT_REGION, then --region].
    #[arg(long, env = "BERTH_MEMORY_MODEL_REGION", value_name = "REGION")]
    pub memory_model_region: Option<String>,
    /// Memory: milliseconds a session must be quiet before its new events are extracted
    /// [default: 10000].
    #[arg(long, env = "BERTH_MEMORY_EXTRACTION_DELAY_MS", value_name = "MS")]
    pub memory_extraction_delay_ms: Option<u64>,
    /// Evaluations: API of the judge model LLM evaluators call: `openai`, `anthropic` or
    /// `bedrock-converse`, as for memory [default: memory's model settings, when none of the
    /// `--eval-model*` flags is given; without either, judge evaluators answer per-result errors].
    #[arg(long, env = "BERTH_EVAL_MODEL_PROVIDER", value_name = "PROVIDER")]
    pub eval_model_provider: Option<String>,
    /// Evaluations: base URL of the judge model's API [default: the provider's public endpoint].
    #[arg(long, env = "BERTH_EVAL_MODEL_BASE_URL", value_name = "URL")]
    pub eval_model_base_url: Option<String>,
    /// Evaluations: the model built-in judges use (custom evaluators name their own).
    #[arg(long, env = "BERTH_EVAL_MODEL", value_name = "NAME")]
    pub eval_model: Option<String>,
    /// Evaluations: name of the environment variable holding the judge model's API key
    /// [default: `BERTH_EVAL_MODEL_API_KEY`].
    #[arg(long, env = "BERTH_EVAL_MODEL_API_KEY_ENV", value_name = "VAR")]
    pub eval_model_api_key_env: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before they are cancelled
    /// (streams end, sandboxes are destroyed) [default: 30].
    #[arg(long, env = "BERTH_SHUTDOWN_DRAIN_SECONDS", value_name = "S")]
    pub shutdown_drain_seconds: Option<u64>,
    /// Sandboxes (live sessions and warm ones) the server may hold [default: 4 x host memory /
    /// session memory, at least 16].
    #[arg(long, env = "BERTH_MAX_SESSIONS", value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Sandboxes one runtime may hold [default: half of --max-sessions, at least 8].
    #[arg(long, env = "BERTH_MAX_SESSIONS_PER_RUNTIME", value_name = "N")]
    pub max_sessions_per_runtime: Option<usize>,
    /// New sessions per second the server may open (burst: twice that) [default: 50].
    #[arg(long, env = "BERTH_SESSION_RATE", value_name = "PER_SECOND")]
    pub session_rate: Option<f64>,
    /// New sessions per second one runtime may open (burst: twice that) [default: 20].
    #[arg(
        long,
        env = "BERTH_SESSION_RATE_PER_RUNTIME",
        value_name = "PER_SECOND"
    )]
    pub session_rate_per_runtime: Option<f64>,
    /// Memory of all sandboxes together, in MiB (their parent cgroup's limit) [default: host
    /// memory less an eighth, at least 512 MiB, kept for the host].
    #[arg(long, env = "BERTH_SANDBOXES_MEMORY_MIB", value_name = "MIB")]
    pub sandboxes_memory_mib: Option<u64>,
    /// Processes and threads of all sandboxes together [default: half the host's pid_max, at
    /// most 65536].
    #[arg(long, env = "BERTH_SANDBOXES_PIDS", value_name = "N")]
    pub sandboxes_pids: Option<u64>,
    /// Hours spans and agent log records are kept (`<data-dir>/traces.db`, or the PostgreSQL
    /// store's schema `berth_trace`); fractions are allowed (`0.5`) [default: 168].
    #[arg(long, env = "BERTH_TRACE_RETENTION_HOURS", value_name = "H")]
    pub trace_retention_hours: Option<f64>,
    /// Size the trace store is held under, in MiB; the oldest traces go first [default: 1024].
    #[arg(long, env = "BERTH_TRACE_MAX_MIB", value_name = "MIB")]
    pub trace_max_mib: Option<u64>,
    /// Record Berth's own span of every invocation in the trace store (agents' spans are
    /// received either way) [default: true].
    #[arg(long, env = "BERTH_INVOCATION_SPANS", value_name = "BOOL")]
    pub invocation_spans: Option<bool>,
    /// GenAI price of a model, in USD per million tokens: `MODEL=INPUT/OUTPUT[/CACHE_READ
    /// [/CACHE_WRITE]]` (e.g. `gpt-4o=2.5/10/1.25`), `MODEL` as agents' spans name it in
    /// `gen_ai.request.model`. Repeat the flag or separate entries with commas; usage of a model
    /// not listed has no cost [default: none].
    #[arg(
        long,
        env = "BERTH_MODEL_PRICES",
        value_name = "MODEL=IN/OUT[/CR[/CW]]"
    )]
    pub model_prices: Vec<String>,
    /// Evaluations: the Berth runtime a `codeBased` evaluator's Lambda runs as,
    /// `LAMBDA_ARN=RUNTIME_ID` (or `=RUNTIME_ARN`); `Evaluate` invokes that runtime with the
    /// evaluator's event, sandboxed like any invocation. Repeat the flag [default: none, and
    /// code evaluators answer an error naming this flag].
    #[arg(
        long,
        env = "BERTH_EVAL_CODE_RUNTIME",
        value_name = "LAMBDA_ARN=RUNTIME"
    )]
    pub eval_code_runtime: Vec<String>,
    /// Milliseconds between trace retention passes [default: 60000].
    #[arg(long, env = "BERTH_TRACE_RETENTION_TICK_MS", value_name = "MS")]
    pub trace_retention_tick_ms: Option<u64>,
    /// OTLP/HTTP collector to export stored spans and log records to (Jaeger, Tempo, an
    /// OpenTelemetry Collector, Langfuse), as a base URL: they go to `<URL>/v1/traces` and
    /// `<URL>/v1/logs` [default: no export].
    #[arg(long, env = "BERTH_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every export, `key=value` pairs separated by `,`, values
    /// percent-encoded (the `OTEL_EXPORTER_OTLP_HEADERS` form, e.g.
    /// `Authorization=Basic%20...`). Credentials belong in the variable or the config file:
    /// flags show in `ps`.
    #[arg(
        long,
        env = "BERTH_OTLP_HEADERS",
        value_name = "K=V,...",
        hide_env_values = true
    )]
    pub otlp_headers: Option<String>,
    /// Gzip the export requests.
    #[arg(long, env = "BERTH_OTLP_GZIP")]
    pub otlp_gzip: bool,
    /// Largest blob one push may store in the built-in OCI registry (`/v2/`), in MiB
    /// [default: 10240].
    #[arg(long, env = "BERTH_REGISTRY_MAX_BLOB_MIB")]
    pub registry_max_blob_mib: Option<u64>,
    /// Connection and body limits of the HTTP edge.
    #[command(flatten)]
    pub edge: crate::edge_args::EdgeArgs,
    /// Online evaluation and drift alerts (`[evaluation]` in the config file).
    #[command(flatten)]
    #[serde(rename = "evaluation")]
    pub eval_loop: crate::eval_args::EvalLoopArgs,
}

/// Resolved configuration of a server.
#[derive(Debug)]
pub struct Config {
    /// Listen address.
    pub listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// ARN partition.
    pub partition: Partition,
    /// Store URL.
    pub store: String,
    /// Artifact store URL (`local` or external).
    pub artifact_store: String,
    /// Where container images are pulled from (the built-in registry is added at start).
    pub registries: berth_oci::reference::Registries,
    /// The model gateway's configuration, if one is served.
    pub gateway: Option<berth_gateway::Config>,
    /// Session isolation.
    pub isolation: berth_runtime::Isolation,
    /// Whether the isolation was chosen by a flag, variable or config key (else it is the default,
    /// which falls back to process isolation where namespaces are unavailable).
    pub isolation_chosen: bool,
    /// Warm sandboxes per serving version.
    pub warm_pool: usize,
    /// First /ping deadline.
    pub start_timeout: std::time::Duration,
    /// /ping polling period.
    pub ping_interval: std::time::Duration,
    /// Per-session cgroup limits.
    pub limits: berth_runtime::Limits,
    /// Relaxed AgentCore limits (tests).
    pub relax: berth_api::model::Relax,
    /// Traffic, rollout and health settings.
    pub traffic: berth_control::Options,
    /// Unauthenticated Prometheus listener.
    pub metrics_listen: Option<String>,
    /// The URL other nodes reach this one at; `None`: standalone.
    pub advertise: Option<String>,
    /// How long a node's lease runs.
    pub node_lease: std::time::Duration,
    /// The operator's egress allow-list.
    pub egress_allow: Vec<berth_runtime::sandbox::EgressRule>,
    /// Memory settings (typed; `Debug` shows no secret).
    pub memory: berth_memory::Settings,
    /// Where LLM evaluators' judge calls go.
    pub judge: berth_eval::JudgeSettings,
    /// How long in-flight work may run on after a stop signal.
    pub shutdown_drain: std::time::Duration,
    /// Caps on sandboxes and on new sessions per second.
    pub quotas: berth_runtime::quota::Quotas,
    /// Limits of the parent cgroup of all sandboxes.
    pub parent_limits: berth_runtime::sandbox::ParentLimits,
    /// Connection and body limits of the HTTP edge.
    pub edge: berth_server::EdgeOptions,
    /// The built-in OCI registry's per-blob cap in bytes.
    pub registry_max_blob_bytes: u64,
    /// How much of the trace store is kept.
    pub trace_retention: berth_trace::Retention,
    /// Whether the invoker records Berth's span of each invocation.
    pub invocation_spans: bool,
    /// GenAI prices per model id.
    pub model_prices: berth_trace::usage::Prices,
    /// `codeBased` evaluators' Lambda ARNs and the runtimes they run as.
    pub eval_code_runtimes: std::collections::BTreeMap<String, String>,
    /// How often retention runs.
    pub trace_retention_every: std::time::Duration,
    /// OTLP export to an external collector, if configured.
    pub trace_export: Option<berth_trace::export::ExportOptions>,
    /// Online evaluation.
    pub online: berth_eval::online::OnlineOptions,
    /// Drift alerts.
    pub drift: berth_eval::alerts::DriftOptions,
}

/// Memory settings and the `berth serve` flag that sets each (the API keys are set through the
/// variable a flag names, see [`ServeArgs::memory_settings`]).
const MEMORY_FLAGS: [(&str, &str); 9] = [
    ("BERTH_EMBEDDING_MODEL", "--embedding-model"),
    ("BERTH_EMBEDDING_API_URL", "--embedding-api-url"),
    ("BERTH_EMBEDDING_API_MODEL", "--embedding-api-model"),
    ("BERTH_EMBEDDING_API_DIMS", "--embedding-api-dims"),
    ("BERTH_MEMORY_MODEL_PROVIDER", "--memory-model-provider"),
    ("BERTH_MEMORY_MODEL_URL", "--memory-model-url"),
    ("BERTH_MEMORY_MODEL", "--memory-model"),
    ("BERTH_MEMORY_MODEL_REGION", "--memory-model-region"),
    (
        "BERTH_MEMORY_EXTRACTION_DELAY_MS",
        "--memory-extraction-delay-ms",
    ),
];

impl ServeArgs {
    /// The judge's settings: the `--eval-model*` flags, or memory's model settings when none of
    /// them is given (one configured model serves both); the API key from the variable
    /// `--eval-model-api-key-env` names (or `BERTH_EVAL_MODEL_API_KEY`), the `AWS_*` credentials
    /// Bedrock signs with from memory's.
    fn judge_settings(
        &self,
        env: &HashMap<String, String>,
        memory: &berth_memory::Settings,
        region: &str,
    ) -> anyhow::Result<berth_eval::JudgeSettings> {
        use berth_memory::provider::ProviderKind;
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let own = self.eval_model_provider.is_some()
            || self.eval_model_base_url.is_some()
            || self.eval_model.is_some();
        let (provider, base_url, model, api_key) = if own {
            let key = match &self.eval_model_api_key_env {
                Some(var) => Some(get(var).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--eval-model-api-key-env (BERTH_EVAL_MODEL_API_KEY_ENV): environment \
                         variable {var:?} is not set or empty"
                    )
                })?),
                None => get("BERTH_EVAL_MODEL_API_KEY"),
            };
            (
                self.eval_model_provider.clone(),
                self.eval_model_base_url.clone(),
                self.eval_model.clone(),
                key,
            )
        } else {
            (
                memory.model_provider.clone(),
                memory.model_url.clone(),
                memory.model.clone(),
                memory.model_api_key.clone(),
            )
        };
        let provider = match provider {
            Some(p) => Some(ProviderKind::parse(&p).ok_or_else(|| {
                invalid(
                    "eval_model_provider",
                    format!("{p:?} is not one of openai, anthropic, bedrock-converse"),
                )
            })?),
            None if base_url.is_some() => Some(ProviderKind::OpenAiCompatible),
            None => None,
        };
        if let Some(p) = provider
            && model.is_none()
        {
            return Err(invalid(
                "eval_model",
                format!("the {} judge provider needs a model name", p.name()),
            ));
        }
        if let Some(u) = &base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(invalid(
                "eval_model_base_url",
                format!("{u:?} is not an http:// or https:// url"),
            ));
        }
        let judge_region = memory
            .model_region
            .clone()
            .or_else(|| memory.aws_region.clone())
            .unwrap_or_else(|| region.to_owned());
        let aws = match (provider, &api_key, &memory.aws_credentials) {
            (Some(ProviderKind::BedrockConverse), None, (Some(id), Some(secret), token)) => {
                Some(berth_memory::AwsSigning {
                    region: judge_region.clone(),
                    credentials: berth_auth::Credentials {
                        access_key_id: id.clone(),
                        secret_access_key: secret.clone(),
                    },
                    session_token: token.clone(),
                })
            }
            (Some(ProviderKind::BedrockConverse), None, _) => {
                return Err(invalid(
                    "eval_model_provider",
                    "bedrock-converse signs its requests with AWS credentials: set \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give a Bedrock API key",
                ));
            }
            _ => None,
        };
        Ok(berth_eval::JudgeSettings {
            provider,
            base_url,
            api_key,
            aws,
            region: judge_region,
            default_model: model,
            timeout: std::time::Duration::from_secs(60),
            retries: 2,
        })
    }

    /// The memory settings: the layered memory keys (file <- env <- flag, see
    /// [`ServeArgs::over`]), the API keys from the variables the flags name (or
    /// `BERTH_EMBEDDING_API_KEY` / `BERTH_MEMORY_MODEL_API_KEY` themselves), and the `AWS_*`
    /// variables Bedrock signs with, all from `env` (the process environment, a parameter so tests
    /// never touch the real one).
    fn memory_settings(
        &self,
        env: HashMap<String, String>,
    ) -> anyhow::Result<berth_memory::Settings> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        // Keys never come from argv (visible in `ps`): the flags name the variable holding one.
        let key = |own: &str, flag: &str, var: &Option<String>| -> anyhow::Result<Option<String>> {
            let Some(var) = var else {
                return Ok(get(own));
            };
            match get(var) {
                Some(secret) => Ok(Some(secret)),
                None => bail!("{flag}: environment variable {var:?} is not set or empty"),
            }
        };
        Ok(berth_memory::Settings {
            embedding_model: self.embedding_model.clone(),
            embedding_api_url: self.embedding_api_url.clone(),
            embedding_api_model: self.embedding_api_model.clone(),
            embedding_api_key: key(
                "BERTH_EMBEDDING_API_KEY",
                "--embedding-api-key-env (BERTH_EMBEDDING_API_KEY_ENV)",
                &self.embedding_api_key_env,
            )?,
            embedding_api_dims: self.embedding_api_dims,
            model_provider: self.memory_model_provider.clone(),
            model_url: self.memory_model_url.clone(),
            model: self.memory_model.clone(),
            model_api_key: key(
                "BERTH_MEMORY_MODEL_API_KEY",
                "--memory-model-api-key-env (BERTH_MEMORY_MODEL_API_KEY_ENV)",
                &self.memory_model_api_key_env,
            )?,
            model_region: self.memory_model_region.clone(),
            extraction_delay_ms: self.memory_extraction_delay_ms,
            aws_region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            aws_credentials: (
                get("AWS_ACCESS_KEY_ID"),
                get("AWS_SECRET_ACCESS_KEY"),
                get("AWS_SESSION_TOKEN"),
            ),
        })
    }
}

/// `--flag (BERTH_KEY)` for a memory setting, or the key alone when no flag sets it
/// (`AWS_ACCESS_KEY_ID`).
fn memory_flag(key: &str) -> String {
    match MEMORY_FLAGS.iter().find(|(k, _)| *k == key) {
        Some((_, flag)) => format!("{flag} ({key})"),
        None => key.to_owned(),
    }
}

/// A memory configuration error as one line naming the flag at fault.
fn memory_config_error(e: berth_memory::ConfigError) -> anyhow::Error {
    match e {
        berth_memory::ConfigError::Invalid { key, detail } => {
            anyhow::anyhow!("{}: {detail}", memory_flag(key))
        }
        berth_memory::ConfigError::Embedder(e) => {
            anyhow::anyhow!("{}: {e}", memory_flag("BERTH_EMBEDDING_MODEL"))
        }
    }
}

/// The default data dir (see [`crate::datadir::default_data_dir`]).
pub fn default_data_dir() -> PathBuf {
    crate::datadir::default_data_dir()
}

/// A value that cannot work, as one line naming its key the ways it can be given: the flag,
/// its variable, and (same name with `_`) the config file's key.
pub(crate) fn invalid(key: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    let flag = key.replace('_', "-");
    let var = format!("BERTH_{}", key.to_ascii_uppercase());
    anyhow::anyhow!("invalid value for {flag} ({var}): {detail}")
}

/// `trace_retention_hours` in nanoseconds: positive, at most a century.
fn retention_ns(hours: f64) -> anyhow::Result<i64> {
    if !(hours.is_finite() && hours > 0.0) {
        return Err(invalid(
            "trace_retention_hours",
            format!("{hours} is not a positive number of hours"),
        ));
    }
    if hours > 876_000.0 {
        return Err(invalid("trace_retention_hours", "too large"));
    }
    // At most 876,000 h = 3.2e18 ns, within i64.
    Ok((hours * 3_600_000_000_000.0) as i64)
}

/// `v` when it is at least 1, else the error naming `key`.
pub(crate) fn positive<T: PartialEq + From<u8>>(key: &str, v: T) -> anyhow::Result<T> {
    if v == T::from(0) {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(v)
}

impl ServeArgs {
    /// Reads the config file (a missing `--config` is an empty one).
    fn file(path: Option<&Path>) -> anyhow::Result<ServeArgs> {
        let Some(p) = path else {
            return Ok(ServeArgs::default());
        };
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading config file {}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", p.display()))
    }

    /// The layering, in one place: `self` (flags, each already laid over its `BERTH_*` variable
    /// by clap) over `file` (the config file). A list (`egress_allow`) from the flags replaces
    /// the file's; a switch is on if either turns it on. The struct literal names every field,
    /// so a new setting cannot be left out.
    fn over(self, file: ServeArgs) -> ServeArgs {
        macro_rules! layered {
            ($($field:ident),* $(,)?) => {
                ServeArgs {
                    $($field: self.$field.or(file.$field),)*
                    config: self.config,
                    allow_short_lifecycle: self.allow_short_lifecycle || file.allow_short_lifecycle,
                    otlp_gzip: self.otlp_gzip || file.otlp_gzip,
                    egress_allow: if self.egress_allow.is_empty() {
                        file.egress_allow
                    } else {
                        self.egress_allow
                    },
                    model_prices: if self.model_prices.is_empty() {
                        file.model_prices
                    } else {
                        self.model_prices
                    },
                    eval_code_runtime: if self.eval_code_runtime.is_empty() {
                        file.eval_code_runtime
                    } else {
                        self.eval_code_runtime
                    },
                    edge: self.edge.over(file.edge),
                    eval_loop: self.eval_loop.over(file.eval_loop),
                }
            };
        }
        layered!(
            listen,
            data_dir,
            region,
            account_id,
            store,
            artifact_store,
            registries,
            gateway,
            isolation,
            warm_pool,
            start_timeout,
            ping_interval_ms,
            session_memory_mib,
            session_pids,
            session_cpu_millis,
            rollout_second_ms,
            traffic_tick_ms,
            health_bucket_ms,
            drain_seconds,
            metrics_listen,
            advertise,
            node_lease_ms,
            embedding_model,
            embedding_api_url,
            embedding_api_model,
            embedding_api_key_env,
            embedding_api_dims,
            memory_model_provider,
            memory_model_url,
            memory_model,
            memory_model_api_key_env,
            memory_model_region,
            memory_extraction_delay_ms,
            eval_model_provider,
            eval_model_base_url,
            eval_model,
            eval_model_api_key_env,
            shutdown_drain_seconds,
            max_sessions,
            max_sessions_per_runtime,
            session_rate,
            session_rate_per_runtime,
            sandboxes_memory_mib,
            sandboxes_pids,
            trace_retention_hours,
            trace_max_mib,
            invocation_spans,
            trace_retention_tick_ms,
            otlp_endpoint,
            otlp_headers,
            registry_max_blob_mib,
        )
    }

    /// Defaults <- config file <- `BERTH_*` <- flags, then defaults filled and every value
    /// checked; an error names the key at fault.
    fn resolve(self) -> anyhow::Result<Config> {
        let file = Self::file(self.config.as_deref())?;
        self.over(file).settle(std::env::vars().collect())
    }

    /// Fills defaults into layered settings and validates them; `env` is the process
    /// environment (a parameter so tests never touch the real one).
    fn settle(self, env: HashMap<String, String>) -> anyhow::Result<Config> {
        let eval_env = env.clone();
        let memory = self.memory_settings(env)?;
        let own_judge = self.eval_model_provider.is_some()
            || self.eval_model_base_url.is_some()
            || self.eval_model.is_some();
        let judge = match self.judge_settings(
            &eval_env,
            &memory,
            self.region.as_deref().unwrap_or("us-east-1"),
        ) {
            Ok(j) => j,
            // Borrowed from memory's settings: memory's own check names its flags when they are
            // wrong; the judge is then not configured.
            Err(_) if !own_judge => berth_eval::JudgeSettings::default(),
            Err(e) => return Err(e),
        };
        let data_dir = self.data_dir.unwrap_or_else(default_data_dir);
        let region = self.region.unwrap_or_else(|| "us-east-1".into());
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "region",
                format!("{region:?} is not a region name like us-east-1"),
            ));
        }
        let account_id = self.account_id.unwrap_or_else(|| "000000000000".into());
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "account_id",
                format!("{account_id:?} must be twelve digits"),
            ));
        }
        let store = self
            .store
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("berth.db").display()));
        if let Err(e) = berth_store::StoreUrl::parse(&store) {
            return Err(invalid("store", e));
        }
        let isolation_chosen = self.isolation.is_some();
        let isolation = match self.isolation.as_deref().unwrap_or("namespaces") {
            "namespaces" => berth_runtime::Isolation::Namespaces,
            "process" => berth_runtime::Isolation::Process,
            other => {
                return Err(invalid(
                    "isolation",
                    format!("{other:?} is not one of namespaces, process"),
                ));
            }
        };
        let ping_ms = positive("ping_interval_ms", self.ping_interval_ms.unwrap_or(2000))?;
        let traffic = berth_control::Options {
            second_ms: positive("rollout_second_ms", self.rollout_second_ms.unwrap_or(1000))?,
            tick: std::time::Duration::from_millis(positive(
                "traffic_tick_ms",
                self.traffic_tick_ms.unwrap_or(1000),
            )?),
            health_bucket_ms: i64::try_from(positive(
                "health_bucket_ms",
                self.health_bucket_ms.unwrap_or(10_000),
            )?)
            .map_err(|_| invalid("health_bucket_ms", "too large"))?,
            drain_seconds: self.drain_seconds.unwrap_or(3600),
            ..berth_control::Options::default()
        };
        let limits = berth_runtime::Limits {
            memory_bytes: Some(self.session_memory_mib.unwrap_or(2048) * 1024 * 1024),
            pids: Some(self.session_pids.unwrap_or(512)),
            cpu_millis: Some(self.session_cpu_millis.unwrap_or(2000)),
        };
        let host_memory = berth_runtime::recovery::host_memory_bytes();
        let mut quotas = berth_runtime::quota::Quotas::for_host(
            host_memory.unwrap_or(8 << 30),
            limits.memory_bytes,
        );
        if let Some(n) = self.max_sessions {
            quotas.host_live = n;
            quotas.runtime_live = quotas.runtime_live.min(n);
        }
        if let Some(n) = self.max_sessions_per_runtime {
            quotas.runtime_live = n;
        }
        let rate = |key: &str, v: Option<f64>, default: f64| -> anyhow::Result<f64> {
            match v.unwrap_or(default) {
                r if r.is_finite() && r > 0.0 => Ok(r),
                r => Err(invalid(
                    key,
                    format!("{r} is not a positive number of sessions per second"),
                )),
            }
        };
        quotas.host_rate = rate("session_rate", self.session_rate, quotas.host_rate)?;
        quotas.runtime_rate = rate(
            "session_rate_per_runtime",
            self.session_rate_per_runtime,
            quotas.runtime_rate,
        )?;
        let mut parent_limits = berth_runtime::recovery::default_parent_limits(host_memory);
        if let Some(mib) = self.sandboxes_memory_mib {
            parent_limits.memory_bytes = Some(positive("sandboxes_memory_mib", mib)? << 20);
        }
        if let Some(n) = self.sandboxes_pids {
            parent_limits.pids = Some(positive("sandboxes_pids", n)?);
        }
        let shutdown_drain =
            std::time::Duration::from_secs(self.shutdown_drain_seconds.unwrap_or(30));
        let (online, drift) = self.eval_loop.resolve()?;
        Ok(Config {
            listen: self.listen.unwrap_or_else(|| "127.0.0.1:8750".into()),
            data_dir,
            partition: Partition { region, account_id },
            store,
            artifact_store: self.artifact_store.unwrap_or_else(|| "local".into()),
            registries: match &self.registries {
                None => berth_oci::reference::Registries::default(),
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| invalid("registries", format!("{}: {e}", path.display())))?;
                    toml::from_str(&text)
                        .map_err(|e| invalid("registries", format!("{}: {e}", path.display())))?
                }
            },
            gateway: match &self.gateway {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| invalid("gateway", format!("{}: {e}", path.display())))?;
                    Some(
                        berth_gateway::Config::parse(&text)
                            .map_err(|e| invalid("gateway", format!("{}: {e}", path.display())))?,
                    )
                }
            },
            isolation,
            isolation_chosen,
            warm_pool: self.warm_pool.unwrap_or(1),
            start_timeout: std::time::Duration::from_secs(self.start_timeout.unwrap_or(60)),
            ping_interval: std::time::Duration::from_millis(ping_ms),
            limits,
            relax: berth_api::model::Relax {
                lifecycle_minimum: self.allow_short_lifecycle,
            },
            traffic,
            metrics_listen: self.metrics_listen,
            advertise: match self.advertise {
                None => None,
                Some(url) => {
                    let uri: http::Uri = url
                        .parse()
                        .map_err(|e| invalid("advertise", format!("{url:?}: {e}")))?;
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        return Err(invalid(
                            "advertise",
                            format!("{url:?} is not an http://host:port URL"),
                        ));
                    }
                    Some(url.trim_end_matches('/').to_owned())
                }
            },
            node_lease: std::time::Duration::from_millis(positive(
                "node_lease_ms",
                self.node_lease_ms.unwrap_or(10_000),
            )?),
            egress_allow: self
                .egress_allow
                .iter()
                .map(|s| berth_runtime::sandbox::EgressRule::parse_list(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("egress_allow", e))?
                .concat(),
            memory,
            judge,
            shutdown_drain,
            quotas,
            parent_limits,
            edge: self.edge.resolve()?,
            registry_max_blob_bytes: positive(
                "registry_max_blob_mib",
                self.registry_max_blob_mib.unwrap_or(10 * 1024),
            )?
            .saturating_mul(1 << 20),
            online,
            drift,
            trace_retention: berth_trace::Retention {
                max_age_ns: retention_ns(self.trace_retention_hours.unwrap_or(168.0))?,
                max_bytes: positive("trace_max_mib", self.trace_max_mib.unwrap_or(1024))?
                    .saturating_mul(1 << 20),
            },
            invocation_spans: self.invocation_spans.unwrap_or(true),
            model_prices: berth_trace::usage::Prices::parse(
                self.model_prices
                    .iter()
                    .flat_map(|s| s.split(','))
                    .filter(|s| !s.trim().is_empty()),
            )
            .map_err(|e| invalid("model_prices", e))?,
            eval_code_runtimes: berth_server::code_runtimes(&self.eval_code_runtime)
                .map_err(|e| invalid("eval_code_runtime", e.message))?,
            trace_retention_every: std::time::Duration::from_millis(positive(
                "trace_retention_tick_ms",
                self.trace_retention_tick_ms.unwrap_or(60_000),
            )?),
            trace_export: self
                .otlp_endpoint
                .as_deref()
                .map(|url| -> anyhow::Result<_> {
                    let mut o = berth_trace::export::ExportOptions::new(url)
                        .map_err(|e| invalid("otlp_endpoint", e))?;
                    if let Some(h) = &self.otlp_headers {
                        o.headers = berth_trace::export::ExportOptions::parse_headers(h)
                            .map_err(|e| invalid("otlp_headers", e))?;
                    }
                    o.gzip = self.otlp_gzip;
                    Ok(o)
                })
                .transpose()?,
        })
    }
}

/// Runtimes' workload access tokens, from AgentCore Identity's vault.
struct RuntimeTokens(berth_identity::Identity);

#[async_trait::async_trait]
impl berth_runtime::session::WorkloadTokens for RuntimeTokens {
    async fn prepare(&self, runtime_name: &str) -> Result<(), String> {
        self.0
            .ensure_runtime_identity(runtime_name)
            .await
            .map_err(|e| e.message)
    }

    fn token(&self, runtime_name: &str, user: Option<&str>) -> (String, i64) {
        self.0.runtime_token(runtime_name, user)
    }
}

/// The values of runtimes' `berth-secret:NAME` environment variables, read at each sandbox start.
struct SecretValues(berth_identity::secrets::Secrets);

#[async_trait::async_trait]
impl berth_runtime::session::SecretValues for SecretValues {
    async fn value(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.get(name).await {
            Ok(found) => Ok(found.map(|s| s.value)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The address to reach a listener at from this host (a wildcard bind is reached on loopback).
fn loopback(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, addr.port()).into()
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, addr.port()).into()
        }
        _ => addr,
    }
}

const CREDENTIALS_FILE: &str = "credentials.json";

#[derive(serde::Serialize, Deserialize)]
struct StoredCredentials {
    access_key_id: String,
    secret_access_key: String,
}

/// Root credentials from `BERTH_ACCESS_KEY_ID`/`BERTH_SECRET_ACCESS_KEY`, else from the data dir.
pub fn existing_root_credentials(data_dir: &Path) -> anyhow::Result<Option<Credentials>> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("BERTH_ACCESS_KEY_ID"),
        std::env::var("BERTH_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Some(Credentials {
            access_key_id: id,
            secret_access_key: secret,
        }));
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let s: StoredCredentials = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(Credentials {
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Root credentials, generating and saving them (mode 0600) on first start.
fn root_credentials(data_dir: &Path) -> anyhow::Result<Credentials> {
    if let Some(c) = existing_root_credentials(data_dir)? {
        return Ok(c);
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let c = Credentials::generate();
    let path = data_dir.join(CREDENTIALS_FILE);
    let tmp = data_dir.join(format!("{CREDENTIALS_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let body = serde_json::to_vec_pretty(&StoredCredentials {
        access_key_id: c.access_key_id.clone(),
        secret_access_key: c.secret_access_key.clone(),
    })?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    info!(path = %path.display(), access_key_id = %c.access_key_id, "generated root credentials");
    Ok(c)
}

/// Holds an exclusive lock on `<data-dir>/berth.lock` for the life of the server: two servers on
/// one data dir would corrupt each other's sandboxes and builds. The kernel drops the lock when
/// the process dies, however it dies.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("berth.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("data_dir: cannot open {}", path.display()))?;
    if f.try_lock().is_err() {
        bail!(
            "data_dir: {} is in use by another berth server (lock {} is held)",
            dir.display(),
            path.display()
        );
    }
    Ok(f)
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let mut cfg = args.resolve()?;
    // Each sandbox's model gateway key, issued when it starts (see `berth_gateway::keys`), and
    // Berth's own: memory extraction and LLM judges call models through the gateway when they
    // name an API-key provider but neither a URL nor a key, so one place holds model keys.
    let gateway_keys = cfg
        .gateway
        .as_ref()
        .map(|_| Arc::new(berth_gateway::keys::SessionKeys::new()));
    let via_gateway = gateway_keys
        .as_ref()
        .map(|k| models_via_gateway(&mut cfg, &k.issue(berth_gateway::keys::INTERNAL)))
        .unwrap_or_default();
    // Before anything is opened or bound, so a bad memory setting fails the start at once.
    let mut memory_opts =
        berth_memory::Options::configure(cfg.partition.clone(), &cfg.data_dir, &cfg.memory)
            .map_err(memory_config_error)?;
    let caps = berth_runtime::probe();
    choose_isolation(&mut cfg, &caps)?;
    // Agents running as another uid on host paths (process isolation as root) must traverse the
    // data dir to reach builds/ and sessions/; namespaced agents see those through bind mounts.
    let agents_traverse =
        crate::datadir::is_root() && cfg.isolation == berth_runtime::Isolation::Process;
    crate::datadir::secure(&cfg.data_dir, agents_traverse)?;
    // From here on every path under the data dir is its real one: a sandbox mounts what it is
    // given by its real path, so a symlink on the way (`/var/lib/berth` -> `/data/berth`) would
    // not exist inside it, and the start's probe agent could not read its own code.
    cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)
        .with_context(|| format!("data_dir: cannot resolve {}", cfg.data_dir.display()))?;
    let lock = lock_data_dir(&cfg.data_dir)?;
    let creds = root_credentials(&cfg.data_dir)?;
    let keys = Arc::new(KeyRing::new(&creds));
    if let Some(db) = crate::datadir::sqlite_path(&cfg.store) {
        crate::datadir::secure_sqlite(&db)?;
    }
    if memory_opts.embedder.is_none() && wants_default_embedder(&cfg.memory) {
        let dest = cfg
            .data_dir
            .join(berth_memory::embed::MiniLm::DEFAULT_SUBDIR);
        let index = crate::model::index_url(&|k| std::env::var(k).ok());
        match crate::model::fetch(&index, &dest).await {
            Ok(()) => {
                memory_opts = berth_memory::Options::configure(
                    cfg.partition.clone(),
                    &cfg.data_dir,
                    &cfg.memory,
                )
                .map_err(memory_config_error)?;
            }
            Err(e) => warn!(
                error = %format!("{e:#}"),
                "cannot fetch the default embedding model; memory retrieval stays keyword-only until it is present (restart to retry, or run scripts/fetch-model.sh)"
            ),
        }
    }

    let stores = berth_store::open_all(&cfg.store)
        .await
        .with_context(|| format!("store: opening {}", berth_store::redact(&cfg.store)))?;
    let store = stores.control.clone();
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // An advertised port 0 is the port the listener got (`--listen 127.0.0.1:0` in tests).
    if let Some(url) = &mut cfg.advertise
        && let Ok(uri) = url.parse::<http::Uri>()
        && uri.port_u16() == Some(0)
    {
        *url = format!(
            "http://{}:{}",
            uri.host().unwrap_or("127.0.0.1"),
            addr.port()
        );
    }
    if let Some(kind) = via_gateway.memory {
        cfg.memory.model_url = Some(gateway_url(addr, kind));
        memory_opts
            .set_model(&cfg.memory)
            .map_err(memory_config_error)?;
    }
    if let Some(kind) = via_gateway.judge {
        cfg.judge.base_url = Some(gateway_url(addr, kind));
    }

    // Under the lock, before any sandbox starts: sweep what a killed run of this data dir left
    // and put every sandbox of this run under the instance's limited parent cgroup.
    let instance = berth_runtime::recovery::instance_id(&cfg.data_dir)
        .with_context(|| format!("data_dir: instance id in {}", cfg.data_dir.display()))?;
    {
        let (instance, sessions_dir, builds_dir, limits) = (
            instance.clone(),
            cfg.data_dir.join("sessions"),
            cfg.data_dir.join("builds"),
            cfg.parent_limits,
        );
        let recovered = tokio::task::spawn_blocking(move || {
            berth_runtime::recovery::recover(&instance, &sessions_dir, &builds_dir, &limits)
        })
        .await
        .context("recovery task")?;
        match recovered {
            Ok(_) => {}
            // Without root there are no cgroups to sweep or limit; process isolation still runs.
            Err(e) if !caps.root => {
                warn!(error = %e, "cannot set up the sandboxes' parent cgroup; running without it")
            }
            Err(e) => return Err(e).context("recovering the previous run's sandboxes"),
        }
    }
    let artifacts = berth_artifacts::ArtifactStore::open(&cfg.artifact_store, &cfg.data_dir)
        .await
        .with_context(|| format!("artifact_store: opening {}", cfg.artifact_store))?;
    // The built-in OCI registry (`/v2/`): its storage under the data dir.
    let registry = berth_oci::registry::Registry::open(berth_oci::registry::Options {
        root: cfg.data_dir.join("registry"),
        max_blob_size: cfg.registry_max_blob_bytes,
    })
    .await
    .with_context(|| format!("opening the registry in {}", cfg.data_dir.display()))?;
    let mut build_opts = berth_runtime::builder::BuilderOptions::new(cfg.data_dir.join("builds"));
    if let Some(sandbox) = &mut build_opts.sandbox {
        // Builds are confined like sessions; the data dir (database, root secret) is masked.
        sandbox.isolation = cfg.isolation;
        sandbox.hidden = vec![cfg.data_dir.clone()];
        sandbox.egress_allow = cfg.egress_allow.clone();
    }
    let builder = berth_runtime::builder::Builder::new(build_opts);
    crate::datadir::probe_agent_access(&cfg.data_dir, cfg.isolation).await?;
    // The stores opened above made their dirs with the umask's modes (artifacts/ 0755): with a
    // traversable data dir those must be closed again.
    crate::datadir::secure(&cfg.data_dir, agents_traverse)?;
    // Container images: pulled through the operator's registries, ECR-style URIs from Berth's
    // own registry on this listener (read with the root credentials), unpacked under the data dir.
    let layer_cache = berth_oci::unpack::LayerCache::open(cfg.data_dir.join("images"))
        .context("opening the image layer cache")?;
    let images = Arc::new(berth_runtime::image::OciImages::new(
        cfg.registries.clone(),
        layer_cache,
    ));
    images.serve_builtin(berth_oci::reference::HostConfig {
        url: Some(format!("http://{}", loopback(addr))),
        credentials: berth_oci::reference::Credentials::Basic {
            username: creds.access_key_id.clone(),
            password: creds.secret_access_key.clone(),
        },
        allow_http: true,
    });
    let preparer = Arc::new(
        berth_runtime::deploy::Preparer::new(builder, artifacts.clone())
            .with_images(images.clone()),
    );
    let edge = berth_server::Edge::new(cfg.edge.clone());
    let (sandbox_api, sandbox_api_state) = crate::edge_args::sandbox_api(edge.clone());
    // The session backend: where agents run. Namespace sandboxes on this host today; a container
    // or Kubernetes backend is chosen here (see ARCHITECTURE.md, "Where to add a session backend").
    let backend = Arc::new(berth_runtime::backend::namespace::NamespaceBackend::new(
        berth_runtime::backend::namespace::NamespaceOptions {
            sessions_dir: cfg.data_dir.join("sessions"),
            hidden: vec![cfg.data_dir.clone()],
            isolation: cfg.isolation,
            limits: cfg.limits,
            allowed_local: vec![],
            egress_allow: cfg.egress_allow.clone(),
            // Agents reach the data plane at a loopback address of their own; a wildcard listen
            // address is reached through loopback.
            api_addr: Some(if addr.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            }),
            api_server: Some(sandbox_api),
        },
    ));
    // The token vault's key lives next to the database, never in it.
    let vault = berth_identity::vault::Vault::open_dir(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("identity: {e}"))?;
    // The one `Secrets` of the process, cloned wherever values are read or written, so its
    // change counter sees every put and delete.
    let secrets = berth_identity::secrets::Secrets::new(stores.secrets.clone(), vault.clone());
    let identity = berth_identity::Identity::new(
        stores.identity.clone(),
        vault,
        cfg.partition.clone(),
        format!("http://{addr}"),
    );
    let sessions = berth_runtime::session::Sessions::new(
        berth_runtime::session::SessionOptions {
            logs_dir: cfg.data_dir.join("logs"),
            start_timeout: cfg.start_timeout,
            ping_interval: cfg.ping_interval,
            warm_pool: cfg.warm_pool,
            spare_defer: berth_runtime::session::SPARE_DEFER,
            credentials: Some({
                let keys = keys.clone();
                Arc::new(move |runtime_id: &str| {
                    let c = keys.issue_runtime(runtime_id);
                    (c.access_key_id, c.secret_access_key)
                })
            }),
            workload_tokens: Some(Arc::new(RuntimeTokens(identity.clone()))),
            gateway_keys: gateway_keys.clone().map(|k| {
                Arc::new(move |instance: &str| k.issue(instance))
                    as Arc<berth_runtime::session::GatewayKeyIssuer>
            }),
            secrets: Some(Arc::new(SecretValues(secrets.clone()))),
            env: vec![
                ("AWS_REGION".into(), cfg.partition.region.clone()),
                ("AWS_DEFAULT_REGION".into(), cfg.partition.region.clone()),
            ],
            quotas: cfg.quotas,
            partition: cfg.partition.clone(),
        },
        backend,
        preparer.clone(),
        shutdown.clone(),
    );
    let deploy = Arc::new(berth_runtime::deploy::Deploy::new(
        preparer,
        sessions.clone(),
    ));
    // Spans and agent log records: a database of their own, so their write volume never
    // contends with the control plane's; with PostgreSQL, a schema of the shared database, so
    // every node reads what any node recorded.
    let trace_db = cfg.data_dir.join("traces.db");
    if crate::datadir::sqlite_path(&cfg.store).is_some() {
        crate::datadir::secure_sqlite(&trace_db)?;
    }
    let trace_stores = berth_trace::TraceStores::open(&cfg.store, &trace_db)
        .await
        .with_context(|| match crate::datadir::sqlite_path(&cfg.store) {
            Some(_) => format!("opening the trace store {}", trace_db.display()),
            None => format!(
                "opening the trace store (schema {}) in {}",
                berth_trace::postgres::SCHEMA,
                berth_store::redact(&cfg.store)
            ),
        })?;
    let trace_store = trace_stores.traces.clone();
    // Evaluation scores live there too; quality joins the rollout analysis as a signal.
    let scores = trace_stores.scores.clone();
    let mut traffic = cfg.traffic.clone();
    traffic
        .signals
        .push(Arc::new(berth_eval::signal::EvaluationSignal::over(
            scores.clone(),
        )));
    // Several nodes, one installation: this node's membership (standalone without
    // --advertise). Jobs that must run once per installation run under its leases.
    let cluster = berth_runtime::cluster::Cluster::join(
        stores.nodes.clone(),
        berth_runtime::cluster::ClusterOptions {
            node_id: instance.clone(),
            advertise: cfg.advertise.clone(),
            lease: cfg.node_lease,
        },
        keys.node_key(),
        shutdown.clone(),
    )
    .await
    .context("joining the installation's nodes")?;
    // OTLP export tails the trace store: with it in PostgreSQL (one store, one cursor per
    // signal) one node at a time exports, under a lease; with SQLite each node its own.
    if let Some(opts) = cfg.trace_export.clone() {
        info!(endpoint = %opts.endpoint, gzip = opts.gzip, "exporting traces over OTLP/HTTP");
        let source = trace_stores.export.clone();
        let export = move |stop| {
            let tasks = berth_trace::export::start(
                source.clone(),
                opts.clone(),
                berth_trace::export::export_stats(),
                stop,
            );
            async move {
                for t in tasks {
                    let _ = t.await;
                }
            }
        };
        if crate::datadir::sqlite_path(&cfg.store).is_some() {
            tokio::spawn(export(shutdown.clone()));
        } else {
            cluster.singleton("trace-export", shutdown.clone(), export);
        }
    }
    // With several nodes, rollouts, ending drains and sweeps run on one node at a time (under
    // a lease); each node flushes its own health and stops its own drained sessions.
    let tick = traffic.tick;
    traffic.run_controller = cluster.is_standalone();
    traffic.leases = cluster.leases();
    let control = berth_control::Control::start_with(
        store,
        cfg.partition.clone(),
        deploy,
        shutdown.clone(),
        traffic,
    )
    .await
    .context("starting the control plane")?;
    if !cluster.is_standalone() {
        use berth_control::{Controller, Role};
        let local = Controller::with_role(control.clone(), Role::Local);
        tokio::spawn(local.run(shutdown.clone()));
        let control = control.clone();
        let grace = 3 * tick;
        cluster.singleton("rollout-controller", shutdown.clone(), move |stop| {
            Controller::with_role(control.clone(), Role::Shared { grace }).run(stop)
        });
    }
    let evals = berth_eval::resources::Resources::new(
        stores.eval.clone(),
        cfg.partition.clone(),
        cfg.judge.default_model.clone(),
    );
    evals
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("settling evaluation resources: {}", e.detail()))?;
    // Other nodes write the same memories and secrets: what this node loaded is trusted for a
    // bounded time, and other nodes' secret changes reach this node's gateway within it.
    if !cluster.is_standalone() {
        memory_opts.cache_max_age = Some(SHARED_CACHE_MAX_AGE);
        let (secrets, stop) = (secrets.clone(), shutdown.clone());
        tokio::spawn(async move { secrets.watch_store(SHARED_CACHE_MAX_AGE, stop).await });
    }
    let memory = berth_memory::Memory::start(stores.memory, memory_opts, shutdown.clone())
        .await
        .context("starting memory")?;
    let url = format!("http://{addr}");
    println!(
        "berth {} listening on {url} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        cfg.data_dir.display()
    );
    println!("point boto3 and the AgentCore SDK at it:");
    println!("export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE={url}");
    println!("export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL={url}");
    println!("export AWS_ENDPOINT_URL_S3={url}");
    println!("export AWS_ENDPOINT_URL_CLOUDWATCH_LOGS={url}");
    println!("export AWS_REGION={}", cfg.partition.region);
    println!("export AWS_ACCESS_KEY_ID={}", creds.access_key_id);
    // The path of this very binary: `berth` may not be on PATH (`cargo run` leaves it in
    // target/), and a quoted absolute path works from any directory.
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "berth".into());
    // The address and region as this server has them: the command's defaults are the default
    // port's, and the line is evaluated after the exports above.
    println!(
        "eval \"$({me} credentials --export --data-dir {} --endpoint-url {url} --region {})\"   # sets AWS_SECRET_ACCESS_KEY",
        cfg.data_dir.display(),
        cfg.partition.region
    );

    // Export requests arriving together share a transaction (and its fsync).
    let traces: Arc<dyn berth_trace::TraceStore> =
        Arc::new(berth_trace::GroupCommit::new(trace_store.clone()));
    // Berth's own spans, batched already, go to the store directly from a thread of their own.
    let spans = cfg
        .invocation_spans
        .then(|| berth_trace::SpanSink::start(trace_store.clone()))
        .transpose()
        .context("starting the span writer")?;
    // The CloudWatch Logs API reads the same database.
    let partition = control.partition();
    let trace_store_for_gateway = trace_store.clone();
    let feed = trace_stores.feed.clone();
    let logs = berth_trace::logs::Logs::new(
        trace_stores.logs.clone(),
        &partition.region,
        &partition.account_id,
    );
    // Events written through PutLogEvents are kept as long as traces are.
    tokio::spawn(logs.clone().run_retention(
        std::time::Duration::from_nanos(
            u64::try_from(cfg.trace_retention.max_age_ns).unwrap_or_default(),
        ),
        cfg.trace_retention_every,
        shutdown.clone(),
    ));
    tokio::spawn(berth_trace::run_retention(
        traces.clone(),
        cfg.trace_retention,
        cfg.trace_retention_every,
        shutdown.clone(),
    ));
    let invoker = berth_runtime::invoker::Invoker::clustered(
        Arc::new(control.clone()),
        sessions.clone(),
        spans.clone(),
        cluster.clone(),
    );
    // Evaluation datasets sign their download URLs with a key of this process: a URL outlives
    // neither its 15 minutes nor the server.
    let datasets = berth_eval::datasets::Datasets::new(
        stores.eval_data.clone(),
        artifacts.clone(),
        partition.clone(),
        berth_types::random_alnum(43).into_bytes(),
    );
    // Evaluators, the judge (from --eval-model-* or memory's model) and code runtimes: shared by
    // the Evaluate route and batch evaluations.
    let eval_routes = berth_server::Evals {
        resources: evals.clone(),
        judge: berth_eval::Judge::new(cfg.judge.clone()),
        code_runtimes: Arc::new(cfg.eval_code_runtimes.clone()),
    };
    let batches = berth_eval::batch::Batches::new(
        stores.eval_data.clone(),
        traces.clone(),
        logs.clone(),
        datasets.clone(),
        partition.clone(),
        Arc::new(berth_server::EngineEvaluator::new(eval_routes.clone())),
        Arc::new(berth_server::RuntimeCaller::new(invoker.clone())),
        cluster.leases(),
        shutdown.clone(),
    );
    // Batches a previous process left running are resumed or ended with a reason; with several
    // nodes, one node also looks for batches a dead node left.
    batches
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("recovering batch evaluations: {}", e.detail()))?;
    if !cluster.is_standalone() {
        let (batches, every) = (batches.clone(), cluster.leases().retry_every());
        cluster.singleton("batch-recovery", shutdown.clone(), move |stop| {
            let batches = batches.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = batches.recover().await {
                        warn!(error = %e.detail(), "recovering batch evaluations failed");
                    }
                }
            }
        });
    }
    let prices = Arc::new(cfg.model_prices.clone());
    // The model gateway: its meter writes a gen_ai span per call into the trace store.
    let mut gateway_spans = None;
    let (gateway, gateway_meter) = match (&cfg.gateway, &gateway_keys) {
        (Some(gcfg), Some(gkeys)) => {
            // Its spans are batched into the store by a writer thread of their own.
            let sink = berth_trace::SpanSink::start(trace_store_for_gateway.clone())
                .context("starting the gateway's span writer")?;
            gateway_spans = Some(sink.clone());
            let meter = berth_server::gateway_api::TraceMeter::new(sink, prices.clone());
            let gw = berth_gateway::Gateway::start(
                gcfg.clone(),
                gkeys.clone(),
                Arc::new(GatewaySecrets(secrets.clone())),
                meter.clone(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("model gateway: {e}"))?;
            seed_budgets(&gw, &traces).await?;
            (Some(gw), Some(meter))
        }
        _ => (None, None),
    };
    let state = berth_server::AppState::from(berth_server::Services {
        control: control.clone(),
        keys: keys.clone(),
        ring: keys.clone(),
        sessions: sessions.clone(),
        invoker,
        artifacts,
        memory: memory.clone(),
        relax: cfg.relax,
        traces,
        prices,
        logs,
        scores,
        evals: eval_routes,
        datasets,
        batches,
        images: Some(images),
        registry,
        identity,
        gateway,
        gateway_meter,
        secrets,
        nodes: berth_server::cluster_api::Nodes::new(
            cluster.clone(),
            (!cluster.is_standalone()).then(|| stores.nodes.clone()),
        ),
    });
    sandbox_api_state.send_replace(Some(state.clone()));
    // Online evaluation and drift alerts: off the invocation path, over what is stored. With
    // the trace store in PostgreSQL every node sees every session's traces and the same cursors,
    // so with several nodes they run on one node at a time (under a lease); with SQLite each
    // node judges what its own `traces.db` holds.
    let runtime_names: Arc<dyn berth_eval::online::RuntimeNames> = Arc::new(control.clone());
    let online = {
        let (evals, traces, scores) = (evals.clone(), state.traces.clone(), state.scores.clone());
        let (names, judge) = (runtime_names.clone(), state.evals.judge.clone());
        let runner = Arc::new(berth_server::BackgroundRunner(state.clone()));
        let opts = cfg.online.clone();
        move |stop| {
            berth_eval::online::Online::new(
                evals.clone(),
                berth_eval::online::OnlineStores {
                    traces: traces.clone(),
                    feed: feed.clone(),
                    scores: scores.clone(),
                },
                names.clone(),
                judge.clone(),
                runner.clone(),
                opts.clone(),
            )
            .run(stop)
        }
    };
    let drift = {
        let (control, evals, scores) = (control.clone(), evals.clone(), state.scores.clone());
        let opts = cfg.drift.clone();
        move |stop| {
            berth_eval::alerts::DriftWatch::new(
                control.clone(),
                evals.clone(),
                scores.clone(),
                runtime_names.clone(),
                opts.clone(),
            )
            .run(stop)
        }
    };
    if crate::datadir::sqlite_path(&cfg.store).is_some() {
        tokio::spawn(online(shutdown.clone()));
        tokio::spawn(drift(shutdown.clone()));
    } else {
        cluster.singleton("online-evaluation", shutdown.clone(), online);
        cluster.singleton("drift-alerts", shutdown.clone(), drift);
    }
    if let Some(m) = &cfg.metrics_listen {
        let l = tokio::net::TcpListener::bind(m)
            .await
            .with_context(|| format!("metrics_listen: cannot bind {m}"))?;
        println!("prometheus metrics on http://{}/metrics", l.local_addr()?);
        let (metrics_state, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = berth_server::serve_metrics(l, metrics_state, stop).await {
                warn!(error = %e, "metrics listener failed");
            }
        });
    }
    // Two stages: `accepting` stops the listener at the signal; `shutdown` (sessions, builds,
    // controllers) is cancelled only once in-flight work has drained or the drain time is up.
    let accepting = CancellationToken::new();
    let signal = accepting.clone();
    let nodes = state.nodes.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // A load balancer's readiness probe fails from now on.
        nodes.stopping();
        info!("shutting down: no new connections; draining in-flight work");
        signal.cancel();
    });
    // The edge's threads stop with the last `Edge`: this one is held to the end of the teardown,
    // so nothing begun on them (a store connection, a session's WebSocket) is cut short before.
    let _edge_threads = edge.clone();
    let serving = berth_server::serve_edge(listener, state, edge, accepting.clone());
    tokio::pin!(serving);
    let drain = cfg.shutdown_drain;
    let served = tokio::select! {
        r = &mut serving => Some(r),
        _ = async { accepting.cancelled().await; tokio::time::sleep(drain).await } => {
            warn!(drain_seconds = drain.as_secs(), "drain time over; cancelling in-flight work");
            None
        }
    };
    accepting.cancel();
    shutdown.cancel();
    // Bounded: a stuck client, a build that ignores cancellation or a wedged teardown must not
    // keep the data-dir lock held. What is left is swept by the next start.
    let teardown = async {
        // Ends every session: their streams finish with an error event and the connections
        // carrying them close, which lets the server's own drain complete.
        sessions.shutdown().await;
        if served.is_none() {
            let _ = tokio::time::timeout(TEARDOWN_GRACE, &mut serving).await;
        }
        control.closed().await;
        memory.closed().await;
        evals.shutdown().await;
        // The spans of the calls that just ended, which would otherwise wait out their batch's
        // linger (a second) and be lost with the process.
        for sink in spans.iter().chain(gateway_spans.iter()) {
            sink.flush().await;
        }
    };
    if tokio::time::timeout(TEARDOWN_BOUND, teardown)
        .await
        .is_err()
    {
        warn!(
            bound_seconds = TEARDOWN_BOUND.as_secs(),
            "teardown did not finish in time; leaving the rest to the next start's sweep"
        );
    }
    drop(lock);
    info!("stopped");
    match served {
        Some(r) => r.context("serving"),
        None => Ok(()),
    }
}

/// With several nodes: how long memory rows and vector indexes loaded from the store are
/// trusted before they are read again (other nodes' writes show within this bound).
const SHARED_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long connections get to flush the final events of cancelled streams.
const TEARDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// The most teardown after the drain may take before the server exits regardless.
const TEARDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(15);

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a log file or a journal gets plain text.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Settles the isolation: namespaces where the host allows them; where it does not, a chosen
/// `namespaces` fails the start, and the default falls back to process isolation with a notice,
/// so the run command still ends with a working server (as a normal user, for instance).
fn choose_isolation(cfg: &mut Config, caps: &berth_runtime::Capabilities) -> anyhow::Result<()> {
    use berth_runtime::Isolation;
    if cfg.isolation == Isolation::Namespaces
        && let Err(why) = caps.check(Isolation::Namespaces)
    {
        if cfg.isolation_chosen {
            bail!(
                "isolation: this host cannot run namespace sandboxes ({why}); run as root on Linux 5.12+, or pass --isolation process to run agents unisolated"
            );
        }
        warn!(
            reason = %why,
            "notice: namespace sandboxes are unavailable, so agents run with --isolation process (not isolated from each other or from this user); run as root for isolated sessions"
        );
        cfg.isolation = Isolation::Process;
        return Ok(());
    }
    if cfg.isolation == Isolation::Process {
        caps.check(Isolation::Process)
            .map_err(|why| anyhow::anyhow!("isolation: {why}"))?;
        if cfg.isolation_chosen {
            warn!(
                "isolation=process: agent sessions are NOT isolated from each other or from the host; use only for development"
            );
        }
    }
    Ok(())
}

/// Whether the memory settings leave the embedder at its default (MiniLM in process), rather than
/// naming a model dir, `none` or an embeddings API.
fn wants_default_embedder(settings: &berth_memory::Settings) -> bool {
    settings.embedding_model.is_none() && settings.embedding_api_url.is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What clap makes of `argv` (variables are tested end to end in `tests/config.rs`).
    fn parse(argv: &[&str]) -> ServeArgs {
        use clap::{Args, FromArgMatches};
        let m = ServeArgs::augment_args(clap::Command::new("berth-serve"))
            .try_get_matches_from(std::iter::once("berth-serve").chain(argv.iter().copied()))
            .unwrap();
        ServeArgs::from_arg_matches(&m).unwrap()
    }

    #[test]
    fn flags_lay_over_the_file_which_lays_over_the_defaults() {
        let file: ServeArgs = toml::from_str(
            "max_sessions = 10\nsession_rate = 1.5\nwarm_pool = 3\nregion = \"eu-west-1\"\n\
             memory_model = \"from-file\"\nmemory_model_url = \"http://file/v1\"\n\
             egress_allow = [\"10.0.0.0/8\"]\n[edge]\nmax_connections = 7\nidle_timeout_ms = 9\n",
        )
        .unwrap();
        let flags = parse(&[
            "--max-sessions",
            "30",
            "--memory-model",
            "from-flag",
            "--idle-timeout-ms",
            "11",
            "--session-rate",
            "2.5",
        ]);
        let cfg = flags
            .over(file)
            .settle(env(&[("AWS_REGION", "eu-west-1")]))
            .unwrap();
        // flag over file
        assert_eq!(cfg.quotas.host_live, 30);
        assert_eq!(cfg.memory.model.as_deref(), Some("from-flag"));
        assert_eq!(cfg.edge.idle_timeout, std::time::Duration::from_millis(11));
        assert_eq!(cfg.quotas.host_rate, 2.5);
        assert_eq!(cfg.edge.max_connections, 7);
        // file over default
        assert_eq!(cfg.warm_pool, 3);
        assert_eq!(cfg.partition.region, "eu-west-1");
        assert_eq!(cfg.memory.model_url.as_deref(), Some("http://file/v1"));
        assert_eq!(cfg.egress_allow.len(), 1);
        // defaults
        assert_eq!(cfg.listen, "127.0.0.1:8750");
        assert_eq!(cfg.start_timeout, std::time::Duration::from_secs(60));
        assert_eq!(cfg.memory.aws_region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn trace_retention_has_defaults_and_refuses_zero() {
        let c = ServeArgs::default().settle(HashMap::new()).unwrap();
        assert_eq!(c.trace_retention.max_age_ns, 168 * 3_600_000_000_000);
        assert_eq!(c.trace_retention.max_bytes, 1024 << 20);
        assert!(c.invocation_spans);
        let off = parse(&["--invocation-spans", "false"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap();
        assert!(!off.invocation_spans);
        let c = parse(&["--trace-retention-hours", "2", "--trace-max-mib", "5"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap();
        assert_eq!(c.trace_retention.max_age_ns, 2 * 3_600_000_000_000);
        assert_eq!(c.trace_retention.max_bytes, 5 << 20);
        let c = parse(&["--trace-retention-hours", "0.5"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap();
        assert_eq!(c.trace_retention.max_age_ns, 1_800_000_000_000);
        assert_eq!(c.trace_retention_every, std::time::Duration::from_secs(60));
        let e = parse(&["--trace-retention-hours", "0"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap_err();
        assert!(e.to_string().contains("trace-retention-hours"), "{e}");
        let e = parse(&["--trace-max-mib", "0"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for trace-max-mib (BERTH_TRACE_MAX_MIB): must be at least 1"
        );
    }

    #[test]
    fn model_prices_come_from_flags_over_the_file_and_are_checked() {
        let c = ServeArgs::default().settle(HashMap::new()).unwrap();
        assert!(c.model_prices.is_empty());
        let file: ServeArgs =
            toml::from_str(r#"model_prices = ["m1=1/2", "m2=3/4/0.5/6"]"#).unwrap();
        let c = ServeArgs::default()
            .over(file)
            .settle(HashMap::new())
            .unwrap();
        assert_eq!(c.model_prices.get("m2").unwrap().cache_write, 6.0);
        assert_eq!(c.model_prices.get("m1").unwrap().output, 2.0);
        // The flag (or BERTH_MODEL_PRICES, comma-separated) replaces the file's list.
        let file: ServeArgs = toml::from_str(r#"model_prices = ["m1=1/2"]"#).unwrap();
        let c = parse(&["--model-prices", "gpt-4o=2.5/10/1.25,m3=1/1"])
            .over(file)
            .settle(HashMap::new())
            .unwrap();
        assert!(c.model_prices.get("m1").is_none());
        assert_eq!(c.model_prices.get("gpt-4o").unwrap().cache_read, 1.25);
        assert_eq!(c.model_prices.get("m3").unwrap().input, 1.0);
        let e = parse(&["--model-prices", "m1=cheap/2"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value for model-prices (BERTH_MODEL_PRICES): "),
            "{e}"
        );
    }

    #[test]
    fn otlp_export_settings_layer_and_name_the_key_at_fault() {
        assert!(
            ServeArgs::default()
                .settle(HashMap::new())
                .unwrap()
                .trace_export
                .is_none()
        );
        let file: ServeArgs = toml::from_str(
            "otlp_endpoint = \"http://collector:4318/\"\n\
             otlp_headers = \"Authorization=Basic%20cGs6c2s=,x-scope-orgid=t1\"\n",
        )
        .unwrap();
        let cfg = parse(&["--otlp-gzip"])
            .over(file)
            .settle(HashMap::new())
            .unwrap();
        let o = cfg.trace_export.unwrap();
        assert_eq!(o.endpoint, "http://collector:4318");
        assert!(o.gzip);
        assert_eq!(o.headers.len(), 2);
        assert_eq!(o.headers[0].1, "Basic cGs6c2s=");
        // Header values never reach the debug output (the config is logged).
        assert!(!format!("{o:?}").contains("cGs6c2s"));
        let e = parse(&["--otlp-endpoint", "collector:4318"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value for otlp-endpoint (BERTH_OTLP_ENDPOINT)"),
            "{e}"
        );
        let e = parse(&[
            "--otlp-endpoint",
            "http://c:4318",
            "--otlp-headers",
            "novalue",
        ])
        .over(ServeArgs::default())
        .settle(HashMap::new())
        .unwrap_err();
        assert!(e.to_string().contains("otlp-headers"), "{e}");
    }

    #[test]
    fn errors_name_the_key_as_flag_and_variable() {
        let e = parse(&["--max-sessions-per-runtime", "2", "--ping-interval-ms", "0"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for ping-interval-ms (BERTH_PING_INTERVAL_MS): must be at least 1"
        );
        // From the file's [edge] table, named the same way.
        let file: ServeArgs = toml::from_str("[edge]\nlarge_body_mib = 0\n").unwrap();
        let e = ServeArgs::default()
            .over(file)
            .settle(HashMap::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for large-body-mib (BERTH_LARGE_BODY_MIB): must be at least 1"
        );
        let e = parse(&["--session-rate=-1"])
            .over(ServeArgs::default())
            .settle(HashMap::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for session-rate (BERTH_SESSION_RATE): -1 is not a positive number of sessions per second"
        );
        // An unknown or mistyped file key is refused by serde, naming it.
        let e = toml::from_str::<ServeArgs>("max_sesions = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_sesions"), "{e}");
        let e = toml::from_str::<ServeArgs>("config = \"other.toml\"\n").unwrap_err();
        assert!(e.to_string().contains("config"), "{e}");
    }

    #[test]
    fn memory_settings_are_the_layered_keys_with_aws_from_the_environment() {
        let args = ServeArgs {
            memory_model: Some("from-flag".into()),
            memory_extraction_delay_ms: Some(250),
            ..Default::default()
        };
        let file: ServeArgs = toml::from_str(
            "memory_model = \"from-file\"\nmemory_model_url = \"http://file/v1\"\n\
             memory_model_provider = \"anthropic\"\nembedding_api_dims = 1536",
        )
        .unwrap();
        // clap has put BERTH_MEMORY_MODEL_PROVIDER into the flag's place.
        let args = ServeArgs {
            memory_model_provider: Some("bedrock-converse".into()),
            ..args
        };
        let s = args
            .over(file)
            .memory_settings(env(&[
                ("BERTH_MEMORY_MODEL", "from-env"),
                ("AWS_REGION", "eu-west-1"),
            ]))
            .unwrap();
        // The variables of memory keys are clap's to read (into the flags): the map's is ignored.
        assert_eq!(s.model.as_deref(), Some("from-flag"));
        assert_eq!(s.model_provider.as_deref(), Some("bedrock-converse"));
        assert_eq!(s.model_url.as_deref(), Some("http://file/v1"));
        assert_eq!(s.extraction_delay_ms, Some(250));
        assert_eq!(s.embedding_api_dims, Some(1536));
        assert_eq!(s.aws_region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn api_keys_come_from_the_named_variable() {
        let args = ServeArgs {
            memory_model_api_key_env: Some("MY_MODEL_KEY".into()),
            embedding_api_key_env: Some("MY_EMBEDDING_KEY".into()),
            ..Default::default()
        };
        let s = args
            .memory_settings(env(&[
                ("MY_MODEL_KEY", "sk-model"),
                ("MY_EMBEDDING_KEY", "sk-emb"),
                ("BERTH_MEMORY_MODEL_API_KEY", "overridden"),
            ]))
            .unwrap();
        assert_eq!(s.model_api_key.as_deref(), Some("sk-model"));
        assert_eq!(s.embedding_api_key.as_deref(), Some("sk-emb"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("sk-"), "{shown}");

        let err = args
            .memory_settings(env(&[("MY_MODEL_KEY", "sk")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--embedding-api-key-env (BERTH_EMBEDDING_API_KEY_ENV): environment variable \
             \"MY_EMBEDDING_KEY\" is not set or empty"
        );
    }

    #[test]
    fn a_bad_store_url_is_refused_at_start_naming_the_key_and_the_url() {
        let args = ServeArgs {
            store: Some("sqlite://:memory:".into()),
            data_dir: Some(std::env::temp_dir()),
            ..Default::default()
        };
        let e = args.resolve().unwrap_err().to_string();
        assert!(
            e.starts_with(
                "invalid value for store (BERTH_STORE): store url \"sqlite://:memory:\": an in-memory sqlite"
            ),
            "{e}"
        );
    }

    #[test]
    fn memory_errors_name_the_flag() {
        let e = memory_config_error(berth_memory::ConfigError::Invalid {
            key: "BERTH_MEMORY_MODEL_PROVIDER",
            detail: "\"x\" is not one of openai, anthropic, bedrock-converse".into(),
        });
        assert_eq!(
            e.to_string(),
            "--memory-model-provider (BERTH_MEMORY_MODEL_PROVIDER): \"x\" is not one of openai, \
             anthropic, bedrock-converse"
        );
        let e = memory_config_error(berth_memory::ConfigError::Invalid {
            key: "AWS_ACCESS_KEY_ID",
            detail: "missing".into(),
        });
        assert_eq!(e.to_string(), "AWS_ACCESS_KEY_ID: missing");
    }
}

/// The model gateway's credentials: Berth secrets, by name and by prefix.
struct GatewaySecrets(berth_identity::secrets::Secrets);

#[async_trait::async_trait]
impl berth_gateway::Secrets for GatewaySecrets {
    async fn load(
        &self,
        names: &[String],
        prefix: Option<&str>,
    ) -> Result<Vec<berth_gateway::SecretValue>, String> {
        let mut wanted: Vec<String> = names.to_vec();
        if let Some(p) = prefix {
            let listed = self.0.list(p).await.map_err(|e| e.to_string())?;
            wanted.extend(listed.into_iter().map(|m| m.name));
        }
        wanted.sort();
        wanted.dedup();
        let mut out = Vec::with_capacity(wanted.len());
        for name in wanted {
            if let Some(s) = self.0.get(&name).await.map_err(|e| e.to_string())? {
                out.push(berth_gateway::SecretValue {
                    name: s.name,
                    version: s.version,
                    value: s.value,
                });
            }
        }
        Ok(out)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes()
    }
}

/// Today's token spend per runtime and per actor, from the usage store, so a restart does not
/// refill the gateway's budgets.
async fn seed_budgets(
    gateway: &berth_gateway::Gateway,
    traces: &Arc<dyn berth_trace::TraceStore>,
) -> anyhow::Result<()> {
    use berth_trace::usage::{GroupBy, UsageFilter};
    let limiter = gateway.limiter();
    if !limiter.has_budgets() {
        return Ok(());
    }
    let now = std::time::SystemTime::now();
    let since_ns = berth_gateway::limits::Limiter::day_start_ms(now) * 1_000_000;
    for group_by in [GroupBy::Version, GroupBy::Actor] {
        let rows = traces
            .usage(&UsageFilter {
                since_ns: Some(since_ns),
                group_by,
                ..UsageFilter::default()
            })
            .await
            .context("reading today's model usage for the gateway's budgets")?;
        for r in rows {
            let tokens = u64::try_from(r.counts.input_tokens + r.counts.output_tokens).unwrap_or(0);
            match group_by {
                GroupBy::Actor => limiter.seed(None, r.actor.as_deref(), tokens, now),
                _ => limiter.seed(r.runtime_id.as_deref(), None, tokens, now),
            }
        }
    }
    Ok(())
}

/// Which of Berth's own model clients call through the gateway, with their API.
#[derive(Default)]
struct ViaGateway {
    memory: Option<berth_memory::provider::ProviderKind>,
    judge: Option<berth_memory::provider::ProviderKind>,
}

/// Points memory extraction and the LLM judge at the gateway (with Berth's own gateway key)
/// when they name the OpenAI or Anthropic API but neither a base URL nor a key; their URL is
/// set once the listener is bound (`gateway_url`).
fn models_via_gateway(cfg: &mut Config, key: &str) -> ViaGateway {
    use berth_memory::provider::ProviderKind;
    let through = |kind: Option<ProviderKind>| {
        kind.filter(|k| matches!(k, ProviderKind::OpenAiCompatible | ProviderKind::Anthropic))
    };
    let mut via = ViaGateway::default();
    let memory_kind = cfg
        .memory
        .model_provider
        .as_deref()
        .and_then(ProviderKind::parse);
    if cfg.memory.model_url.is_none() && cfg.memory.model_api_key.is_none() {
        via.memory = through(memory_kind);
        if via.memory.is_some() {
            cfg.memory.model_api_key = Some(key.to_owned());
        }
    }
    if cfg.judge.base_url.is_none() && cfg.judge.api_key.is_none() {
        via.judge = through(cfg.judge.provider);
        if via.judge.is_some() {
            cfg.judge.api_key = Some(key.to_owned());
        }
    }
    via
}

/// The gateway's base URL on this listener for a provider's SDK-style client.
fn gateway_url(addr: std::net::SocketAddr, kind: berth_memory::provider::ProviderKind) -> String {
    match kind {
        berth_memory::provider::ProviderKind::Anthropic => {
            format!("http://{addr}/gateway/anthropic")
        }
        _ => format!("http://{addr}/gateway/openai/v1"),
    }
}
