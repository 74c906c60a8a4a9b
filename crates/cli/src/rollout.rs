//! Commands for moving traffic: `traffic`, `rollout`, `rollback` and `audit`, all clients of the
//! native API under `/berth/v1`.

use crate::ClientArgs;
use crate::client::{Client, seg};
use anyhow::{Context, bail};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};

/// A runtime (id or name) and one of its endpoints.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// Runtime id or name.
    pub runtime: String,
    /// Endpoint name.
    #[arg(long)]
    pub endpoint: String,
}

/// `berth traffic ...`
#[derive(Subcommand)]
pub enum TrafficCmd {
    /// Live and target versions, weights, rules, draining versions, sessions per version.
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Split new sessions between versions: `berth traffic set RT --endpoint E 1=90 2=10`.
    Set {
        #[command(flatten)]
        target: Target,
        /// VERSION=PERCENT pairs summing to 100.
        #[arg(required = true, value_name = "VERSION=PERCENT")]
        weights: Vec<String>,
        /// Seconds versions leaving the endpoint keep their sessions [default: the server's].
        #[arg(long)]
        drain_seconds: Option<u64>,
    },
    /// Routing rules, evaluated before the weights.
    Rule {
        #[command(subcommand)]
        cmd: RuleCmd,
    },
    /// Per-version health of the endpoint: invocations, errors, latency, new sessions.
    Health {
        #[command(flatten)]
        target: Target,
        /// Window in seconds, ending now.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
}

/// `berth traffic rule ...`
#[derive(Subcommand)]
pub enum RuleCmd {
    /// Send matching new sessions to a version (exactly one of --user-id, --actor, --header).
    Add {
        #[command(flatten)]
        target: Target,
        /// Match X-Amzn-Bedrock-AgentCore-Runtime-User-Id.
        #[arg(long, group = "match")]
        user_id: Option<String>,
        /// Match the access key id that signs the invocation.
        #[arg(long, group = "match")]
        actor: Option<String>,
        /// Match an allow-listed request header, NAME=VALUE.
        #[arg(long, group = "match", value_name = "NAME=VALUE")]
        header: Option<String>,
        /// The version matching sessions run.
        #[arg(long)]
        version: u32,
    },
    /// List the rules in evaluation order.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Remove a rule by id.
    Remove {
        #[command(flatten)]
        target: Target,
        /// Rule id (`rule-...`).
        rule: String,
    },
}

/// `berth rollout ...`
#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Start walking the endpoint to a version in steps, guarded by analysis.
    Start {
        #[command(flatten)]
        target: Target,
        /// The version to roll to.
        #[arg(long)]
        to_version: u32,
        /// Canary percentages, ending at 100 [default: 5,25,50,100].
        #[arg(long, value_delimiter = ',')]
        steps: Vec<u32>,
        /// Seconds each step lasts at least [default: 60].
        #[arg(long)]
        interval: Option<u64>,
        /// Largest canary error rate: a fraction (0.05), or relative to the stable version
        /// (stable+0.02, stable*2) [default: 0.05].
        #[arg(long)]
        max_error_rate: Option<String>,
        /// Largest canary p99 latency in ms, or relative (stable*1.5) [default: none].
        #[arg(long)]
        max_p99_ms: Option<String>,
        /// Canary invocations a step needs before its analysis counts [default: 20].
        #[arg(long)]
        min_invocations: Option<u64>,
        /// Drain deadline of the version leaving at the end [default: the server's].
        #[arg(long)]
        drain_seconds: Option<u64>,
        /// An evaluation gate, repeatable: `EVALUATOR>=THRESHOLD`, the canary's mean score of that
        /// evaluator (scored by an online evaluation config) must stay at least the threshold
        /// (`Builtin.Correctness>=0.7`, `Builtin.Helpfulness>=stable-0.1`).
        #[arg(long = "eval", value_name = "EVALUATOR>=THRESHOLD")]
        evals: Vec<String>,
        /// Scored sessions each version needs before an evaluation gate decides [default: 10].
        #[arg(long)]
        min_scored: Option<u64>,
    },
    /// The current (or last) rollout, its last analysis and recent history.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Hold the current weights.
    Pause {
        #[command(flatten)]
        target: Target,
    },
    /// Continue a paused rollout (the step's window starts again).
    Resume {
        #[command(flatten)]
        target: Target,
    },
    /// Back to the stable version now; the canary drains.
    Abort {
        #[command(flatten)]
        target: Target,
    },
    /// Skip the remaining steps: the new version becomes stable now.
    Promote {
        #[command(flatten)]
        target: Target,
    },
}

/// `berth rollback` arguments.
#[derive(clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: Target,
    /// Seconds the version left keeps its sessions [default: the server's].
    #[arg(long)]
    drain_seconds: Option<u64>,
}

/// `berth audit` arguments.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only entries about this resource: an ARN (and what is under it), a runtime id or name.
    #[arg(long)]
    resource: Option<String>,
    /// Recompute the hash chain; fails if an entry was edited or deleted.
    #[arg(long)]
    verify: bool,
    /// Show at most this many entries (the newest).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    outln!("{t}");
}

fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn base(c: &Client, t: &Target) -> anyhow::Result<String> {
    let id = c.runtime_id(&t.runtime).await?;
    Ok(format!(
        "/berth/v1/runtimes/{}/endpoints/{}",
        seg(&id),
        seg(&t.endpoint)
    ))
}

fn print_traffic(t: &Value) {
    outln!(
        "endpoint {} of {}: live version {}, target version {}, previous version {}",
        s(&t["endpoint"]),
        s(&t["runtimeId"]),
        s(&t["liveVersion"]),
        s(&t["targetVersion"]),
        s(&t["previousVersion"])
    );
    let assigned = |v: &Value| {
        t["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["version"] == *v)
            .map_or("0".to_owned(), |x| s(&x["assigned"]))
    };
    let rows = t["weights"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            vec![
                s(&w["version"]),
                format!("{}%", s(&w["weight"])),
                assigned(&w["version"]),
            ]
        })
        .collect();
    table(&["VERSION", "WEIGHT", "SESSIONS"], rows);
    print_rules(t);
    for d in t["draining"].as_array().into_iter().flatten() {
        outln!(
            "draining version {} until {}",
            s(&d["version"]),
            s(&d["deadline"])
        );
    }
    if let Some(r) = t.get("rollout").filter(|r| !r.is_null()) {
        outln!(
            "rollout {} to version {}: {} at {}%",
            s(&r["id"]),
            s(&r["toVersion"]),
            s(&r["state"]),
            s(&r["canaryWeight"])
        );
    }
}

fn print_rules(t: &Value) {
    let rules = t["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        return;
    }
    let rows = rules
        .iter()
        .map(|r| {
            let m = &r["match"];
            let what = if let Some(u) = m.get("userId") {
                format!("user id = {}", s(u))
            } else if let Some(a) = m.get("actor") {
                format!("actor = {}", s(a))
            } else if let Some(h) = m.get("header") {
                format!("{} = {}", s(&h["name"]), s(&h["value"]))
            } else {
                m.to_string()
            };
            vec![s(&r["id"]), what, s(&r["version"])]
        })
        .collect();
    table(&["RULE", "MATCH", "VERSION"], rows);
}

fn parse_weights(pairs: &[String]) -> anyhow::Result<Value> {
    let mut m = serde_json::Map::new();
    for p in pairs {
        let (v, w) = p
            .split_once('=')
            .with_context(|| format!("{p:?} is not VERSION=PERCENT"))?;
        let w: u64 = w
            .trim_end_matches('%')
            .parse()
            .with_context(|| format!("{p:?}: the percentage is not a whole number"))?;
        m.insert(v.to_owned(), w.into());
    }
    Ok(Value::Object(m))
}

/// `berth traffic`.
pub async fn traffic(cmd: TrafficCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let out = match cmd {
        TrafficCmd::Show { target } => {
            c.call(
                "GET",
                &format!("{}/traffic", base(&c, &target).await?),
                None,
            )
            .await?
        }
        TrafficCmd::Set {
            target,
            weights,
            drain_seconds,
        } => {
            let mut body = json!({ "weights": parse_weights(&weights)? });
            if let Some(d) = drain_seconds {
                body["drainSeconds"] = d.into();
            }
            c.call(
                "PUT",
                &format!("{}/traffic", base(&c, &target).await?),
                Some(&body),
            )
            .await?
        }
        TrafficCmd::Rule { cmd } => return rule(&c, cmd, args.json).await,
        TrafficCmd::Health { target, seconds } => {
            let h = c
                .call(
                    "GET",
                    &format!("{}/health?seconds={seconds}", base(&c, &target).await?),
                    None,
                )
                .await?;
            if args.json {
                print_json(&h);
                return Ok(());
            }
            let ms = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.0}"));
            let rows = h["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let m = &v["summary"];
                    vec![
                        s(&v["version"]),
                        s(&m["invocations"]),
                        s(&m["errors"]),
                        format!("{:.1}%", m["errorRate"].as_f64().unwrap_or(0.0) * 100.0),
                        ms(&m["p50Ms"]),
                        ms(&m["p95Ms"]),
                        ms(&m["p99Ms"]),
                        s(&m["newSessions"]),
                    ]
                })
                .collect();
            table(
                &[
                    "VERSION",
                    "INVOCATIONS",
                    "ERRORS",
                    "ERROR RATE",
                    "P50 MS",
                    "P95 MS",
                    "P99 MS",
                    "NEW SESSIONS",
                ],
                rows,
            );
            return Ok(());
        }
    };
    if args.json {
        print_json(&out);
    } else {
        print_traffic(&out);
    }
    Ok(())
}

async fn rule(c: &Client, cmd: RuleCmd, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        RuleCmd::Add {
            target,
            user_id,
            actor,
            header,
            version,
        } => {
            let m = match (user_id, actor, header) {
                (Some(u), None, None) => json!({ "userId": u }),
                (None, Some(a), None) => json!({ "actor": a }),
                (None, None, Some(h)) => {
                    let (name, value) = h
                        .split_once('=')
                        .with_context(|| format!("--header {h:?} is not NAME=VALUE"))?;
                    json!({ "header": { "name": name, "value": value } })
                }
                _ => bail!("give exactly one of --user-id, --actor, --header"),
            };
            let body = json!({ "match": m, "version": version });
            let out = c
                .call(
                    "POST",
                    &format!("{}/traffic/rules", base(c, &target).await?),
                    Some(&body),
                )
                .await?;
            if json_out {
                print_json(&out);
            } else {
                outln!("added rule {}", s(&out["rule"]["id"]));
            }
        }
        RuleCmd::List { target } => {
            let t = c
                .call("GET", &format!("{}/traffic", base(c, &target).await?), None)
                .await?;
            if json_out {
                print_json(&t["rules"]);
            } else if t["rules"].as_array().is_none_or(Vec::is_empty) {
                outln!("no routing rules");
            } else {
                print_rules(&t);
            }
        }
        RuleCmd::Remove { target, rule } => {
            let out = c
                .call(
                    "DELETE",
                    &format!("{}/traffic/rules/{}", base(c, &target).await?, seg(&rule)),
                    None,
                )
                .await?;
            if json_out {
                print_json(&out);
            } else {
                outln!("removed rule {rule}");
            }
        }
    }
    Ok(())
}

fn print_rollout(status: &Value) {
    let Some(r) = status.get("rollout").filter(|r| !r.is_null()) else {
        outln!("no rollout on this endpoint");
        return;
    };
    outln!(
        "rollout {}: version {} -> {}, {} at step {} ({}%)",
        s(&r["id"]),
        s(&r["fromVersion"]),
        s(&r["toVersion"]),
        s(&r["state"]),
        s(&r["step"]),
        s(&r["canaryWeight"])
    );
    if let Some(reason) = r["reason"].as_str() {
        outln!("reason: {reason}");
    }
    if let Some(a) = r.get("analysis").filter(|a| !a.is_null()) {
        let v = &a["verdict"];
        outln!(
            "last analysis at {}: {}{}",
            s(&a["at"]),
            s(&v["verdict"]),
            v.get("reason")
                .map(|r| format!(" ({})", s(r)))
                .unwrap_or_default()
        );
        let rows = ["canary", "stable"]
            .iter()
            .map(|k| {
                let m = &a[*k];
                vec![
                    (*k).to_owned(),
                    s(&m["invocations"]),
                    format!("{:.1}%", m["errorRate"].as_f64().unwrap_or(0.0) * 100.0),
                    m["p99Ms"]
                        .as_f64()
                        .map_or("-".into(), |x| format!("{x:.0}")),
                ]
            })
            .collect();
        table(&["", "INVOCATIONS", "ERROR RATE", "P99 MS"], rows);
    }
}

/// `EVALUATOR>=THRESHOLD` as the native API's evaluation gate.
fn eval_gate(s: &str, min_scored: Option<u64>) -> anyhow::Result<Value> {
    let (evaluator, threshold) = s
        .split_once(">=")
        .map(|(e, t)| (e.trim(), t.trim()))
        .filter(|(e, t)| !e.is_empty() && !t.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--eval {s:?}: write EVALUATOR>=THRESHOLD"))?;
    let mut gate = json!({ "evaluatorId": evaluator, "minScore": threshold });
    if let Some(n) = min_scored {
        gate["minScored"] = n.into();
    }
    Ok(gate)
}

/// `berth rollout`.
pub async fn rollout(cmd: RolloutCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let out = match cmd {
        RolloutCmd::Start {
            target,
            to_version,
            steps,
            interval,
            max_error_rate,
            max_p99_ms,
            min_invocations,
            drain_seconds,
            evals,
            min_scored,
        } => {
            let mut body = json!({ "toVersion": to_version });
            if !steps.is_empty() {
                body["steps"] = json!(steps);
            }
            if !evals.is_empty() {
                body["evaluations"] = evals
                    .iter()
                    .map(|e| eval_gate(e, min_scored))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .into();
            }
            let fields = [
                ("intervalSeconds", interval.map(Value::from)),
                ("maxErrorRate", max_error_rate.map(Value::from)),
                ("maxP99Ms", max_p99_ms.map(Value::from)),
                ("minInvocations", min_invocations.map(Value::from)),
                ("drainSeconds", drain_seconds.map(Value::from)),
            ];
            for (k, v) in fields {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            c.call(
                "POST",
                &format!("{}/rollouts", base(&c, &target).await?),
                Some(&body),
            )
            .await?
        }
        RolloutCmd::Status { target } => {
            c.call(
                "GET",
                &format!("{}/rollouts", base(&c, &target).await?),
                None,
            )
            .await?
        }
        RolloutCmd::Pause { target } => command(&c, &target, "pause").await?,
        RolloutCmd::Resume { target } => command(&c, &target, "resume").await?,
        RolloutCmd::Abort { target } => command(&c, &target, "abort").await?,
        RolloutCmd::Promote { target } => command(&c, &target, "promote").await?,
    };
    if args.json {
        print_json(&out);
    } else {
        print_rollout(&out);
    }
    Ok(())
}

async fn command(c: &Client, target: &Target, what: &str) -> anyhow::Result<Value> {
    c.call(
        "POST",
        &format!("{}/rollouts/current/{what}", base(c, target).await?),
        None,
    )
    .await
}

/// `berth rollback`.
pub async fn rollback(a: RollbackArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let mut body = json!({});
    if let Some(d) = a.drain_seconds {
        body["drainSeconds"] = d.into();
    }
    let out = c
        .call(
            "POST",
            &format!("{}/rollback", base(&c, &a.target).await?),
            Some(&body),
        )
        .await?;
    if args.json {
        print_json(&out);
    } else {
        outln!(
            "rolled back: new sessions now go to version {}",
            s(&out["liveVersion"])
        );
        print_traffic(&out);
    }
    Ok(())
}

/// `berth audit`.
pub async fn audit(a: AuditArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    if a.verify {
        let v = c.call("GET", "/berth/v1/audit/verify", None).await?;
        if args.json {
            print_json(&v);
        }
        if v["valid"] != Value::Bool(true) {
            bail!(
                "the audit log failed verification after {} intact entries: {}",
                s(&v["entries"]),
                s(&v["problem"])
            );
        }
        if !args.json {
            outln!(
                "audit log intact: {} entries, hash chain verified",
                s(&v["entries"])
            );
        }
        return Ok(());
    }
    let resource = match a.resource {
        Some(r) if r.starts_with("arn:") => Some(r),
        Some(r) => Some(c.runtime_id(&r).await?),
        None => None,
    };
    let mut entries: Vec<Value> = Vec::new();
    let mut after = 0i64;
    loop {
        let mut q = format!("/berth/v1/audit?limit=1000&after={after}");
        if let Some(r) = &resource {
            q.push_str(&format!("&resource={}", seg(r)));
        }
        let page = c.call("GET", &q, None).await?;
        entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
        // Only the newest `limit` are shown; keep memory bounded on long logs.
        if entries.len() > a.limit {
            entries.drain(..entries.len() - a.limit);
        }
        match page.get("nextSeq").and_then(Value::as_i64) {
            Some(n) => after = n,
            None => break,
        }
    }
    if args.json {
        print_json(&json!(entries));
        return Ok(());
    }
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                s(&e["seq"]),
                s(&e["at"]),
                s(&e["actor"]),
                s(&e["action"]),
                s(&e["resource"]),
                s(&e["requestId"]),
            ]
        })
        .collect();
    table(&["SEQ", "WHEN", "WHO", "WHAT", "RESOURCE", "REQUEST"], rows);
    Ok(())
}
