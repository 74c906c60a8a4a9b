//! `berth-bench`: the load generator and probes behind `bench/run.sh`. Every subcommand prints one
//! JSON report on stdout; latencies are in microseconds.
//!
//! - `rate`: open-loop load at a fixed rate (B1, B2, B5).
//! - `sse`: SSE time to first byte and event merging (B3; B13 through the model gateway).
//! - `cold`: new session to first byte through Berth (B4, B5).
//! - `memory`: CreateEvent throughput, the raw store's durable write rate, retrieval (B6).
//! - `spawn`: the bare baseline for B4: start an agent process and time it to its first byte.
//! - `route-cost`: the routing decision and `Control::route`, timed in process (B7).
//! - `affinity`: many sessions on a traffic split, each invoked several times (B7).
//! - `trace-store`: the trace store's durable span ingest and its query by session (B10).
//! - `proxy`: a bare hyper reverse proxy, B2's floor (serves until killed; no report).
//!
//! Requests to Berth are SigV4-signed with `berth-auth` (`--sign`, credentials from
//! `BERTH_ACCESS_KEY_ID` / `BERTH_SECRET_ACCESS_KEY`).

mod affinity;
mod attack;
mod client;
mod cold;
mod evaluate;
mod memory;
mod proxy;
mod rate;
mod route;
mod spawn;
mod sse;
mod trace;

mod stats;
mod timer;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::Method;

use client::{Session, Target, Template};

#[derive(Parser)]
#[command(
    name = "berth-bench",
    about = "Load generator and probes for Berth's benchmarks"
)]
struct Cli {
    /// Threads of the `rate` generator (each with its own connections and timer).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop load at a fixed rate.
    Rate {
        #[command(flatten)]
        request: RequestArgs,
        /// Requests per second.
        #[arg(long)]
        rate: f64,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unrecorded seconds first, at the same rate.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Connections (one worker each).
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds after its intended start when a request counts as failed.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        /// Status counted as success.
        #[arg(long, default_value_t = 200)]
        expect_status: u16,
        /// Stop the sessions a `--new-session` run created, after the run.
        #[arg(long)]
        stop_sessions: bool,
        /// Stop each `--new-session` request's session right after its answer (a churn of
        /// finished sessions), outside the request's latency.
        #[arg(long)]
        stop_each: bool,
    },
    /// SSE time to first byte and event merging.
    Sse {
        #[command(flatten)]
        request: RequestArgs,
        /// Streams, one after another.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Events per stream.
        #[arg(long, default_value_t = 3)]
        events: u64,
        /// Milliseconds between events.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        /// Silent milliseconds after the first event.
        #[arg(long, default_value_t = 0)]
        gap_ms: u64,
        /// Size of each event.
        #[arg(long, default_value_t = 64)]
        event_bytes: u64,
        /// Seconds one stream may take.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Report each event's arrival time.
        #[arg(long)]
        trace: bool,
        /// Ask in the shape of Anthropic's Messages API (a model upstream behind Berth's
        /// gateway): `"model": M, "stream": true, "events": N` instead of `"stream": N`.
        #[arg(long)]
        model: Option<String>,
    },
    /// New session to first byte, one at a time.
    Cold {
        #[command(flatten)]
        request: RequestArgs,
        /// Sessions.
        #[arg(long, default_value_t = 20)]
        count: u64,
        /// Milliseconds between sessions.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        /// Stop each session after its sample.
        #[arg(long)]
        stop: bool,
        /// Seconds one request may take.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
    },
    /// Print one signed request (headers and body) as JSON, for tools that replay a fixed request
    /// (oha). Berth accepts a replayed signature for 15 minutes and verifies it on every request.
    Presign {
        #[command(flatten)]
        request: RequestArgs,
    },
    /// B8's hostile clients: idle sockets and unauthenticated uploads held against a server
    /// until stdin closes (prints `ready` on stderr once in place, its report on stdout at the end).
    Attack {
        /// The server's address (host:port).
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Connections that never send a byte.
        #[arg(long, default_value_t = 2000)]
        idle_sockets: usize,
        /// Concurrent unauthenticated uploads.
        #[arg(long, default_value_t = 8)]
        uploaders: usize,
        /// The `Content-Length` each upload announces (and sends, if the server reads it).
        #[arg(long, default_value_t = 100_000_000)]
        upload_bytes: u64,
        /// Most uploads one uploader starts per second.
        #[arg(long, default_value_t = 10.0)]
        starts_per_s: f64,
    },
    /// A bare reverse proxy on hyper and tokio in front of `--upstream` (B2's floor): serves
    /// until killed.
    Proxy {
        /// The agent's address (host:port).
        #[arg(long)]
        upstream: std::net::SocketAddr,
        /// One current-thread runtime per CPU, each with its own listener (as nginx's workers),
        /// instead of tokio's multi-thread runtime.
        #[arg(long)]
        per_core: bool,
    },
    /// Memory probes (B6): CreateEvent throughput, raw store rate, seeding, retrieval recall.
    Memory {
        #[command(subcommand)]
        probe: memory::MemoryCommand,
    },
    /// Start an agent bare and time it to its first byte (`PORT` is set for it).
    Spawn {
        /// Starts.
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Invocation body (JSON text).
        #[arg(long, default_value = "{}")]
        body: String,
        /// Milliseconds between `/ping` attempts.
        #[arg(long, default_value_t = 2)]
        ping_interval_ms: u64,
        /// Seconds one start may take.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Program and arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The cost of routing a new session, in process: `berth_control::decide` on several
    /// policies, then `Control::route` against a real SQLite store (B7).
    RouteCost {
        /// Timed `decide` calls per policy.
        #[arg(long, default_value_t = 1_000_000)]
        samples: u64,
        /// Calls per batch in the batched timing.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// New sessions routed through `Control::route`.
        #[arg(long, default_value_t = 1000)]
        route_samples: u64,
        /// Directory for the temporary store (the fsync cost is this disk's).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
    },
    /// Deterministic `Evaluate` calls per second in process (B11).
    Evaluate {
        /// Concurrent callers.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Seconds before the measurement.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// The trace store in process: durable span ingest (OTLP decode + insert, concurrent
    /// writers), then span queries by session over a store seeded with many spans (B10).
    TraceStore {
        /// Concurrent writers.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Spans per export request.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// Measured seconds of ingest.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Seconds of ingest before the measurement.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Spans seeded for the query figure.
        #[arg(long, default_value_t = 1_000_000)]
        seed_spans: u64,
        /// Spans per session in the seeded store.
        #[arg(long, default_value_t = 100)]
        spans_per_session: u64,
        /// Timed queries of each kind.
        #[arg(long, default_value_t = 1000)]
        queries: u64,
        /// Directory for the stores (the fsync cost is this disk's).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
    },
    /// Sessions on a traffic split, each invoked several times, interleaved, open loop; reports
    /// each version's share of sessions and follow-ups answered by another version (B7).
    Affinity {
        #[command(flatten)]
        request: RequestArgs,
        /// Sessions.
        #[arg(long, default_value_t = 2000)]
        sessions: u64,
        /// Invocations per session.
        #[arg(long, default_value_t = 5)]
        invocations: u32,
        /// Invocations per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Sessions in flight at once (their calls interleave).
        #[arg(long, default_value_t = 100)]
        active: u64,
        /// Connections (one worker each).
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Stop every n-th session after its first answer, so its follow-ups are routed again
        /// (0: none).
        #[arg(long, default_value_t = 10)]
        reroute_every: u64,
        /// Seconds after its intended start when a call counts as failed.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// JSON field of the answer naming the version.
        #[arg(long, default_value = "tag")]
        tag_field: String,
        /// Expected split, TAG=PERCENT in version order (`v1=90,v2=10`): sessions first
        /// answered by another version than their hash selects are reported as misrouted.
        #[arg(long, default_value = "")]
        split: String,
    },
}

/// What to send and where.
#[derive(Args)]
struct RequestArgs {
    /// Full URL (`http://IP:PORT/path?query`).
    #[arg(long)]
    url: String,
    /// Sign with SigV4 (`bedrock-agentcore`, us-east-1).
    #[arg(long)]
    sign: bool,
    /// Session id sent on every request.
    #[arg(long, conflicts_with = "new_session")]
    session: Option<String>,
    /// A fresh session id per request.
    #[arg(long)]
    new_session: bool,
    /// Body (JSON text); `--body-bytes` pads a `{"prompt": ...}` document instead.
    #[arg(long, conflicts_with = "body_bytes")]
    body: Option<String>,
    /// Body: a JSON document of exactly this many bytes.
    #[arg(long)]
    body_bytes: Option<usize>,
    /// A header sent on every request, `NAME:VALUE` (repeatable), e.g. a model gateway's
    /// `x-api-key`.
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = client::parse_header)]
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl RequestArgs {
    fn template(&self) -> anyhow::Result<Template> {
        let body = match (&self.body, self.body_bytes) {
            (Some(b), _) => Bytes::from(b.clone()),
            (None, Some(n)) => Bytes::from(padded_prompt(n)),
            (None, None) => Bytes::from_static(b"{}"),
        };
        Ok(Template {
            target: Target::parse(&self.url)?,
            method: Method::POST,
            body,
            session: match (&self.session, self.new_session) {
                (Some(id), _) => Session::Fixed(id.clone()),
                (None, true) => Session::New,
                (None, false) => Session::None,
            },
            credentials: if self.sign {
                Some(client::credentials_from_env()?)
            } else {
                None
            },
            accept: "application/json",
            headers: self.headers.clone(),
        })
    }
}

/// `{"prompt":"xxx..."}` of exactly `n` bytes (or the smallest such document).
fn padded_prompt(n: usize) -> Vec<u8> {
    let overhead = br#"{"prompt":""}"#.len();
    let pad = "x".repeat(n.saturating_sub(overhead));
    format!(r#"{{"prompt":"{pad}"}}"#).into_bytes()
}

fn seconds(s: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("--{name} must be a non-negative number of seconds"))
}

async fn run(command: Command, threads: usize) -> anyhow::Result<String> {
    let json = match command {
        Command::Rate {
            request,
            rate,
            duration,
            warmup,
            connections,
            timeout,
            expect_status,
            stop_sessions,
            stop_each,
        } => {
            let cfg = rate::RateConfig {
                rate,
                duration: seconds(duration, "duration")?,
                warmup: seconds(warmup, "warmup")?,
                connections,
                timeout: seconds(timeout, "timeout")?,
                expect_status,
                stop_sessions,
                stop_each,
            };
            let template = request.template()?;
            // The rate generator runs its own threads and runtimes.
            let report = tokio::task::spawn_blocking(move || rate::run(template, cfg, threads))
                .await
                .context("the load generator panicked")??;
            serde_json::to_string_pretty(&report)?
        }
        Command::Attack {
            addr,
            idle_sockets,
            uploaders,
            upload_bytes,
            starts_per_s,
        } => {
            let report = attack::run(attack::AttackConfig {
                addr,
                idle_sockets,
                uploaders,
                upload_bytes,
                starts_per_s,
            })
            .await?;
            serde_json::to_string_pretty(&report)?
        }
        Command::Sse {
            request,
            count,
            events,
            interval_ms,
            gap_ms,
            event_bytes,
            timeout,
            trace,
            model,
        } => {
            let cfg = sse::SseConfig {
                count,
                events,
                interval: Duration::from_millis(interval_ms),
                gap: Duration::from_millis(gap_ms),
                event_bytes,
                timeout: seconds(timeout, "timeout")?,
                trace,
                model,
            };
            serde_json::to_string_pretty(&sse::run(request.template()?, cfg).await?)?
        }
        Command::Cold {
            request,
            count,
            pause_ms,
            stop,
            timeout,
        } => {
            let cfg = cold::ColdConfig {
                count,
                pause: Duration::from_millis(pause_ms),
                stop,
                timeout: seconds(timeout, "timeout")?,
            };
            serde_json::to_string_pretty(&cold::run(request.template()?, cfg).await?)?
        }
        Command::Presign { request } => {
            let template = request.template()?;
            let built = template.build()?;
            let mut headers = serde_json::Map::new();
            for (name, value) in built.request.headers() {
                let value = value.to_str().context("a signed header is not text")?;
                headers.insert(name.as_str().to_owned(), value.into());
            }
            let body = String::from_utf8(template.body.to_vec()).context("the body is not text")?;
            serde_json::to_string_pretty(&serde_json::json!({ "headers": headers, "body": body }))?
        }
        Command::Memory { probe } => serde_json::to_string_pretty(&memory::run(probe).await?)?,
        // `main` runs it on a runtime of its own before any probe's.
        Command::Proxy { .. } => anyhow::bail!("proxy is a server, not a probe"),
        Command::Spawn {
            count,
            body,
            ping_interval_ms,
            timeout,
            command,
        } => {
            let cfg = spawn::SpawnConfig {
                count,
                command,
                body: Bytes::from(body),
                ping_interval: Duration::from_millis(ping_interval_ms),
                timeout: seconds(timeout, "timeout")?,
            };
            serde_json::to_string_pretty(&spawn::run(cfg).await?)?
        }
        Command::RouteCost {
            samples,
            batch,
            route_samples,
            dir,
        } => {
            let cfg = route::RouteCostConfig {
                samples,
                batch,
                route_samples,
                dir,
            };
            serde_json::to_string_pretty(&route::run(cfg).await?)?
        }
        Command::Evaluate {
            workers,
            seconds,
            warmup,
        } => serde_json::to_string_pretty(&evaluate::run(workers, seconds, warmup).await?)?,
        Command::TraceStore {
            writers,
            batch,
            seconds,
            warmup,
            seed_spans,
            spans_per_session,
            queries,
            dir,
        } => {
            let cfg = trace::TraceStoreConfig {
                writers,
                batch,
                seconds,
                warmup,
                seed_spans,
                spans_per_session,
                queries,
                dir,
            };
            serde_json::to_string_pretty(&trace::run(cfg).await?)?
        }
        Command::Affinity {
            request,
            sessions,
            invocations,
            rate,
            active,
            connections,
            reroute_every,
            timeout,
            tag_field,
            split,
        } => {
            if request.session.is_some() || request.new_session {
                anyhow::bail!("affinity sets the session ids itself: drop --session/--new-session");
            }
            let cfg = affinity::AffinityConfig {
                sessions,
                invocations,
                rate,
                active,
                connections,
                reroute_every,
                timeout: seconds(timeout, "timeout")?,
                tag_field,
                split: affinity::parse_split(&split)?,
            };
            serde_json::to_string_pretty(&affinity::run(request.template()?, cfg).await?)?
        }
    };
    Ok(json)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Proxy { upstream, per_core } = cli.command {
        // A server (on the multi-thread runtime Berth uses, or a runtime per core), not a probe.
        return match proxy::run(upstream, per_core) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth-bench proxy: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The probes are sequential: one thread, no cross-thread wake-ups in their timings.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(cli.command, cli.threads)));
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::padded_prompt;

    #[test]
    fn padded_prompt_is_exact_and_valid_json() {
        for n in [16, 100, 1024] {
            let b = padded_prompt(n);
            assert_eq!(b.len(), n);
            assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok());
        }
    }
}
