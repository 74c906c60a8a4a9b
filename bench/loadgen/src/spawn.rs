//! The baseline for new-session latency: start an agent process bare (no Berth, no sandbox) and
//! time spawn to the first byte of its first answer.
//!
//! Each sample picks a free port, starts the command with `PORT` set to it, polls `GET /ping`
//! every `ping_interval` until it answers 200, sends one invocation on that connection, and
//! kills the process. A short poll interval gives the bare agent its best case.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::client::{Connection, Session, Target, Template, receive};
use crate::stats::{Latency, Summary};

/// Settings of the bare-start probe.
pub struct SpawnConfig {
    /// Processes started.
    pub count: u64,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Invocation body.
    pub body: Bytes,
    /// Pause between `/ping` attempts.
    pub ping_interval: Duration,
    /// Longest one start may take.
    pub timeout: Duration,
}

/// Result; latencies in microseconds.
#[derive(Debug, Default, Serialize)]
pub struct SpawnReport {
    /// Starts attempted.
    pub starts: u64,
    /// Starts that answered.
    pub ok: u64,
    /// Failures.
    pub errors: u64,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Spawn to the first `/ping` answered 200.
    pub ready: Summary,
    /// Spawn to the first byte of the first invocation's answer.
    pub ttfb: Summary,
}

/// Runs the probe.
pub async fn run(cfg: SpawnConfig) -> anyhow::Result<SpawnReport> {
    if cfg.command.is_empty() {
        bail!("no command to start");
    }
    let mut report = SpawnReport::default();
    let (mut ready, mut ttfb) = (Latency::new(), Latency::new());
    for _ in 0..cfg.count {
        report.starts += 1;
        match tokio::time::timeout(cfg.timeout, one_start(&cfg)).await {
            Ok(Ok((r, t))) => {
                report.ok += 1;
                ready.record(r);
                ttfb.record(t);
            }
            Ok(Err(e)) => {
                report.errors += 1;
                if report.error_samples.len() < 5 {
                    report.error_samples.push(format!("{e:#}"));
                }
            }
            Err(_) => {
                report.errors += 1;
                if report.error_samples.len() < 5 {
                    report
                        .error_samples
                        .push(format!("not answering within {:?}", cfg.timeout));
                }
            }
        }
    }
    report.ready = ready.summary();
    report.ttfb = ttfb.summary();
    Ok(report)
}

/// A port the OS just handed out and released. Another process could take it before the agent
/// binds it; the agent then fails to start and the sample is reported as an error.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Kills the child when the sample ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // `kill_on_drop` sends SIGKILL; tokio reaps the zombie in the background.
        let _ = self.0.start_kill();
    }
}

async fn one_start(cfg: &SpawnConfig) -> anyhow::Result<(Duration, Duration)> {
    let port = free_port()?;
    let target = Target::parse(&format!("http://127.0.0.1:{port}/invocations"))?;
    let template = Template {
        target: target.clone(),
        method: Method::POST,
        body: cfg.body.clone(),
        session: Session::None,
        credentials: None,
        accept: "application/json",
        headers: Vec::new(),
    };
    let started = Instant::now();
    let child = Command::new(&cfg.command[0])
        .args(&cfg.command[1..])
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {:?}", cfg.command))?;
    let mut child = Reaped(child);

    let mut conn = loop {
        if let Some(status) = child.0.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            bail!(
                "{:?} exited with {status} before answering: {}",
                cfg.command,
                tail(&err)
            );
        }
        if let Ok(mut c) = Connection::open(target.addr).await {
            let ping = template.build_for(Method::GET, "/ping", None, Bytes::new())?;
            if let Ok(r) = c.send(ping.request).await
                && receive(r).await.is_ok_and(|r| r.status == 200)
            {
                break c;
            }
        }
        tokio::time::sleep(cfg.ping_interval).await;
    };
    let ready = started.elapsed();
    let built = template.build()?;
    let r = receive(conn.send(built.request).await?).await?;
    if r.status != 200 {
        bail!("first invocation answered {}", r.status);
    }
    Ok((ready, r.first_byte - started))
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(800);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    s[i..].trim()
}
