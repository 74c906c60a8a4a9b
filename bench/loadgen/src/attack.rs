//! B8's hostile clients, held against a server until told to stop: connections that never send a
//! byte (reopened as soon as the server closes them) and unauthenticated uploads of a large body
//! (started again when refused, at a bounded rate).
//!
//! Written here rather than in the harness's Python so that the attacker costs what the kernel's
//! TCP work costs and little more: on a two-CPU machine every millisecond the attacker spends is
//! taken from the server and the client being measured. Its own CPU time is reported.
//!
//! Protocol with the harness: prints `ready` on stderr once every idle socket is connected, runs
//! until its stdin closes, then prints its report (JSON) on stdout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// What to hold against the server.
pub struct AttackConfig {
    pub addr: SocketAddr,
    pub idle_sockets: usize,
    pub uploaders: usize,
    pub upload_bytes: u64,
    pub starts_per_s: f64,
}

#[derive(Default)]
struct Counts {
    reopened: AtomicU64,
    uploads_started: AtomicU64,
    upload_bytes_taken: AtomicU64,
    refusals: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    fn refused(&self, code: &str) {
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry(code.to_owned()).or_default() += 1;
    }
}

#[derive(Serialize)]
pub struct AttackReport {
    reopened: u64,
    uploads_started: u64,
    upload_bytes_taken: u64,
    refusals: BTreeMap<String, u64>,
    /// The attacker's own CPU (user + system) from `ready` to the end, ms.
    cpu_ms: f64,
    /// Wall time from `ready` to the end, ms.
    wall_ms: f64,
}

/// Runs the attack until stdin closes.
pub async fn run(cfg: AttackConfig) -> anyhow::Result<AttackReport> {
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let mut idle = Vec::with_capacity(cfg.idle_sockets);
    for _ in 0..cfg.idle_sockets {
        idle.push(
            TcpStream::connect(cfg.addr)
                .await
                .context("opening an idle socket")?,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for s in idle {
        tasks.spawn(hold_idle(s, cfg.addr, counts.clone(), stop.clone()));
    }
    for _ in 0..cfg.uploaders {
        tasks.spawn(upload_loop(
            cfg.addr,
            cfg.upload_bytes,
            Duration::from_secs_f64(1.0 / cfg.starts_per_s.max(0.001)),
            counts.clone(),
            stop.clone(),
        ));
    }
    let cpu0 = own_cpu_ms();
    let t0 = Instant::now();
    eprintln!("ready");
    // Stdin closing (the harness closing its end) is the signal to stop.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    let refusals = counts
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(AttackReport {
        reopened: counts.reopened.load(Ordering::Relaxed),
        uploads_started: counts.uploads_started.load(Ordering::Relaxed),
        upload_bytes_taken: counts.upload_bytes_taken.load(Ordering::Relaxed),
        refusals,
        cpu_ms: own_cpu_ms() - cpu0,
        wall_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// Holds one silent socket; when the server closes it, opens another at once.
async fn hold_idle(
    mut s: TcpStream,
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            // A silent socket becomes readable only when the server closes it.
            _ = s.read(&mut buf) => {}
        }
        match TcpStream::connect(addr).await {
            Ok(fresh) => {
                s = fresh;
                counts.reopened.fetch_add(1, Ordering::Relaxed);
            }
            // Not reopened: this slot is given up, as the Python attacker did.
            Err(_) => return,
        }
    }
}

/// Starts unauthenticated uploads one after another, at most one per `every`.
async fn upload_loop(
    addr: SocketAddr,
    bytes: u64,
    every: Duration,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let block = vec![0u8; 1 << 20];
    while !stop.is_cancelled() {
        let started = tokio::time::Instant::now();
        match upload(addr, bytes, &block, &stop).await {
            Ok((code, sent)) => {
                counts.uploads_started.fetch_add(1, Ordering::Relaxed);
                counts.upload_bytes_taken.fetch_add(sent, Ordering::Relaxed);
                counts.refused(&code);
            }
            Err(_) => counts.refused("error"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(started + every) => {}
        }
    }
}

/// One upload: the head, then body blocks as fast as the socket takes them, until the server
/// answers or closes. Returns the answer's status (or `closed`) and the body bytes sent.
async fn upload(
    addr: SocketAddr,
    bytes: u64,
    block: &[u8],
    stop: &CancellationToken,
) -> std::io::Result<(String, u64)> {
    let mut s = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /runtimes/x/invocations HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {bytes}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let (mut r, mut w) = s.split();
    let mut sent = 0u64;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while sent < bytes {
        let left = usize::try_from(bytes - sent).unwrap_or(usize::MAX);
        let chunk = &block[..block.len().min(left)];
        tokio::select! {
            _ = stop.cancelled() => break,
            n = r.read(&mut buf) => {
                let n = n?;
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            n = w.write(chunk) => match n {
                Ok(n) => sent += n as u64,
                // Reset by the server refusing the rest: what it answered so far is what counts.
                Err(_) => break,
            },
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .split(' ')
        .nth(1)
        .filter(|c| c.len() == 3)
        .unwrap_or("closed")
        .to_owned();
    Ok((code, sent))
}

/// This process's user + system CPU so far, ms (`CLOCK_PROCESS_CPUTIME_ID`).
fn own_cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}
