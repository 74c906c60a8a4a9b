//! `berth usage`: GenAI tokens, tool calls and cost summed from agents' spans (the native API's
//! `/berth/v1/usage`).

use crate::ClientArgs;
use crate::client::{Client, seg};
use crate::traces::{now_ms, parse_ms};

/// `berth usage [filters] [--group-by version|session|actor|model]`
#[derive(clap::Args)]
pub struct UsageArgs {
    /// Runtime id or name.
    #[arg(long)]
    runtime: Option<String>,
    #[arg(long)]
    version: Option<u32>,
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    session: Option<String>,
    /// The session's user id.
    #[arg(long)]
    actor: Option<String>,
    /// Only usage within this long (`15m`, `2h`, `7d`), to the minute.
    #[arg(long)]
    since: Option<String>,
    /// One row per version, session, actor or model (default: one total).
    #[arg(long, value_parser = ["version", "session", "actor", "model"])]
    group_by: Option<String>,
}

/// `berth usage`.
pub async fn usage(a: UsageArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let mut q = Vec::new();
    if let Some(r) = &a.runtime {
        q.push(format!("runtime={}", seg(&c.runtime_id(r).await?)));
    }
    if let Some(v) = a.version {
        q.push(format!("version={v}"));
    }
    for (k, v) in [
        ("endpoint", &a.endpoint),
        ("session", &a.session),
        ("actor", &a.actor),
        ("groupBy", &a.group_by),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", seg(v)));
        }
    }
    if let Some(s) = &a.since {
        q.push(format!("sinceMs={}", now_ms().saturating_sub(parse_ms(s)?)));
    }
    let v = c
        .call("GET", &format!("/berth/v1/usage?{}", q.join("&")), None)
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&v["usage"])?);
        return Ok(());
    }
    let key: Vec<(&str, &str)> = match a.group_by.as_deref() {
        Some("version") => vec![("RUNTIME", "runtimeId"), ("VERSION", "version")],
        Some("session") => vec![("RUNTIME", "runtimeId"), ("SESSION", "sessionId")],
        Some("actor") => vec![("ACTOR", "actor")],
        Some("model") => vec![("MODEL", "model")],
        _ => Vec::new(),
    };
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    let mut header: Vec<&str> = key.iter().map(|(h, _)| *h).collect();
    header.extend([
        "CALLS",
        "INPUT",
        "OUTPUT",
        "CACHE READ",
        "CACHE WRITE",
        "TOOL CALLS",
        "TOOL ERRORS",
        "COST USD",
    ]);
    t.set_header(header);
    for g in v["usage"].as_array().into_iter().flatten() {
        let mut row: Vec<String> = key
            .iter()
            .map(|(_, k)| match &g[*k] {
                serde_json::Value::String(s) if s.is_empty() => "-".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        for k in [
            "modelCalls",
            "inputTokens",
            "outputTokens",
            "cacheReadTokens",
            "cacheWriteTokens",
            "toolCalls",
            "toolErrors",
        ] {
            row.push(g[k].to_string());
        }
        let cost = g["costUsd"].as_f64().unwrap_or(0.0);
        let unpriced = g["unpricedTokens"].as_i64().unwrap_or(0);
        row.push(if unpriced > 0 {
            format!("{cost:.6} (+{unpriced} unpriced tokens)")
        } else {
            format!("{cost:.6}")
        });
        t.add_row(row);
    }
    outln!("{t}");
    Ok(())
}

/// `berth gateway`: the model gateway's upstreams and their credentials' health (by secret name;
/// values never leave the server).
pub async fn gateway(args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let v = c.call("GET", "/berth/v1/gateway", None).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&v["upstreams"])?);
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header([
        "UPSTREAM",
        "API",
        "CREDENTIAL",
        "VERSION",
        "STATE",
        "COOLING S",
        "IN FLIGHT",
    ]);
    let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
    for u in v["upstreams"].as_array().into_iter().flatten() {
        let creds = u["credentials"].as_array().cloned().unwrap_or_default();
        if creds.is_empty() {
            t.add_row([text(&u["name"]), text(&u["protocol"]), "(none)".into()]);
        }
        for cr in creds {
            let cooling = cr["coolingMs"]
                .as_u64()
                .map(|ms| format!("{:.1}", ms as f64 / 1000.0))
                .unwrap_or_default();
            t.add_row([
                text(&u["name"]),
                text(&u["protocol"]),
                text(&cr["name"]),
                cr["version"].to_string(),
                text(&cr["state"]),
                cooling,
                cr["inFlight"].to_string(),
            ]);
        }
    }
    outln!("{t}");
    Ok(())
}
