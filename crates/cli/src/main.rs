//! `berth`: the server (`berth serve`) and the client commands that drive it.

/// `println!` for client command output: when stdout is closed early (`berth ... --json | head`)
/// the command ends quietly instead of panicking on `EPIPE`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

/// mimalloc, not glibc's allocator: glibc's `malloc_consolidate` ran on every request of the
/// invocation hot path (hyper's request header maps are large allocations), ~9% of the server's
/// CPU in a profile (bench/notes/B2.md). Safe with the sandbox clone: the cloned child allocates
/// nothing before exec (`runtime::sandbox::child`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agents;
mod client;
mod commands;
mod datadir;
mod edge_args;
mod eval;
mod eval_args;
mod exec;
mod experiment;
mod keys;
mod model;
mod nodes;
mod rollout;
mod secrets;
mod serve;
mod traces;
mod usage;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Berth: a self-hosted runtime for AI agents, wire-compatible with AWS Bedrock AgentCore.
#[derive(Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a client command finds the server and its credentials.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(
        long,
        env = "BERTH_ENDPOINT_URL",
        default_value = "http://127.0.0.1:8750",
        global = true
    )]
    pub endpoint_url: String,
    /// Data dir holding the root credentials, used when AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are unset.
    #[arg(long, env = "BERTH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Region to sign for.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1", global = true)]
    pub region: String,
    /// Print raw JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

// `serve`'s arguments make the enum large; it is parsed once per process, so size is no concern.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<serve::ServeArgs>),
    /// Show the root credentials (from the environment or the data dir).
    Credentials {
        /// Print `export` lines for a shell.
        #[arg(long)]
        export: bool,
        /// Data dir holding the root credentials.
        #[arg(long, env = "BERTH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Server URL printed in the export lines.
        #[arg(
            long,
            env = "BERTH_ENDPOINT_URL",
            default_value = "http://127.0.0.1:8750"
        )]
        endpoint_url: String,
        /// Region printed in the export lines (`AWS_REGION`, `AWS_DEFAULT_REGION`).
        #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
        region: String,
    },
    /// Agent runtimes.
    Runtimes {
        #[command(subcommand)]
        cmd: commands::RuntimesCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Immutable versions of a runtime.
    Versions {
        #[command(subcommand)]
        cmd: commands::VersionsCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Package a directory, upload it, create or update the runtime, wait for the build.
    Deploy {
        #[command(flatten)]
        deploy: agents::DeployArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Invoke an agent; SSE events print as they arrive.
    Invoke {
        #[command(flatten)]
        invoke: agents::InvokeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a shell command in a session's sandbox (InvokeAgentRuntimeCommand); exits with its code.
    Exec {
        #[command(flatten)]
        exec: exec::ExecArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cached container images: list (with the versions pinning each) and prune.
    Images {
        #[command(subcommand)]
        cmd: agents::ImagesCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Live sessions: list and stop.
    Sessions {
        #[command(subcommand)]
        cmd: agents::SessionsCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Spans agents exported: list, show a trace as a waterfall, a session's spans.
    Traces {
        #[command(subcommand)]
        cmd: traces::TracesCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// GenAI usage from agents' spans: tokens, tool calls and cost, per version, session, actor
    /// or model.
    Usage {
        #[command(flatten)]
        usage: usage::UsageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The nodes of an installation sharing one store: list them, drain one.
    Nodes {
        #[command(subcommand)]
        cmd: nodes::NodesCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The model gateway: upstreams and their pooled credentials' health (by name).
    Gateway {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Versions of an endpoint compared on their evaluation scores (mean, CI, Welch's p).
    Experiment {
        #[command(subcommand)]
        cmd: experiment::ExperimentCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Evaluation scores: import scores produced outside Berth for an endpoint.
    Scores {
        #[command(subcommand)]
        cmd: experiment::ScoresCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A quality gate for CI: run a dataset against one version, score it with evaluators, fail
    /// below the thresholds.
    Eval {
        #[command(flatten)]
        eval: eval::EvalArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An agent session's stdout and stderr.
    Logs {
        #[command(flatten)]
        logs: agents::LogsArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Endpoints of a runtime.
    Endpoints {
        #[command(subcommand)]
        cmd: commands::EndpointsCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Traffic policy of an endpoint: weights, routing rules, per-version health.
    Traffic {
        #[command(subcommand)]
        cmd: rollout::TrafficCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rollouts: walk an endpoint to a new version in steps, guarded by analysis.
    Rollout {
        #[command(subcommand)]
        cmd: rollout::RolloutCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move an endpoint back to its previous version in one call.
    Rollback {
        #[command(flatten)]
        rollback: rollout::RollbackArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Access keys for people and CI, each with a policy: create, list, revoke.
    Keys {
        #[command(subcommand)]
        cmd: keys::KeysCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Roles runtimes act as (their roleArn), each with IAM policy documents.
    Roles {
        #[command(subcommand)]
        cmd: keys::RolesCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Secrets runtimes reference from environment variables (`berth-secret:NAME`): put, list,
    /// delete. Values are never shown back.
    Secrets {
        #[command(subcommand)]
        cmd: secrets::SecretsCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The hash-chained audit log of every mutation.
    Audit {
        #[command(flatten)]
        audit: rollout::AuditArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Credentials {
                export,
                data_dir,
                endpoint_url,
                region,
            } => commands::credentials(export, data_dir, &endpoint_url, &region),
            Command::Runtimes { cmd, client } => commands::runtimes(cmd, client).await,
            Command::Versions { cmd, client } => commands::versions(cmd, client).await,
            Command::Endpoints { cmd, client } => commands::endpoints(cmd, client).await,
            Command::Traffic { cmd, client } => rollout::traffic(cmd, client).await,
            Command::Rollout { cmd, client } => rollout::rollout(cmd, client).await,
            Command::Rollback { rollback, client } => rollout::rollback(rollback, client).await,
            Command::Audit { audit, client } => rollout::audit(audit, client).await,
            Command::Keys { cmd, client } => keys::keys(cmd, client).await,
            Command::Roles { cmd, client } => keys::roles(cmd, client).await,
            Command::Secrets { cmd, client } => secrets::secrets(cmd, client).await,
            Command::Deploy { deploy, client } => agents::deploy(deploy, client).await,
            Command::Invoke { invoke, client } => agents::invoke(invoke, client).await,
            Command::Exec { exec, client } => exec::exec(exec, client).await,
            Command::Sessions { cmd, client } => agents::sessions(cmd, client).await,
            Command::Images { cmd, client } => agents::images(cmd, client).await,
            Command::Logs { logs, client } => agents::logs(logs, client).await,
            Command::Traces { cmd, client } => traces::traces(cmd, client).await,
            Command::Usage { usage, client } => usage::usage(usage, client).await,
            Command::Gateway { client } => usage::gateway(client).await,
            Command::Nodes { cmd, client } => nodes::nodes(cmd, client).await,
            Command::Experiment { cmd, client } => experiment::experiment(cmd, client).await,
            Command::Scores { cmd, client } => experiment::scores(cmd, client).await,
            Command::Eval { eval, client } => eval::eval(eval, client).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted was written.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        // `berth exec`: the command's own exit code (0..=255 as a shell reports it).
        Err(e) if e.downcast_ref::<exec::ExitWith>().is_some() => {
            let code = e.downcast_ref::<exec::ExitWith>().map_or(1, |x| x.0);
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line of command output to stdout; ends the process quietly when stdout is a closed
/// pipe, as a command killed by `SIGPIPE` would (Rust ignores `SIGPIPE`, so `println!` panics).
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Whether an error comes from writing to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
