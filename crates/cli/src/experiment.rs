//! `berth experiment show`: an endpoint's versions compared on their evaluation scores (the
//! native API's `.../endpoints/{endpoint}/experiment`), and `berth scores import`: scores
//! produced outside Berth recorded for an endpoint (`.../endpoints/{endpoint}/scores`).

use crate::ClientArgs;
use crate::client::{Client, seg};
use crate::traces::{now_ms, parse_ms};
use clap::Subcommand;
use serde_json::Value;

/// `berth experiment ...`
#[derive(Subcommand)]
pub enum ExperimentCmd {
    /// Per evaluator and version: scores, mean, 95% CI; change against the baseline and
    /// Welch's p-value.
    Show {
        /// Runtime id or name.
        runtime: String,
        /// Endpoint name.
        #[arg(long)]
        endpoint: String,
        /// Scores of sessions that ended within this long (`15m`, `2h`, `7d`).
        #[arg(long, default_value = "24h")]
        since: String,
        /// The version to compare with [default: the endpoint's live version].
        #[arg(long)]
        baseline: Option<u32>,
    },
}

fn num(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        Some(x) => x.to_string(),
        None => "-".to_owned(),
    }
}

/// `berth experiment`.
pub async fn experiment(cmd: ExperimentCmd, args: ClientArgs) -> anyhow::Result<()> {
    let ExperimentCmd::Show {
        runtime,
        endpoint,
        since,
        baseline,
    } = cmd;
    let c = Client::new(&args)?;
    let id = c.runtime_id(&runtime).await?;
    let to = now_ms();
    let from = to.saturating_sub(parse_ms(&since)?);
    let mut path = format!(
        "/berth/v1/runtimes/{}/endpoints/{}/experiment?from={from}&to={}",
        seg(&id),
        seg(&endpoint),
        to.saturating_add(1)
    );
    if let Some(b) = baseline {
        path.push_str(&format!("&baseline={b}"));
    }
    let v = c.call("GET", &path, None).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let base = &v["baselineVersion"];
    outln!(
        "{id} {endpoint}: baseline version {}",
        if base.is_null() {
            "none (no live version)".to_owned()
        } else {
            base.to_string()
        }
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header([
        "EVALUATOR",
        "VERSION",
        "N",
        "ERRORS",
        "MEAN",
        "95% CI",
        "CHANGE",
        "RELATIVE",
        "P",
    ]);
    for e in v["evaluators"].as_array().into_iter().flatten() {
        let name = match e["dimension"].as_str() {
            Some(d) => format!("{} / {d}", e["evaluatorId"].as_str().unwrap_or("")),
            None => e["evaluatorId"].as_str().unwrap_or("").to_owned(),
        };
        for ver in e["versions"].as_array().into_iter().flatten() {
            let ci = &ver["confidenceInterval"];
            let cmp = &ver["vsBaseline"];
            let significant = cmp["isSignificant"].as_bool() == Some(true);
            t.add_row([
                name.clone(),
                if ver["version"] == *base {
                    format!("{} (baseline)", ver["version"])
                } else {
                    ver["version"].to_string()
                },
                ver["n"].to_string(),
                ver["errors"].to_string(),
                num(&ver["mean"], 3),
                if ci.is_null() {
                    "-".to_owned()
                } else {
                    format!("[{}, {}]", num(&ci["lower"], 3), num(&ci["upper"], 3))
                },
                num(&cmp["absoluteChange"], 3),
                match cmp["relativeChange"].as_f64() {
                    Some(r) => format!("{:+.1}%", r * 100.0),
                    None => "-".to_owned(),
                },
                format!(
                    "{}{}",
                    num(&cmp["pValue"], 4),
                    if significant { " *" } else { "" }
                ),
            ]);
        }
    }
    outln!("{t}");
    outln!("* p < 0.05 (Welch's t-test against the baseline)");
    Ok(())
}

/// `berth scores ...`
#[derive(Subcommand)]
pub enum ScoresCmd {
    /// Record scores produced outside Berth (a CI gate, an offline run) for an endpoint: a JSON
    /// array of `{source, evaluatorId, version, sessionId, value?, label?, ...}` objects, or
    /// `{"scores": [...]}`.
    Import {
        /// Runtime id or name.
        runtime: String,
        /// Endpoint name.
        #[arg(long)]
        endpoint: String,
        /// The JSON file (`-` for stdin).
        file: std::path::PathBuf,
    },
}

/// `berth scores`.
pub async fn scores(cmd: ScoresCmd, args: ClientArgs) -> anyhow::Result<()> {
    let ScoresCmd::Import {
        runtime,
        endpoint,
        file,
    } = cmd;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
    };
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
    let body = match doc {
        Value::Array(a) => serde_json::json!({ "scores": a }),
        other => other,
    };
    let c = Client::new(&args)?;
    let id = c.runtime_id(&runtime).await?;
    let path = format!(
        "/berth/v1/runtimes/{}/endpoints/{}/scores",
        seg(&id),
        seg(&endpoint)
    );
    let v = c.call("POST", &path, Some(&body)).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("stored {} scores", v["stored"]);
    }
    Ok(())
}
