//! `trace-store` (B10): the trace store's durable ingest rate and its query by session over a
//! large store, measured in process against `berth_trace::SqliteTraceStore` in a fresh directory.
//!
//! - *ingest*: `--writers` concurrent writers, each looping for `--seconds` (after `--warmup`):
//!   build an OTLP `ExportTraceServiceRequest` of `--batch` new spans shaped like a Strands
//!   agent's (GenAI attributes, the ADOT resource), encode it as protobuf, then do what Berth's
//!   receiver does after the HTTP layer: `otlp::decode_traces` under the sandbox's attribution
//!   and `TraceStore::insert` through `GroupCommit` as `berth serve` does (requests queued while
//!   a transaction commits share the next `synchronous=FULL` transaction; each is durable when
//!   its insert returns). The OTLP receiver itself listens only inside sandboxes, so the HTTP layer is not
//!   in this figure. Spans per second over the measured window; per-request latency.
//! - *query*: a second store seeded with `--seed-spans` spans (one SQL statement, one
//!   transaction: a recursive CTE, so seeding a million rows takes seconds), traces of 10 spans,
//!   `--spans-per-session` spans per session, each session's traces spread across the whole
//!   table (trace `t` belongs to session `t mod sessions`), so a session's rows are not
//!   neighbours on disk; the `traces` rows aggregated from them. Then `--queries` random
//!   sessions: `TraceStore::session_spans(runtime, session)` (every span of the session, decoded)
//!   and `TraceStore::list` filtered by session, each timed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_trace::{Attribution, SqliteTraceStore, TraceFilter, TraceStore};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde::Serialize;

use crate::stats::{Latency, Summary};

/// Settings of one `trace-store` run.
pub struct TraceStoreConfig {
    pub writers: usize,
    pub batch: usize,
    pub seconds: f64,
    pub warmup: f64,
    pub seed_spans: u64,
    pub spans_per_session: u64,
    pub queries: u64,
    pub dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct TraceStoreReport {
    /// `debug` or `release`.
    pub build: &'static str,
    pub ingest: Ingest,
    pub seed: Seed,
    pub query: Query,
}

#[derive(Debug, Serialize)]
pub struct Ingest {
    /// What each request goes through.
    pub path: &'static str,
    pub writers: usize,
    pub batch: usize,
    pub seconds: f64,
    pub requests: u64,
    pub spans: u64,
    pub spans_per_s: f64,
    /// Bytes of one encoded request (protobuf, uncompressed).
    pub request_bytes: usize,
    /// Decode + insert of one request, µs.
    pub request_latency: Summary,
}

#[derive(Debug, Serialize)]
pub struct Seed {
    pub spans: u64,
    pub traces: u64,
    pub sessions: u64,
    pub seconds: f64,
    /// Size of traces.db after seeding.
    pub db_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Query {
    pub queries: u64,
    pub spans_per_session: u64,
    /// `session_spans(Some(runtime), session)`, µs.
    pub session_spans: Summary,
    /// `list` with `session_id` (and `runtime_id`) set, µs.
    pub list_by_session: Summary,
}

const BUILD: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_owned())),
    }
}

fn i(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}

fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(v),
        ..Default::default()
    }
}

/// A Strands-shaped export request of `n` spans with ids unique to (`writer`, `seq`).
fn request(writer: u64, seq: u64, n: usize) -> ExportTraceServiceRequest {
    let now = u64::try_from(berth_trace::now_ns()).unwrap_or(0);
    let trace = {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&writer.to_be_bytes());
        t[8..].copy_from_slice(&seq.to_be_bytes());
        t.to_vec()
    };
    let spans = (0..n as u64)
        .map(|k| {
            let mut id = [0u8; 8];
            id[..4].copy_from_slice(&(seq as u32).to_be_bytes());
            id[4..].copy_from_slice(&((writer as u32) << 20 | k as u32).to_be_bytes());
            let (name, op) = match k % 3 {
                0 => ("invoke_agent bench", "invoke_agent"),
                1 => ("chat", "chat"),
                _ => ("execute_tool lookup", "execute_tool"),
            };
            Span {
                trace_id: trace.clone(),
                span_id: id.to_vec(),
                parent_span_id: if k == 0 { Vec::new() } else { vec![1; 8] },
                name: name.into(),
                kind: 1,
                start_time_unix_nano: now + k * 1_000,
                end_time_unix_nano: now + k * 1_000 + 500_000,
                attributes: vec![
                    kv("gen_ai.operation.name", s(op)),
                    kv("gen_ai.system", s("strands-agents")),
                    kv("gen_ai.request.model", s("us.anthropic.claude-sonnet-4")),
                    kv("gen_ai.usage.input_tokens", i(1234)),
                    kv("gen_ai.usage.output_tokens", i(321)),
                    kv("gen_ai.usage.total_tokens", i(1555)),
                    kv("gen_ai.tool.name", s("lookup")),
                    kv("gen_ai.tool.call.id", s("tooluse_4f9a2c7e1b3d4e5f")),
                    kv(
                        "gen_ai.event.start_time",
                        s("2026-12-04T18:00:00.000000+00:00"),
                    ),
                    kv(
                        "gen_ai.event.end_time",
                        s("2026-12-04T18:00:00.500000+00:00"),
                    ),
                    kv("session.id", s("bench-session")),
                ],
                status: Some(Status {
                    code: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("bench_agent.DEFAULT")),
                    kv("telemetry.sdk.language", s("python")),
                    kv("telemetry.sdk.name", s("opentelemetry")),
                    kv("telemetry.sdk.version", s("1.33.1")),
                    kv("telemetry.auto.version", s("0.10.0-aws")),
                    kv(
                        "aws.log.group.names",
                        s("/aws/bedrock-agentcore/runtimes/bench_agent-abc1234567-DEFAULT"),
                    ),
                    kv(
                        "cloud.resource_id",
                        s(
                            "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/bench_agent-abc1234567",
                        ),
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "strands.telemetry.tracer".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn ingest(cfg: &TraceStoreConfig) -> anyhow::Result<Ingest> {
    let dir = tempfile::tempdir_in(&cfg.dir).context("ingest dir")?;
    // As `berth serve` stores export requests: through group commit.
    let store: Arc<dyn TraceStore> = Arc::new(berth_trace::GroupCommit::new(Arc::new(
        SqliteTraceStore::open(&dir.path().join("traces.db")).await?,
    )));
    let request_bytes = request(0, 0, cfg.batch).encoded_len();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(cfg.warmup);
    let until = measure_from + Duration::from_secs_f64(cfg.seconds);
    let mut tasks = Vec::new();
    for w in 0..cfg.writers as u64 {
        let store = store.clone();
        let batch = cfg.batch;
        tasks.push(tokio::spawn(async move {
            let mut lat = Latency::new();
            let (mut requests, mut spans) = (0u64, 0u64);
            let mut seq = 0u64;
            loop {
                seq += 1;
                let body = request(w, seq, batch).encode_to_vec();
                let who = Attribution {
                    runtime_id: "bench_agent-abc1234567".into(),
                    version: 1,
                    endpoint: "DEFAULT".into(),
                    // A session per ten requests of a writer.
                    session_id: Some(format!("bench-session-{w}-{:08}", seq / 10)),
                    actor: Some("bench-user".into()),
                };
                let began = Instant::now();
                let decoded = berth_trace::otlp::decode_traces(
                    &body,
                    berth_trace::otlp::Encoding::Protobuf,
                    &who,
                )?;
                store.insert(&decoded, &[]).await?;
                let done = Instant::now();
                if began >= measure_from && done <= until {
                    lat.record(done - began);
                    requests += 1;
                    spans += decoded.len() as u64;
                }
                if done >= until {
                    return Ok::<_, anyhow::Error>((lat, requests, spans));
                }
            }
        }));
    }
    let mut lat = Latency::new();
    let (mut requests, mut spans) = (0, 0);
    for t in tasks {
        let (l, r, s) = t.await??;
        lat.merge(&l);
        requests += r;
        spans += s;
    }
    Ok(Ingest {
        path: "otlp::decode_traces (protobuf) + TraceStore::insert through GroupCommit, in process",
        writers: cfg.writers,
        batch: cfg.batch,
        seconds: cfg.seconds,
        requests,
        spans,
        spans_per_s: spans as f64 / cfg.seconds,
        request_bytes,
        request_latency: lat.summary(),
    })
}

const SEED_RUNTIME: &str = "seed_agent-abc1234567";
const SPANS_PER_TRACE: u64 = 10;

async fn seed(cfg: &TraceStoreConfig, path: &std::path::Path) -> anyhow::Result<Seed> {
    // Migrations applied by the store's own open; the bulk insert through a connection of its own.
    drop(SqliteTraceStore::open(path).await?);
    let traces = cfg.seed_spans.div_ceil(SPANS_PER_TRACE);
    let sessions = (cfg.seed_spans / cfg.spans_per_session.max(1)).max(1);
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    let attributes = serde_json::json!({
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "strands-agents",
        "gen_ai.request.model": "us.anthropic.claude-sonnet-4",
        "gen_ai.usage.input_tokens": 1234,
        "gen_ai.usage.output_tokens": 321,
        "gen_ai.usage.total_tokens": 1555,
        "gen_ai.event.start_time": "2026-12-04T18:00:00.000000+00:00",
        "gen_ai.event.end_time": "2026-12-04T18:00:00.500000+00:00",
    })
    .to_string();
    let resource = serde_json::json!({
        "service.name": "seed_agent.DEFAULT",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.33.1",
        "aws.log.group.names": "/aws/bedrock-agentcore/runtimes/seed_agent-abc1234567-DEFAULT",
        "cloud.resource_id": "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/seed_agent-abc1234567",
    })
    .to_string();
    let base = berth_trace::now_ns() - 3_600_000_000_000;
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1) \
         INSERT INTO spans (trace_id, span_id, parent_span_id, runtime_id, session_id, version, \
           endpoint, actor, service_name, name, kind, start_ns, end_ns, status_code, \
           status_message, scope, attributes, resource, events) \
         SELECT printf('%032x', i / ?2), printf('%016x', i + 1), \
           CASE WHEN i % ?2 = 0 THEN NULL ELSE printf('%016x', i - i % ?2 + 1) END, \
           ?3, printf('seed-session-%08d', (i / ?2) % ?4), 1, 'DEFAULT', 'seed-user', \
           'seed_agent.DEFAULT', \
           CASE i % 3 WHEN 0 THEN 'invoke_agent' WHEN 1 THEN 'chat' ELSE 'execute_tool' END, \
           'INTERNAL', ?5 + i * 1000, ?5 + i * 1000 + 500000, 'OK', '', \
           'strands.telemetry.tracer', ?6, ?7, '[]' FROM n",
    )
    .bind(i64::try_from(cfg.seed_spans)?)
    .bind(i64::try_from(SPANS_PER_TRACE)?)
    .bind(SEED_RUNTIME)
    .bind(i64::try_from(sessions)?)
    .bind(base)
    .bind(&attributes)
    .bind(&resource)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO traces (trace_id, runtime_id, session_id, version, endpoint, actor, \
           service_name, root_name, root_start_ns, start_ns, end_ns, span_count, error, bytes) \
         SELECT trace_id, runtime_id, session_id, 1, 'DEFAULT', 'seed-user', service_name, \
           'invoke_agent', min(start_ns), min(start_ns), max(end_ns), count(*), 0, \
           count(*) * (length(?1) + length(?2) + 200) \
         FROM spans WHERE runtime_id = ?3 GROUP BY trace_id, runtime_id, session_id",
    )
    .bind(&attributes)
    .bind(&resource)
    .bind(SEED_RUNTIME)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    let db_mib = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64;
    Ok(Seed {
        spans: cfg.seed_spans,
        traces,
        sessions,
        seconds,
        db_mib,
    })
}

async fn query(
    cfg: &TraceStoreConfig,
    path: &std::path::Path,
    sessions: u64,
) -> anyhow::Result<Query> {
    let store = SqliteTraceStore::open(path).await?;
    // A fixed pseudo-random walk over the sessions (xorshift), the same every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % sessions
    };
    // One untimed query of each kind opens the connections and warms the schema cache.
    let warm = format!("seed-session-{:08}", next());
    store.session_spans(Some(SEED_RUNTIME), &warm).await?;
    let mut spans_lat = Latency::new();
    let mut list_lat = Latency::new();
    let mut seen = 0u64;
    for _ in 0..cfg.queries {
        let session = format!("seed-session-{:08}", next());
        let began = Instant::now();
        let spans = store.session_spans(Some(SEED_RUNTIME), &session).await?;
        spans_lat.record(began.elapsed());
        seen += spans.len() as u64;
        anyhow::ensure!(!spans.is_empty(), "session {session} has no spans");
        let began = Instant::now();
        let page = store
            .list(&TraceFilter {
                runtime_id: Some(SEED_RUNTIME.into()),
                session_id: Some(session.clone()),
                ..TraceFilter::default()
            })
            .await?;
        list_lat.record(began.elapsed());
        anyhow::ensure!(!page.traces.is_empty(), "session {session} lists no trace");
    }
    Ok(Query {
        queries: cfg.queries,
        spans_per_session: seen / cfg.queries.max(1),
        session_spans: spans_lat.summary(),
        list_by_session: list_lat.summary(),
    })
}

pub async fn run(cfg: TraceStoreConfig) -> anyhow::Result<TraceStoreReport> {
    let ingest = ingest(&cfg).await?;
    let dir = tempfile::tempdir_in(&cfg.dir).context("seed dir")?;
    let path = dir.path().join("traces.db");
    let seed = seed(&cfg, &path).await?;
    let query = query(&cfg, &path, seed.sessions).await?;
    Ok(TraceStoreReport {
        build: BUILD,
        ingest,
        seed,
        query,
    })
}
