//! Open-loop load at a fixed rate (the wrk2 / oha `--latency-correction` model).
//!
//! Request slots are released on a fixed schedule, `1/rate` apart, whatever the server does; a
//! pool of workers, each with its own kept-alive connection, takes the next slot when free.
//! Latency is measured from a slot's *intended* start, so a slow response delays the slots queued
//! behind it and that delay is counted (no coordinated omission). Slots are timed with a
//! `timerfd` (see [`crate::timer`]) rather than tokio's 1 ms timer wheel; how late slots were
//! actually taken by a worker is reported as `dispatch_lag`.
//!
//! Requests are built (and signed) by a worker *before* it takes its next slot, so signing is
//! client work outside the measured window; its cost is reported separately as `sign`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use tokio::sync::{Barrier, Mutex, mpsc};

use crate::client::{Connection, Session, Template, receive};
use crate::stats::{Latency, Summary};
use crate::timer::PreciseTimer;

/// Settings of one fixed-rate run.
#[derive(Clone)]
pub struct RateConfig {
    /// Requests per second offered.
    pub rate: f64,
    /// Measured seconds.
    pub duration: Duration,
    /// Seconds run first at the same rate and not recorded (connections and caches warm up).
    pub warmup: Duration,
    /// Workers, hence connections.
    pub connections: usize,
    /// A request slower than this (counted from its intended start) is an error, and a slot
    /// released longer than this ago is dropped as an error without being sent, which bounds a
    /// run that offers more than the server can take.
    pub timeout: Duration,
    /// Status that counts as success.
    pub expect_status: u16,
    /// After the run, stop every session the run created (`StopRuntimeSession`), outside the
    /// measurement.
    pub stop_sessions: bool,
    /// Stop each `--new-session` request's session right after its answer, on the same
    /// connection and outside its latency: a steady churn of short, finished sessions.
    pub stop_each: bool,
}

/// Result of a run; latencies in microseconds.
#[derive(Debug, Default, Serialize)]
pub struct RateReport {
    /// Requests per second offered.
    pub offered_rate: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Workers / connections.
    pub connections: usize,
    /// Slots in the measured window.
    pub intended: u64,
    /// Slots answered with the expected status.
    pub ok: u64,
    /// Slots that failed: other status, transport error, timeout, or dropped as too late.
    pub errors: u64,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// A few error messages, for the log.
    pub error_samples: Vec<String>,
    /// Successful responses per second over the measured window.
    pub achieved_rate: f64,
    /// Intended start to last body byte: the figure the benchmark reports.
    pub latency: Summary,
    /// Actual send to last body byte.
    pub service: Summary,
    /// Intended start to first body byte.
    pub ttfb: Summary,
    /// Intended start to actual send (dispatcher precision plus queueing for a free worker).
    pub dispatch_lag: Summary,
    /// Client-side SigV4 signing time per request (zero when unsigned).
    pub sign: Summary,
    /// Sessions stopped after the run, and stop calls that failed.
    pub sessions_stopped: u64,
    /// Stop calls that failed.
    pub sessions_stop_failed: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    intended: Instant,
    measured: bool,
}

#[derive(Default)]
struct WorkerResult {
    ok: u64,
    errors: u64,
    status: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    latency: Latency,
    service: Latency,
    ttfb: Latency,
    lag: Latency,
    sign: Latency,
    last_done: Option<Instant>,
    sessions: Vec<String>,
    stopped: u64,
    stop_failed: u64,
}

impl WorkerResult {
    fn absorb(&mut self, r: WorkerResult) {
        self.ok += r.ok;
        self.errors += r.errors;
        for (k, v) in r.status {
            *self.status.entry(k).or_default() += v;
        }
        for e in r.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
        self.latency.merge(&r.latency);
        self.service.merge(&r.service);
        self.ttfb.merge(&r.ttfb);
        self.lag.merge(&r.lag);
        self.sign.merge(&r.sign);
        self.last_done = self.last_done.max(r.last_done);
        self.sessions.extend(r.sessions);
        self.stopped += r.stopped;
        self.stop_failed += r.stop_failed;
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(message);
        }
    }
}

/// Runs open-loop load per `cfg` with requests from `template`, on `threads` OS threads.
///
/// Each thread runs its own single-threaded tokio runtime with its share of the connections and
/// its own precise timer, and releases every `threads`-th slot of the common schedule (the wrk2
/// layout): a slot wakes only the thread that sends it.
pub fn run(template: Template, cfg: RateConfig, threads: usize) -> anyhow::Result<RateReport> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        bail!("--rate must be a positive number");
    }
    let threads = threads.max(1);
    if cfg.connections < threads {
        bail!(
            "--connections ({}) must be at least --threads ({threads})",
            cfg.connections
        );
    }
    let warmup_slots = (cfg.warmup.as_secs_f64() * cfg.rate).round() as u64;
    let measured_slots = (cfg.duration.as_secs_f64() * cfg.rate).round().max(1.0) as u64;
    let shared = Arc::new(Shared {
        start: OnceLock::new(),
        connected: std::sync::Barrier::new(threads),
    });
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let connections = cfg.connections / threads + usize::from(t < cfg.connections % threads);
        let plan = ThreadPlan {
            index: t as u64,
            stride: threads as u64,
            connections,
            total_slots: warmup_slots + measured_slots,
            warmup_slots,
        };
        let (template, cfg, shared) = (template.clone(), cfg.clone(), shared.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || load_thread(template, cfg, plan, shared))
                .context("starting a load thread")?,
        );
    }
    let mut total = WorkerResult::default();
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total.absorb(r);
    }
    let start = *shared.start.get().context("the run never started")?;
    let measured_from = start + Duration::from_secs_f64(warmup_slots as f64 / cfg.rate);

    // The window ends when the last slot was due or when its answer came, whichever is later.
    let window_end = (measured_from + cfg.duration).max(total.last_done.unwrap_or(measured_from));
    let window = window_end
        .saturating_duration_since(measured_from)
        .as_secs_f64();
    let mut report = RateReport {
        offered_rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        connections: cfg.connections,
        intended: measured_slots,
        ok: total.ok,
        errors: total.errors,
        status: total.status,
        error_samples: total.error_samples,
        achieved_rate: if window > 0.0 {
            total.ok as f64 / window
        } else {
            0.0
        },
        latency: total.latency.summary(),
        service: total.service.summary(),
        ttfb: total.ttfb.summary(),
        dispatch_lag: total.lag.summary(),
        sign: total.sign.summary(),
        sessions_stopped: total.stopped,
        sessions_stop_failed: total.stop_failed,
    };
    if cfg.stop_sessions && !total.sessions.is_empty() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime to stop sessions")?;
        let (stopped, failed) = rt.block_on(stop_sessions(&template, total.sessions, 8));
        report.sessions_stopped += stopped;
        report.sessions_stop_failed += failed;
    }
    Ok(report)
}

/// State the load threads share: the common start, set by the first thread past the barrier.
struct Shared {
    start: OnceLock<Instant>,
    connected: std::sync::Barrier,
}

/// One thread's share of a run.
#[derive(Clone, Copy)]
struct ThreadPlan {
    /// This thread sends slots `index`, `index + stride`, ...
    index: u64,
    stride: u64,
    connections: usize,
    total_slots: u64,
    warmup_slots: u64,
}

fn load_thread(
    template: Template,
    cfg: RateConfig,
    plan: ThreadPlan,
    shared: Arc<Shared>,
) -> anyhow::Result<WorkerResult> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // The other threads wait for this one at the barrier: reach it before failing.
            shared.connected.wait();
            return Err(e).context("starting a load thread's runtime");
        }
    };
    rt.block_on(async move {
        let (tx, rx) = mpsc::unbounded_channel::<Slot>();
        let rx = Arc::new(Mutex::new(rx));
        let ready = Arc::new(Barrier::new(plan.connections + 1));
        let mut workers = Vec::with_capacity(plan.connections);
        for _ in 0..plan.connections {
            let (template, rx, ready, cfg) =
                (template.clone(), rx.clone(), ready.clone(), cfg.clone());
            workers.push(tokio::spawn(async move {
                worker(template, rx, ready, cfg).await
            }));
        }
        // Connection set-up is not part of any request's latency: every worker of every thread
        // has connected (or failed to) before the first slot. Blocking this thread's runtime
        // here is harmless: its tasks are all idle until the first slot.
        ready.wait().await;
        shared.connected.wait();
        let start = *shared
            .start
            .get_or_init(|| Instant::now() + Duration::from_millis(20));
        let timer = PreciseTimer::new().context("creating a timerfd")?;
        let mut slot = plan.index;
        while slot < plan.total_slots {
            let intended = start + Duration::from_secs_f64(slot as f64 / cfg.rate);
            timer
                .sleep_until(intended)
                .await
                .context("waiting on the timerfd")?;
            if tx
                .send(Slot {
                    intended,
                    measured: slot >= plan.warmup_slots,
                })
                .is_err()
            {
                break;
            }
            slot += plan.stride;
        }
        drop(tx);
        let mut total = WorkerResult::default();
        for w in workers {
            total.absorb(w.await.context("a worker panicked")??);
        }
        Ok(total)
    })
}

async fn worker(
    template: Template,
    slots: Arc<Mutex<mpsc::UnboundedReceiver<Slot>>>,
    ready: Arc<Barrier>,
    cfg: RateConfig,
) -> anyhow::Result<WorkerResult> {
    let mut out = WorkerResult::default();
    let stop_each = match (cfg.stop_each, &template.session) {
        (true, Session::New) => stop_path(&template.target.path_and_query),
        _ => None,
    };
    let mut conn = Connection::open(template.target.addr).await;
    ready.wait().await;
    loop {
        let built = template.build()?;
        let slot = slots.lock().await.recv().await;
        let Some(slot) = slot else { break };
        let taken = Instant::now();
        if slot.measured {
            out.sign.record(built.sign_time);
        }
        let new_session = match (&built.session_id, &template.session) {
            (Some(id), Session::New) => Some(id.clone()),
            _ => None,
        };
        if let (Some(id), None) = (&new_session, &stop_each) {
            out.sessions.push(id.clone());
        }
        if taken.saturating_duration_since(slot.intended) > cfg.timeout {
            if slot.measured {
                out.error(format!(
                    "slot released more than {:?} late: the server cannot keep up",
                    cfg.timeout
                ));
            }
            continue;
        }
        let c = match &mut conn {
            Ok(c) => c,
            Err(e) => {
                let message = format!("{e:#}");
                if slot.measured {
                    out.error(message);
                }
                conn = Connection::open(template.target.addr).await;
                continue;
            }
        };
        let deadline = slot.intended + cfg.timeout;
        let result = tokio::time::timeout_at(deadline.into(), async {
            let response = c.send(built.request).await?;
            receive(response).await
        })
        .await;
        match result {
            Ok(Ok(received)) => {
                out.last_done = out.last_done.max(Some(received.done));
                if let (Some(path), Some(id)) = (&stop_each, new_session) {
                    let stopped = async {
                        let built =
                            template.build_for(Method::POST, path, Some(id), Bytes::new())?;
                        anyhow::Ok(receive(c.send(built.request).await?).await?.status == 200)
                    }
                    .await;
                    match stopped {
                        Ok(true) => out.stopped += 1,
                        Ok(false) => out.stop_failed += 1,
                        Err(_) => {
                            out.stop_failed += 1;
                            conn = Connection::open(template.target.addr).await;
                        }
                    }
                }
                if !slot.measured {
                    continue;
                }
                *out.status.entry(received.status.to_string()).or_default() += 1;
                if received.status == cfg.expect_status {
                    out.ok += 1;
                    out.latency.record(received.done - slot.intended);
                    out.service.record(received.done - taken);
                    out.ttfb.record(received.first_byte - slot.intended);
                    out.lag.record(taken - slot.intended);
                } else {
                    let body =
                        String::from_utf8_lossy(&received.body[..received.body.len().min(300)])
                            .into_owned();
                    out.error(format!("status {}: {body}", received.status));
                }
            }
            Ok(Err(e)) => {
                if slot.measured {
                    out.error(format!("{e:#}"));
                }
                conn = Connection::open(template.target.addr).await;
            }
            Err(_) => {
                if slot.measured {
                    out.error(format!("no complete answer within {:?}", cfg.timeout));
                }
                // The connection still carries the late answer: start a clean one.
                conn = Connection::open(template.target.addr).await;
            }
        }
    }
    Ok(out)
}

/// The `StopRuntimeSession` path next to an `/invocations` path (same runtime, same query).
pub fn stop_path(invocations_path: &str) -> Option<String> {
    let (path, query) = invocations_path
        .split_once('?')
        .map_or((invocations_path, None), |(p, q)| (p, Some(q)));
    let base = path.strip_suffix("/invocations")?;
    Some(match query {
        Some(q) => format!("{base}/stopruntimesession?{q}"),
        None => format!("{base}/stopruntimesession"),
    })
}

/// Stops `sessions` with up to `parallel` connections; returns (stopped, failed).
pub async fn stop_sessions(
    template: &Template,
    sessions: Vec<String>,
    parallel: usize,
) -> (u64, u64) {
    let Some(path) = stop_path(&template.target.path_and_query) else {
        return (0, sessions.len() as u64);
    };
    let queue = Arc::new(std::sync::Mutex::new(sessions));
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (queue, template, path) = (queue.clone(), template.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let (mut stopped, mut failed) = (0u64, 0u64);
            let mut conn: Option<Connection> = None;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(id) = next else { break };
                let ok = async {
                    if conn.is_none() {
                        conn = Some(Connection::open(template.target.addr).await?);
                    }
                    let c = conn.as_mut().context("connection")?;
                    let built = template.build_for(Method::POST, &path, Some(id), Bytes::new())?;
                    let r = receive(c.send(built.request).await?).await?;
                    anyhow::Ok(r.status == 200)
                }
                .await;
                match ok {
                    Ok(true) => stopped += 1,
                    Ok(false) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        conn = None;
                    }
                }
            }
            (stopped, failed)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        if let Ok((s, f)) = t.await {
            total.0 += s;
            total.1 += f;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_path_keeps_the_runtime_and_the_query() {
        assert_eq!(
            stop_path("/runtimes/arn%3Ax/invocations?qualifier=DEFAULT").as_deref(),
            Some("/runtimes/arn%3Ax/stopruntimesession?qualifier=DEFAULT")
        );
        assert_eq!(
            stop_path("/runtimes/a/invocations").as_deref(),
            Some("/runtimes/a/stopruntimesession")
        );
        assert_eq!(stop_path("/invocationsx"), None);
    }
}
