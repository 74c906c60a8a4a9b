//! `berth nodes`: the nodes of an installation sharing one store, and draining one.

use crate::ClientArgs;
use crate::client::Client;

/// What to do with the nodes.
#[derive(clap::Subcommand, Debug)]
pub enum NodesCmd {
    /// Every node (alive or not, draining or not) and which node runs each shared job.
    List,
    /// A node takes no new sessions; its live sessions finish (`--undo` takes it back).
    Drain {
        /// The node's id (`berth nodes list`).
        node_id: String,
        /// Take new sessions again.
        #[arg(long)]
        undo: bool,
    },
}

/// Runs a `berth nodes` command.
pub async fn nodes(cmd: NodesCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        NodesCmd::List => {
            let v = c.call("GET", "/berth/v1/nodes", None).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if v["clustered"] != true {
                outln!("this server serves alone (start nodes with --advertise to share a store)");
                return Ok(());
            }
            let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(["NODE", "ADDRESS", "STATE", "STARTED", "LAST SEEN", "JOBS"]);
            let leases = v["leases"].as_array().cloned().unwrap_or_default();
            for n in v["nodes"].as_array().into_iter().flatten() {
                let state = match (n["alive"] == true, n["draining"] == true) {
                    (false, _) => "dead",
                    (true, true) => "draining",
                    (true, false) => "serving",
                };
                let jobs: Vec<_> = leases
                    .iter()
                    .filter(|l| l["nodeId"] == n["nodeId"])
                    .map(|l| text(&l["job"]))
                    .collect();
                let mut id = text(&n["nodeId"]);
                if n["thisNode"] == true {
                    id.push_str(" *");
                }
                t.add_row([
                    id,
                    text(&n["address"]),
                    state.to_owned(),
                    text(&n["startedAt"]),
                    text(&n["lastSeen"]),
                    jobs.join(", "),
                ]);
            }
            outln!("{t}");
        }
        NodesCmd::Drain { node_id, undo } => {
            let path = format!("/berth/v1/nodes/{}/drain", urlencoding(&node_id));
            c.call(if undo { "DELETE" } else { "POST" }, &path, None)
                .await?;
            if undo {
                outln!("node {node_id} takes new sessions again");
            } else {
                outln!("node {node_id} is draining: no new sessions; its live ones finish");
            }
        }
    }
    Ok(())
}

fn urlencoding(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
