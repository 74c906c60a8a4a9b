//! `berth traces`: list traces, draw one as a waterfall, show a session's spans (the native
//! API's `/berth/v1/traces`).

use crate::ClientArgs;
use crate::client::{Client, seg};
use anyhow::bail;
use clap::Subcommand;
use serde_json::Value;
use std::collections::HashMap;

/// `berth traces ...`
#[derive(Subcommand)]
pub enum TracesCmd {
    /// Traces, newest first (one row per trace and session).
    List {
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
        /// OK or ERROR.
        #[arg(long)]
        status: Option<String>,
        /// Only traces that started within this long (`90s`, `15m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Only traces at least this long (`250ms`, `2s`).
        #[arg(long)]
        min_duration: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One trace as a waterfall: its spans as a tree with durations and bars.
    Show {
        /// Trace id (32 hex digits).
        trace: String,
        /// Only this session's spans.
        #[arg(long)]
        session: Option<String>,
    },
    /// Every span of a session, as waterfalls per trace.
    Session {
        /// Session id.
        session: String,
        /// Runtime id or name (session ids may repeat across runtimes).
        #[arg(long)]
        runtime: Option<String>,
    },
}

/// Parses `250ms`, `90s`, `15m`, `2h`, `7d` into milliseconds.
pub(crate) fn parse_ms(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let Ok(n) = n.parse::<i64>() else {
        bail!("{s:?} is not a duration like 250ms, 90s, 15m, 2h or 7d");
    };
    let per = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{s:?} is not a duration like 250ms, 90s, 15m, 2h or 7d"),
    };
    Ok(n.saturating_mul(per))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in nanoseconds, human-sized.
fn human(ns: i64) -> String {
    if ns < 1_000_000 {
        format!("{:.0}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

/// `berth traces`.
pub async fn traces(cmd: TracesCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        TracesCmd::List {
            runtime,
            version,
            endpoint,
            session,
            actor,
            status,
            since,
            min_duration,
            limit,
        } => {
            let mut q = vec![format!("limit={limit}")];
            if let Some(r) = runtime {
                q.push(format!("runtime={}", seg(&c.runtime_id(&r).await?)));
            }
            if let Some(v) = version {
                q.push(format!("version={v}"));
            }
            for (k, v) in [
                ("endpoint", endpoint),
                ("session", session),
                ("actor", actor),
                ("status", status.map(|s| s.to_ascii_uppercase())),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", seg(&v)));
                }
            }
            if let Some(s) = since {
                q.push(format!(
                    "sinceMs={}",
                    now_ms().saturating_sub(parse_ms(&s)?)
                ));
            }
            if let Some(d) = min_duration {
                q.push(format!("minDurationMs={}", parse_ms(&d)?));
            }
            let v = c
                .call("GET", &format!("/berth/v1/traces?{}", q.join("&")), None)
                .await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v["traces"])?);
                return Ok(());
            }
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(vec![
                "TRACE", "STARTED", "DURATION", "SPANS", "STATUS", "ROOT", "RUNTIME", "VERSION",
                "ENDPOINT", "SESSION", "ACTOR",
            ]);
            for s in v["traces"].as_array().into_iter().flatten() {
                let text = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
                t.add_row(vec![
                    text("traceId"),
                    berth_types::iso8601(s["startNs"].as_i64().unwrap_or(0) / 1_000_000),
                    human(s["durationNs"].as_i64().unwrap_or(0)),
                    s["spanCount"].to_string(),
                    text("status"),
                    text("rootName"),
                    text("runtimeId"),
                    s["version"].to_string(),
                    text("endpoint"),
                    text("sessionId"),
                    text("actor"),
                ]);
            }
            outln!("{t}");
            Ok(())
        }
        TracesCmd::Show { trace, session } => {
            let path = match &session {
                Some(s) => format!("/berth/v1/traces/{}?session={}", seg(&trace), seg(s)),
                None => format!("/berth/v1/traces/{}", seg(&trace)),
            };
            let v = c.call("GET", &path, None).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            outln!("trace {trace}");
            for line in waterfall(&spans, 40) {
                outln!("{line}");
            }
            Ok(())
        }
        TracesCmd::Session { session, runtime } => {
            let mut path = format!("/berth/v1/traces/sessions/{}", seg(&session));
            if let Some(r) = runtime {
                path.push_str(&format!("?runtime={}", seg(&c.runtime_id(&r).await?)));
            }
            let v = c.call("GET", &path, None).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v["spans"])?);
                return Ok(());
            }
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            // One waterfall per trace, in the order the traces started.
            let mut order: Vec<String> = Vec::new();
            let mut by_trace: HashMap<String, Vec<Value>> = HashMap::new();
            for s in spans {
                let id = s["traceId"].as_str().unwrap_or_default().to_owned();
                if !by_trace.contains_key(&id) {
                    order.push(id.clone());
                }
                by_trace.entry(id).or_default().push(s);
            }
            if order.is_empty() {
                outln!("no spans for session {session}");
            }
            for id in order {
                outln!("trace {id}");
                for line in waterfall(by_trace.get(&id).map_or(&[][..], Vec::as_slice), 40) {
                    outln!("{line}");
                }
            }
            Ok(())
        }
    }
}

/// Lines of a waterfall: each span indented under its parent (a span whose parent is not among
/// `spans` is a root), its duration, and a bar of `width` cells placed on the trace's timeline.
pub fn waterfall(spans: &[Value], width: usize) -> Vec<String> {
    let id = |s: &Value| s["spanId"].as_str().unwrap_or_default().to_owned();
    let start = |s: &Value| s["startNs"].as_i64().unwrap_or(0);
    let end = |s: &Value| s["endNs"].as_i64().unwrap_or(0);
    let ids: std::collections::HashSet<String> = spans.iter().map(id).collect();
    let mut children: HashMap<Option<String>, Vec<&Value>> = HashMap::new();
    for s in spans {
        let parent = s["parentSpanId"]
            .as_str()
            .filter(|p| ids.contains(*p))
            .map(str::to_owned);
        children.entry(parent).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| (start(s), id(s)));
    }
    let t0 = spans.iter().map(start).min().unwrap_or(0);
    let t1 = spans.iter().map(end).max().unwrap_or(t0).max(t0 + 1);
    let span_of = |ns: i64| -> usize {
        let f = (ns - t0) as f64 / (t1 - t0) as f64;
        ((f * width as f64).round() as usize).min(width)
    };
    let mut lines = Vec::new();
    // Depth-first, with a stack (a cyclic parent chain cannot loop: each span is visited once).
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(&Value, usize)> = children
        .get(&None)
        .map(|r| r.iter().rev().map(|s| (*s, 0)).collect())
        .unwrap_or_default();
    while let Some((s, depth)) = stack.pop() {
        if !seen.insert(id(s)) {
            continue;
        }
        let (a, b) = (span_of(start(s)), span_of(end(s)));
        let cells = (b - a).max(1);
        let bar = format!(
            "{}{}{}",
            " ".repeat(a.min(width)),
            "█".repeat(cells),
            " ".repeat(width.saturating_sub(a + cells))
        );
        let failed = if s["statusCode"] == "ERROR" { " !" } else { "" };
        let label = format!(
            "{}{}{failed}",
            "  ".repeat(depth),
            s["name"].as_str().unwrap_or_default()
        );
        lines.push(format!(
            "{label:<48} {:>9} |{bar}|",
            human(end(s) - start(s))
        ));
        if let Some(kids) = children.get(&Some(id(s))) {
            for k in kids.iter().rev() {
                stack.push((*k, depth + 1));
            }
        }
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_ms("250ms").unwrap(), 250);
        assert_eq!(parse_ms("2h").unwrap(), 7_200_000);
        assert!(parse_ms("soon").is_err());
    }

    #[test]
    fn waterfall_nests_children_and_places_bars() {
        let spans = vec![
            json!({"spanId": "a", "name": "invoke_agent", "startNs": 0, "endNs": 100}),
            json!({"spanId": "c", "parentSpanId": "a", "name": "execute_tool", "startNs": 50, "endNs": 100, "statusCode": "ERROR"}),
            json!({"spanId": "b", "parentSpanId": "a", "name": "chat", "startNs": 0, "endNs": 50}),
        ];
        let lines = waterfall(&spans, 10);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("invoke_agent "));
        assert!(lines[1].starts_with("  chat "));
        assert!(lines[2].starts_with("  execute_tool !"));
        assert!(lines[0].ends_with("|██████████|"));
        assert!(lines[1].ends_with("|█████     |"));
        assert!(lines[2].ends_with("|     █████|"));
    }
}
