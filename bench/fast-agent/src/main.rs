//! `berth-fast-agent`: serves the AgentCore agent contract (see the library docs).
//!
//! Listens on `127.0.0.1:$PORT` (Berth sets `PORT` in a sandbox), else `127.0.0.1:8080`;
//! `--listen ADDR` overrides both, and port 0 lets the OS choose. Prints
//! `listening on http://ADDR` once bound, so a harness can learn the port. Worker threads:
//! `BERTH_FAST_AGENT_THREADS` (default: one per CPU). `BERTH_FAST_AGENT_TAG`, when set and not
//! empty, is echoed as `"tag"` in every answer (see `berth_fast_agent::Config`).

use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: berth-fast-agent [--listen ADDR]\n\
    listens on 127.0.0.1:$PORT, else 127.0.0.1:8080; --listen overrides (port 0: OS-chosen)";

fn listen_address() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = Some(args.next().ok_or("--listen needs an address")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if let Some(addr) = listen {
        return addr.parse().map_err(|e| format!("--listen {addr:?}: {e}"));
    }
    let port = match std::env::var("PORT") {
        Ok(p) => p.parse::<u16>().map_err(|e| format!("PORT {p:?}: {e}"))?,
        Err(_) => 8080,
    };
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn worker_threads() -> Result<Option<usize>, String> {
    match std::env::var("BERTH_FAST_AGENT_THREADS") {
        Ok(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!(
                "BERTH_FAST_AGENT_THREADS {n:?}: expected a positive integer"
            )),
        },
        Err(_) => Ok(None),
    }
}

/// The opt-in tag: `BERTH_FAST_AGENT_TAG` if set and not empty.
fn config() -> berth_fast_agent::Config {
    berth_fast_agent::Config {
        tag: std::env::var("BERTH_FAST_AGENT_TAG")
            .ok()
            .filter(|t| !t.is_empty()),
    }
}

async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    berth_fast_agent::serve_with(listener, shutdown_signal(), config()).await
}

/// SIGTERM or SIGINT. Without handlers the process would still die on either; they only make
/// the exit clean.
async fn shutdown_signal() {
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
        _ => std::future::pending().await,
    }
}

fn main() -> ExitCode {
    let (addr, threads) = match (listen_address(), worker_threads()) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("berth-fast-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let result = builder.build().and_then(|rt| rt.block_on(run(addr)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-fast-agent: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
