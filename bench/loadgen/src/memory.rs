//! Memory probes (B6): `CreateEvent` throughput over HTTP against the raw store's durable write
//! rate on the same disk, and `RetrieveMemoryRecords` latency and recall.
//!
//! - `memory events`: N writers, each on its own kept-alive connection and its own session,
//!   send `CreateEvent` back to back (closed loop: a writer sends its next event when the last
//!   one is acknowledged, as an agent does). Every 201 means the event is on disk.
//! - `memory raw`: the same number of writers call the store directly (`MemoryStore::
//!   insert_events`, one event per durable transaction, `synchronous=FULL`), in a fresh
//!   database in the given directory: what the disk and SQLite give without HTTP and without
//!   the server's group commit. Also the disk's bare `fdatasync` rate, for scale.
//! - `memory seed`: loads records (JSON lines `{"content", "namespace"}`) with
//!   `BatchCreateMemoryRecords`, 100 per call; embedding happens in the server.
//! - `memory retrieve`: runs a labelled query set (`[{"query", "fact", "kind"}]`) and reports
//!   latency and recall@k (a query is recalled at k when its fact is among the first k results).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use berth_store::memory::{EventRow, MemoryRow, MemoryStore};
use bytes::Bytes;
use clap::Subcommand;
use http::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{self, Connection, Session, Target, Template};
use crate::stats::{Latency, Summary};

/// The memory probes.
#[derive(Subcommand)]
pub enum MemoryCommand {
    /// `CreateEvent` throughput and latency over HTTP, closed loop.
    Events {
        /// Server base URL (`http://IP:PORT`).
        #[arg(long)]
        url: String,
        /// Memory id.
        #[arg(long)]
        memory_id: String,
        /// Concurrent writers, one connection and one session each.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unrecorded seconds first.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Bytes of text in each event.
        #[arg(long, default_value_t = 200)]
        text_bytes: usize,
    },
    /// Durable write rate of the store itself (no HTTP, no group commit), and of the disk.
    Raw {
        /// Directory on the disk under test (a fresh database is created in it and removed).
        #[arg(long)]
        dir: PathBuf,
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unrecorded seconds first.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Bytes of text in each event.
        #[arg(long, default_value_t = 200)]
        text_bytes: usize,
    },
    /// Load records with `BatchCreateMemoryRecords`.
    Seed {
        /// Server base URL.
        #[arg(long)]
        url: String,
        /// Memory id.
        #[arg(long)]
        memory_id: String,
        /// JSON lines of `{"content": ..., "namespace": ...}`.
        #[arg(long)]
        records: PathBuf,
        /// Calls in flight.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    /// Latency and recall of `RetrieveMemoryRecords` over a labelled query set.
    Retrieve {
        /// Server base URL.
        #[arg(long)]
        url: String,
        /// Memory id.
        #[arg(long)]
        memory_id: String,
        /// JSON list of `{"query", "fact", "kind"}`.
        #[arg(long)]
        queries: PathBuf,
        /// `namespacePath` searched (a prefix: `/` is every record).
        #[arg(long, default_value = "/")]
        namespace_path: String,
        /// `topK`.
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Passes over the query set; latency is over all, recall from the first.
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Only the first N queries of the set.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Runs one memory probe and returns its JSON report.
pub async fn run(cmd: MemoryCommand) -> anyhow::Result<Value> {
    match cmd {
        MemoryCommand::Events {
            url,
            memory_id,
            writers,
            duration,
            warmup,
            text_bytes,
        } => {
            let template = template(&url, &format!("/memories/{memory_id}/events"))?;
            let r = events(
                template,
                &memory_id,
                writers,
                secs(duration)?,
                secs(warmup)?,
                text_bytes,
            )
            .await?;
            Ok(serde_json::to_value(r)?)
        }
        MemoryCommand::Raw {
            dir,
            writers,
            duration,
            warmup,
            text_bytes,
        } => Ok(serde_json::to_value(
            raw(dir, writers, secs(duration)?, secs(warmup)?, text_bytes).await?,
        )?),
        MemoryCommand::Seed {
            url,
            memory_id,
            records,
            concurrency,
        } => {
            let template = template(
                &url,
                &format!("/memories/{memory_id}/memoryRecords/batchCreate"),
            )?;
            Ok(serde_json::to_value(
                seed(template, records, concurrency).await?,
            )?)
        }
        MemoryCommand::Retrieve {
            url,
            memory_id,
            queries,
            namespace_path,
            top_k,
            passes,
            limit,
        } => {
            let template = template(&url, &format!("/memories/{memory_id}/retrieve"))?;
            let r = retrieve(template, queries, &namespace_path, top_k, passes, limit).await?;
            Ok(serde_json::to_value(r)?)
        }
    }
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).context("durations are non-negative seconds")
}

fn template(base: &str, path: &str) -> anyhow::Result<Template> {
    Ok(Template {
        target: Target::parse(&format!("{}{path}", base.trim_end_matches('/')))?,
        method: Method::POST,
        body: Bytes::new(),
        session: Session::None,
        credentials: Some(client::credentials_from_env()?),
        accept: "application/json",
        headers: Vec::new(),
    })
}

/// Sends one signed JSON request on `conn`; the status and the parsed body.
async fn call(
    conn: &mut Connection,
    template: &Template,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let built = template.build_for(
        Method::POST,
        &template.target.path_and_query,
        None,
        Bytes::from(serde_json::to_vec(body)?),
    )?;
    let got = client::receive(conn.send(built.request).await?).await?;
    let v = if got.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&got.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&got.body).into_owned()))
    };
    Ok((got.status, v))
}

/// What a throughput probe measured.
#[derive(Serialize)]
pub struct Throughput {
    /// Concurrent writers.
    pub writers: usize,
    /// Events acknowledged in the measured window.
    pub events: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_s: f64,
    /// Time from sending an event to its acknowledgement, µs.
    pub latency: Summary,
    /// Writes made over the whole run, warm-up and overrun included (each writer makes at least
    /// one, however slow the store).
    pub writes: u64,
    /// Failed writes (any status but 201, or a transport error) over the whole run.
    pub errors: u64,
    /// The first few failures, for the report.
    pub error_samples: Vec<String>,
}

fn event_text(writer: usize, n: u64, text_bytes: usize) -> String {
    let head = format!("writer {writer} event {n}: ");
    let pad = text_bytes.saturating_sub(head.len());
    let mut s = head;
    s.extend(std::iter::repeat_n('m', pad));
    s
}

/// Per-writer tallies, merged at the end.
#[derive(Default)]
struct Tally {
    latency: Latency,
    events: u64,
    writes: u64,
    errors: u64,
    samples: Vec<String>,
}

impl Tally {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < 5 {
            self.samples.push(e);
        }
    }

    fn merge(mut self, others: Vec<Tally>) -> Self {
        for o in others {
            self.latency.merge(&o.latency);
            self.events += o.events;
            self.writes += o.writes;
            self.errors += o.errors;
            for s in o.samples {
                if self.samples.len() < 5 {
                    self.samples.push(s);
                }
            }
        }
        self
    }
}

/// Runs `writers` closed-loop writers for `warmup + duration`; each calls `write(writer, n)` at
/// least once. Only successful writes that started and ended inside the measured window count as
/// events; every write counts in `writes`, and every failure in `errors`.
async fn closed_loop<F, Fut>(
    writers: usize,
    duration: Duration,
    warmup: Duration,
    write: F,
) -> anyhow::Result<(Tally, f64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let write = Arc::new(write);
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + warmup;
    let measure_to = measure_from + duration;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut t = Tally::default();
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                let res = write(w, n).await;
                let done = Instant::now();
                n += 1;
                t.writes += 1;
                match res {
                    Ok(()) if sent >= measure_from && done <= measure_to => {
                        t.events += 1;
                        t.latency.record(done - sent);
                    }
                    Ok(()) => {}
                    Err(e) => t.fail(e),
                }
                if done >= measure_to {
                    break;
                }
            }
            t
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.context("a writer panicked")?);
    }
    Ok((Tally::default().merge(all), duration.as_secs_f64()))
}

fn throughput(writers: usize, (t, seconds): (Tally, f64)) -> Throughput {
    Throughput {
        writers,
        events: t.events,
        seconds,
        events_per_s: (t.events as f64 / seconds * 10.0).round() / 10.0,
        latency: t.latency.summary(),
        writes: t.writes,
        errors: t.errors,
        error_samples: t.samples,
    }
}

async fn events(
    template: Template,
    memory_id: &str,
    writers: usize,
    duration: Duration,
    warmup: Duration,
    text_bytes: usize,
) -> anyhow::Result<Throughput> {
    if writers == 0 {
        bail!("--writers must be at least 1");
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut conns = Vec::new();
    for _ in 0..writers {
        conns.push(tokio::sync::Mutex::new(
            Connection::open(template.target.addr).await?,
        ));
    }
    let conns = Arc::new(conns);
    let template = Arc::new(template);
    let memory_id = memory_id.to_owned();
    let result = closed_loop(writers, duration, warmup, move |w, n| {
        let conns = conns.clone();
        let template = template.clone();
        let body = json!({
            "memoryId": memory_id,
            "actorId": format!("bench-actor-{w}"),
            "sessionId": format!("bench-{run_id}-{w:02}"),
            "eventTimestamp": unix_seconds(),
            "payload": [{"conversational": {
                "content": {"text": event_text(w, n, text_bytes)},
                "role": if n % 2 == 0 { "USER" } else { "ASSISTANT" },
            }}],
        });
        async move {
            // Each writer owns connection `w`; the lock is never contended.
            let mut conn = conns[w].lock().await;
            match call(&mut conn, &template, &body).await {
                Ok((201, _)) => Ok(()),
                Ok((status, body)) => Err(format!("status {status}: {body}")),
                Err(e) => Err(format!("{e:#}")),
            }
        }
    })
    .await?;
    Ok(throughput(writers, result))
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the raw-store probe measured.
#[derive(Serialize)]
pub struct Raw {
    /// The store, one durable transaction per event.
    pub store: Throughput,
    /// `write(4 KiB) + fdatasync` in a loop on one file in the same directory, per second.
    pub disk_fdatasync_per_s: f64,
}

async fn raw(
    dir: PathBuf,
    writers: usize,
    duration: Duration,
    warmup: Duration,
    text_bytes: usize,
) -> anyhow::Result<Raw> {
    if writers == 0 {
        bail!("--writers must be at least 1");
    }
    let work = dir.join(format!("raw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = raw_in(&work, writers, duration, warmup, text_bytes).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn raw_in(
    work: &std::path::Path,
    writers: usize,
    duration: Duration,
    warmup: Duration,
    text_bytes: usize,
) -> anyhow::Result<Raw> {
    let disk = {
        let path = work.join("fsync-probe");
        tokio::task::spawn_blocking(move || fdatasync_rate(&path, Duration::from_secs(2)))
            .await
            .context("the fsync probe panicked")??
    };
    let url = format!("sqlite://{}", work.join("raw.db").display());
    let store: Arc<dyn MemoryStore> = berth_store::memory::open(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let now = berth_types::now_millis();
    let memory_id = "bench-0123456789".to_owned();
    store
        .insert_memory(
            &MemoryRow {
                id: memory_id.clone(),
                name: "bench".into(),
                status: "ACTIVE".into(),
                failure_reason: None,
                event_expiry_days: 90,
                spec: json!({}),
                created_at: now,
                updated_at: now,
            },
            None,
        )
        .await?;
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let result = closed_loop(writers, duration, warmup, move |w, n| {
        let store = store.clone();
        let memory_id = memory_id.clone();
        let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let ts = berth_types::now_millis();
            let row = EventRow {
                memory_id,
                actor_id: format!("bench-actor-{w}"),
                session_id: format!("bench-session-{w:02}"),
                event_id: format!("{ts:019}#{seq:016x}"),
                event_ts: ts,
                branch_name: None,
                branch_root: None,
                payload: json!([{"conversational": {
                    "content": {"text": event_text(w, n, text_bytes)}, "role": "USER"}}]),
                metadata: None,
                client_token: None,
                created_at: ts,
            };
            store
                .insert_events(std::slice::from_ref(&row))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    Ok(Raw {
        store: throughput(writers, result),
        disk_fdatasync_per_s: disk,
    })
}

fn fdatasync_rate(path: &std::path::Path, for_: Duration) -> anyhow::Result<f64> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5au8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < for_ {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    Ok((n as f64 / started.elapsed().as_secs_f64()).round())
}

/// What seeding did.
#[derive(Serialize)]
pub struct Seeded {
    /// Records created.
    pub records: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// `records / seconds` (embedding included).
    pub records_per_s: f64,
}

async fn seed(template: Template, path: PathBuf, concurrency: usize) -> anyhow::Result<Seeded> {
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let content = v["content"]
            .as_str()
            .ok_or_else(|| anyhow!("line {}: no content", i + 1))?;
        let namespace = v["namespace"]
            .as_str()
            .ok_or_else(|| anyhow!("line {}: no namespace", i + 1))?;
        records.push(json!({
            "requestIdentifier": format!("r{i}"),
            "namespaces": [namespace],
            "content": {"text": content},
            "timestamp": unix_seconds(),
        }));
    }
    let batches: Vec<Value> = records.chunks(100).map(|c| json!({"records": c})).collect();
    let total = records.len() as u64;
    let started = Instant::now();
    let template = Arc::new(template);
    let queue = Arc::new(std::sync::Mutex::new(batches.into_iter()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let template = template.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(template.target.addr).await?;
            loop {
                let next = queue.lock().map_err(|_| anyhow!("queue poisoned"))?.next();
                let Some(batch) = next else { break };
                let (status, body) = call(&mut conn, &template, &batch).await?;
                if status != 201 {
                    bail!("BatchCreateMemoryRecords: status {status}: {body}");
                }
                let failed: Vec<&Value> = body["failedRecords"]
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                if !failed.is_empty() {
                    bail!(
                        "BatchCreateMemoryRecords: {} failed, first: {}",
                        failed.len(),
                        failed[0]
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("a seeding task panicked")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Seeded {
        records: total,
        seconds: (seconds * 100.0).round() / 100.0,
        records_per_s: (total as f64 / seconds).round(),
    })
}

/// What the retrieval probe measured.
#[derive(Serialize)]
pub struct Retrieval {
    /// Labelled queries.
    pub queries: usize,
    /// Requests sent (queries x passes).
    pub requests: u64,
    /// Request latency, µs.
    pub latency: Summary,
    /// Recall@1, @5, @k over all queries (fraction).
    pub recall: BTreeMap<String, f64>,
    /// The same per query kind.
    pub recall_by_kind: BTreeMap<String, BTreeMap<String, f64>>,
    /// Queries whose fact was not in the top k, with what came first instead.
    pub misses: Vec<Value>,
}

#[derive(serde::Deserialize)]
struct Labelled {
    query: String,
    fact: String,
    #[serde(default)]
    kind: String,
}

async fn retrieve(
    template: Template,
    path: PathBuf,
    namespace_path: &str,
    top_k: usize,
    passes: usize,
    limit: Option<usize>,
) -> anyhow::Result<Retrieval> {
    let mut labelled: Vec<Labelled> = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a list of {{query, fact, kind}}", path.display()))?;
    if let Some(n) = limit {
        labelled.truncate(n);
    }
    if labelled.is_empty() {
        bail!("{}: no queries", path.display());
    }
    let mut conn = Connection::open(template.target.addr).await?;
    let mut latency = Latency::new();
    // Rank (1-based) of each query's fact in the first pass; None when not in the top k.
    let mut ranks: Vec<Option<usize>> = Vec::new();
    let mut misses = Vec::new();
    let mut requests = 0u64;
    for pass in 0..passes.max(1) {
        for q in &labelled {
            let body = json!({
                "namespacePath": namespace_path,
                "searchCriteria": {"searchQuery": q.query, "topK": top_k},
            });
            let started = Instant::now();
            let (status, v) = call(&mut conn, &template, &body).await?;
            latency.record(started.elapsed());
            requests += 1;
            if status != 200 {
                bail!("RetrieveMemoryRecords: status {status}: {v}");
            }
            if pass > 0 {
                continue;
            }
            let texts: Vec<&str> = v["memoryRecordSummaries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["content"]["text"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let rank = texts.iter().position(|t| *t == q.fact).map(|i| i + 1);
            if rank.is_none() {
                misses.push(json!({"query": q.query, "fact": q.fact,
                                   "first": texts.first().copied().unwrap_or("")}));
            }
            ranks.push(rank);
        }
    }
    let at = |k: usize, which: &dyn Fn(usize) -> bool| {
        let (mut hit, mut n) = (0usize, 0usize);
        for (i, r) in ranks.iter().enumerate() {
            if which(i) {
                n += 1;
                hit += usize::from(r.is_some_and(|r| r <= k));
            }
        }
        if n == 0 {
            0.0
        } else {
            (hit as f64 / n as f64 * 1000.0).round() / 1000.0
        }
    };
    let ks = [1, 5, top_k];
    let recall_of = |which: &dyn Fn(usize) -> bool| -> BTreeMap<String, f64> {
        ks.iter()
            .map(|&k| (format!("@{k}"), at(k, which)))
            .collect()
    };
    let recall = recall_of(&|_| true);
    let mut kinds: Vec<&str> = labelled.iter().map(|q| q.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let recall_by_kind = kinds
        .into_iter()
        .map(|k| (k.to_owned(), recall_of(&|i| labelled[i].kind == k)))
        .collect();
    Ok(Retrieval {
        queries: labelled.len(),
        requests,
        latency: latency.summary(),
        recall,
        recall_by_kind,
        misses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_text_has_the_requested_size() {
        assert_eq!(event_text(3, 17, 200).len(), 200);
        assert!(event_text(3, 17, 5).starts_with("writer 3 event 17"));
    }

    #[tokio::test]
    async fn the_raw_store_probe_writes_durably_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("berth-bench-raw-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let r = raw(
            dir.clone(),
            4,
            Duration::from_millis(300),
            Duration::from_millis(50),
            64,
        )
        .await
        .expect("raw probe");
        // How many writes land inside the window depends on the disk; that each writer wrote and
        // nothing failed does not.
        assert!(
            r.store.writes >= 4,
            "only {} writes were made",
            r.store.writes
        );
        assert_eq!(r.store.errors, 0, "{:?}", r.store.error_samples);
        assert!(r.disk_fdatasync_per_s > 0.0);
        let left: Vec<_> = std::fs::read_dir(&dir).expect("read dir").collect();
        assert!(left.is_empty(), "the probe left files behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
