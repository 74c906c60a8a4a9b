//! `berth serve` flags of the HTTP edge (connection and body limits, timeouts), their `[edge]`
//! table in the config file, and the hook that serves Berth's API inside each sandbox.

use crate::serve::{invalid, positive};
use berth_server::{AppState, Edge, EdgeOptions};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Edge limits of `berth serve`. Each is also read from `BERTH_<NAME>` and from the config file's
/// `[edge]` table (same names, `_` for `-`): one struct for clap and serde, as `ServeArgs`.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeArgs {
    /// Connections held at once; at the limit idle ones are closed for new ones [default: 4096].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a connection has to send a complete request head, in ms [default: 10000].
    #[arg(long, env = "BERTH_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Time a connection may stay without a request in flight, in ms [default: 60000].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Time a request body may go without a byte arriving, in ms [default: 30000].
    #[arg(long, env = "BERTH_BODY_STALL_TIMEOUT_MS")]
    pub body_stall_timeout_ms: Option<u64>,
    /// Largest body of an invocation or an S3 upload, in MiB [default: 100].
    #[arg(long, env = "BERTH_LARGE_BODY_MIB")]
    pub large_body_mib: Option<usize>,
    /// Largest body of any other operation, in MiB [default: 8].
    #[arg(long, env = "BERTH_SMALL_BODY_MIB")]
    pub small_body_mib: Option<usize>,
    /// Request body bytes held in memory at once, in MiB; more is throttled [default: 1024].
    #[arg(long, env = "BERTH_BODY_BUDGET_MIB")]
    pub body_budget_mib: Option<usize>,
    /// Connections one sandbox may hold to Berth's API at once [default: 64].
    #[arg(long, env = "BERTH_SANDBOX_MAX_CONNECTIONS")]
    pub sandbox_max_connections: Option<usize>,
    /// Request body bytes one sandbox may have in flight, in MiB [default: 256].
    #[arg(long, env = "BERTH_SANDBOX_BODY_BUDGET_MIB")]
    pub sandbox_body_budget_mib: Option<usize>,
    /// TCP segment size the listeners advertise, 536-65495; a client sizes its first send buffer
    /// from it, so it bounds what a refused upload pushes [default: 1460].
    #[arg(long, env = "BERTH_MAX_SEGMENT_SIZE")]
    pub max_segment_size: Option<u32>,
    /// Threads serving connections, each with a runtime of its own; 1 serves them on the
    /// server's shared runtime [default: the CPUs].
    #[arg(long, env = "BERTH_EDGE_THREADS")]
    pub edge_threads: Option<usize>,
}

const MIB: usize = 1024 * 1024;

impl EdgeArgs {
    /// Flags (over their variables) over the config file's `[edge]` table.
    pub fn over(self, file: EdgeArgs) -> EdgeArgs {
        EdgeArgs {
            max_connections: self.max_connections.or(file.max_connections),
            header_timeout_ms: self.header_timeout_ms.or(file.header_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.or(file.idle_timeout_ms),
            body_stall_timeout_ms: self.body_stall_timeout_ms.or(file.body_stall_timeout_ms),
            large_body_mib: self.large_body_mib.or(file.large_body_mib),
            small_body_mib: self.small_body_mib.or(file.small_body_mib),
            body_budget_mib: self.body_budget_mib.or(file.body_budget_mib),
            sandbox_max_connections: self
                .sandbox_max_connections
                .or(file.sandbox_max_connections),
            sandbox_body_budget_mib: self
                .sandbox_body_budget_mib
                .or(file.sandbox_body_budget_mib),
            max_segment_size: self.max_segment_size.or(file.max_segment_size),
            edge_threads: self.edge_threads.or(file.edge_threads),
        }
    }

    /// Layered values over the defaults; every value must be at least 1.
    pub fn resolve(self) -> anyhow::Result<EdgeOptions> {
        let d = EdgeOptions::default();
        let pick = |key, v: Option<usize>, default: usize| positive(key, v.unwrap_or(default));
        let ms = |key, v: Option<u64>, default: Duration| -> anyhow::Result<Duration> {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            Ok(Duration::from_millis(positive(key, v.unwrap_or(default))?))
        };
        let mib = |key, v: Option<usize>, default: usize| -> anyhow::Result<usize> {
            positive(key, v.unwrap_or(default / MIB))?
                .checked_mul(MIB)
                .ok_or_else(|| invalid(key, "too large"))
        };
        let opts = EdgeOptions {
            max_connections: pick("max_connections", self.max_connections, d.max_connections)?,
            header_read_timeout: ms(
                "header_timeout_ms",
                self.header_timeout_ms,
                d.header_read_timeout,
            )?,
            idle_timeout: ms("idle_timeout_ms", self.idle_timeout_ms, d.idle_timeout)?,
            body_stall_timeout: ms(
                "body_stall_timeout_ms",
                self.body_stall_timeout_ms,
                d.body_stall_timeout,
            )?,
            large_body_limit: mib("large_body_mib", self.large_body_mib, d.large_body_limit)?,
            small_body_limit: mib("small_body_mib", self.small_body_mib, d.small_body_limit)?,
            body_budget: mib("body_budget_mib", self.body_budget_mib, d.body_budget)?,
            sandbox_max_connections: pick(
                "sandbox_max_connections",
                self.sandbox_max_connections,
                d.sandbox_max_connections,
            )?,
            sandbox_body_budget: mib(
                "sandbox_body_budget_mib",
                self.sandbox_body_budget_mib,
                d.sandbox_body_budget,
            )?,
            max_segment_size: self.max_segment_size.unwrap_or(d.max_segment_size),
            threads: pick("edge_threads", self.edge_threads, d.threads)?,
        };
        if !(536..=65495).contains(&opts.max_segment_size) {
            return Err(invalid("max_segment_size", "must be from 536 to 65495"));
        }
        if opts.body_budget < opts.large_body_limit {
            return Err(invalid(
                "body_budget_mib",
                "must hold at least one body of large-body-mib",
            ));
        }
        Ok(opts)
    }
}

/// The hook sessions call to serve Berth's API inside a sandbox, and the sender that hands it the
/// server's state once that exists (sessions are built before the state that contains them; a
/// sandbox started in between waits for it).
pub fn sandbox_api(
    edge: Edge,
) -> (
    Arc<berth_runtime::session::ApiServer>,
    tokio::sync::watch::Sender<Option<AppState>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(None::<AppState>);
    let server = move |listener: tokio::net::TcpListener,
                       sandbox: String,
                       cancel: tokio_util::sync::CancellationToken| {
        let (edge, mut rx) = (edge.clone(), rx.clone());
        let served = async move {
            let state = tokio::select! {
                _ = cancel.cancelled() => return,
                s = rx.wait_for(Option::is_some) => match s {
                    Ok(s) => s.clone(),
                    Err(_) => return,
                },
            };
            let Some(state) = state else { return };
            berth_server::serve_sandbox(listener, state, edge, sandbox, cancel).await;
        };
        Box::pin(served) as futures::future::BoxFuture<'static, ()>
    };
    (Arc::new(server), tx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_zero_is_refused() {
        let file: EdgeArgs = toml::from_str("max_connections = 10\nsmall_body_mib = 2").unwrap();
        let args = EdgeArgs {
            max_connections: Some(20),
            ..EdgeArgs::default()
        };
        let o = args.over(file).resolve().unwrap();
        assert_eq!(o.max_connections, 20);
        assert_eq!(o.small_body_limit, 2 * MIB);
        assert_eq!(o.large_body_limit, 100 * MIB);
        let zero = EdgeArgs {
            header_timeout_ms: Some(0),
            ..EdgeArgs::default()
        };
        let err = zero.resolve().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value for header-timeout-ms (BERTH_HEADER_TIMEOUT_MS): must be at least 1"
        );
        assert_eq!(o.max_segment_size, 1460);
        let tiny = EdgeArgs {
            max_segment_size: Some(100),
            ..EdgeArgs::default()
        };
        let err = tiny.resolve().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value for max-segment-size (BERTH_MAX_SEGMENT_SIZE): must be from 536 to 65495"
        );
    }
}
