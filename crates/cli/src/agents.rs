//! Commands for running agents: `deploy`, `invoke`, `sessions`, `logs`.

use crate::ClientArgs;
use crate::client::{Client, seg};
use anyhow::{Context, bail};
use clap::Subcommand;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bucket `berth deploy` uploads code to.
const DEPLOY_BUCKET: &str = "berth-deployments";

/// `berth deploy` arguments.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Directory with the agent's code (and requirements.txt or pyproject.toml).
    pub dir: PathBuf,
    /// Runtime name (created if missing, else updated with a new version).
    #[arg(long)]
    pub name: String,
    /// Also point this named endpoint at the new version (created if missing).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Environment variable for the agent, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Entry point file, relative to DIR [default: agent.py, else main.py].
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Interpreter, PYTHON_3_10..PYTHON_3_14 [default: the host's python3].
    #[arg(long)]
    pub runtime: Option<String>,
    /// Role ARN recorded on the runtime.
    #[arg(long, default_value = "arn:aws:iam::000000000000:role/berth-agent")]
    pub role_arn: String,
    /// Idle session timeout in seconds.
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// Give up waiting for the build after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub wait: u64,
}

/// Skipped when packaging: caches and local environments never belong in an artifact.
const SKIP: &[&str] = &[
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    "node_modules",
    ".bedrock_agentcore",
];

fn zip_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if SKIP.contains(&name.as_str()) || name.ends_with(".pyc") {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        for f in &files {
            let rel = f.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
            z.start_file(rel, opts)?;
            z.write_all(&std::fs::read(f)?)?;
        }
        z.finish()?;
    }
    Ok(buf.into_inner())
}

fn host_python_runtime() -> anyhow::Result<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; print('PYTHON_%d_%d' % sys.version_info[:2])",
        ])
        .output()
        .context("running python3 to pick a runtime; pass --runtime")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `berth deploy`.
pub async fn deploy(a: DeployArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let entry = match a.entrypoint {
        Some(e) => e,
        None if a.dir.join("agent.py").is_file() => "agent.py".into(),
        None if a.dir.join("main.py").is_file() => "main.py".into(),
        None => bail!(
            "{} has neither agent.py nor main.py; pass --entrypoint",
            a.dir.display()
        ),
    };
    if !a.dir.join(&entry).is_file() {
        bail!("entry point {entry} not found in {}", a.dir.display());
    }
    let runtime = match a.runtime {
        Some(r) => r,
        None => host_python_runtime()?,
    };
    let mut env = serde_json::Map::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv}: expected KEY=VALUE")
        };
        env.insert(k.to_owned(), v.into());
    }

    let zip = zip_dir(&a.dir)?;
    let digest = hex::encode(Sha256::digest(&zip));
    let key = format!("{}/{}.zip", a.name, &digest[..16]);
    eprintln!(
        "packaged {} ({} KiB) -> s3://{DEPLOY_BUCKET}/{key}",
        a.dir.display(),
        zip.len() / 1024
    );
    c.s3_put(DEPLOY_BUCKET, None).await?;
    c.s3_put(DEPLOY_BUCKET, Some((&key, zip))).await?;

    let mut spec = json!({
        "agentRuntimeArtifact": {"codeConfiguration": {
            "code": {"s3": {"bucket": DEPLOY_BUCKET, "prefix": key}},
            "runtime": runtime, "entryPoint": [entry]}},
        "roleArn": a.role_arn,
    });
    if !env.is_empty() {
        spec["environmentVariables"] = Value::Object(env);
    }
    if let Some(t) = a.idle_timeout {
        spec["lifecycleConfiguration"] = json!({"idleRuntimeSessionTimeout": t});
    }
    let existing = c.runtime_id(&a.name).await.ok();
    let (id, version) = match existing {
        Some(id) => {
            // Keep the rest of the latest version's configuration; replace code and what was given.
            let cur = c
                .call("GET", &format!("/runtimes/{}/", seg(&id)), None)
                .await?;
            let mut body = json!({});
            for k in [
                "roleArn",
                "networkConfiguration",
                "description",
                "protocolConfiguration",
                "lifecycleConfiguration",
                "environmentVariables",
                "requestHeaderConfiguration",
                "authorizerConfiguration",
            ] {
                if let Some(v) = cur.get(k) {
                    body[k] = v.clone();
                }
            }
            for (k, v) in spec.as_object().into_iter().flatten() {
                body[k] = v.clone();
            }
            let r = c
                .call("PUT", &format!("/runtimes/{}/", seg(&id)), Some(&body))
                .await?;
            (
                id,
                r["agentRuntimeVersion"].as_str().unwrap_or("?").to_owned(),
            )
        }
        None => {
            spec["agentRuntimeName"] = a.name.clone().into();
            let r = c.call("PUT", "/runtimes/", Some(&spec)).await?;
            (
                r["agentRuntimeId"].as_str().unwrap_or_default().to_owned(),
                "1".to_owned(),
            )
        }
    };
    eprint!("building {id} version {version} ");
    let start = Instant::now();
    let final_state = loop {
        let r = c
            .call(
                "GET",
                &format!("/runtimes/{}/?version={version}", seg(&id)),
                None,
            )
            .await?;
        let status = r["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "CREATING" | "UPDATING") {
            break r;
        }
        if start.elapsed() > Duration::from_secs(a.wait) {
            eprintln!();
            bail!(
                "still {status} after {}s; check `berth runtimes get {id} --version {version}`",
                a.wait
            );
        }
        eprint!(".");
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(" {:.1}s", start.elapsed().as_secs_f64());
    let status = final_state["status"].as_str().unwrap_or_default();
    if status != "READY" {
        bail!(
            "version {version} is {status}: {}",
            final_state["failureReason"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    if let Some(ep) = &a.endpoint {
        let path = format!("/runtimes/{}/runtime-endpoints/{}/", seg(&id), seg(ep));
        let body = json!({"agentRuntimeVersion": version});
        if c.call("GET", &path, None).await.is_ok() {
            c.call("PUT", &path, Some(&body)).await?;
        } else {
            let mut b = body.clone();
            b["name"] = ep.clone().into();
            c.call(
                "PUT",
                &format!("/runtimes/{}/runtime-endpoints/", seg(&id)),
                Some(&b),
            )
            .await?;
        }
        eprintln!("endpoint {ep} -> version {version}");
    }
    println!("version: {version}");
    println!(
        "arn:     {}",
        final_state["agentRuntimeArn"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `berth invoke` arguments.
#[derive(clap::Args)]
pub struct InvokeArgs {
    /// Runtime id, name or ARN.
    pub runtime: String,
    /// JSON payload, or plain text sent as {"prompt": TEXT} [default: read stdin].
    pub payload: Option<String>,
    /// Session id [default: the one remembered for this runtime, else a new one].
    #[arg(long)]
    pub session: Option<String>,
    /// Start a new session instead of reusing the remembered one.
    #[arg(long)]
    pub new_session: bool,
    /// Endpoint name or version.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// User id passed to the agent.
    #[arg(long)]
    pub user_id: Option<String>,
}

fn sessions_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join(".config")
        });
    base.join("berth").join("sessions.json")
}

fn remembered() -> serde_json::Map<String, Value> {
    std::fs::read(sessions_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn remember(runtime_id: &str, session: &str) {
    let mut m = remembered();
    m.insert(runtime_id.to_owned(), session.into());
    let f = sessions_file();
    if let Some(d) = f.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(&f, serde_json::to_vec_pretty(&m).unwrap_or_default());
}

/// `berth invoke`.
pub async fn invoke(a: InvokeArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let id = if a.runtime.starts_with("arn:") {
        a.runtime.rsplit('/').next().unwrap_or_default().to_owned()
    } else {
        c.runtime_id(&a.runtime).await?
    };
    let text = match a.payload {
        Some(p) => p,
        None => {
            std::io::read_to_string(std::io::stdin()).context("reading the payload from stdin")?
        }
    };
    let payload: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"prompt": text.trim_end()}));
    let session = match (a.session, a.new_session) {
        (Some(s), _) => s,
        (None, false) => remembered()
            .get(&id)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(new_session_id),
        (None, true) => new_session_id(),
    };
    let mut path = format!("/runtimes/{}/invocations", seg(&id));
    if let Some(q) = &a.qualifier {
        path.push_str(&format!("?qualifier={}", seg(q)));
    }
    let mut extra = vec![(
        "x-amzn-bedrock-agentcore-runtime-session-id".to_owned(),
        session.clone(),
    )];
    if let Some(u) = a.user_id {
        extra.push(("x-amzn-bedrock-agentcore-runtime-user-id".to_owned(), u));
    }
    let resp = c.send_with("POST", &path, Some(&payload), &extra).await?;
    let status = resp.status();
    remember(&id, &session);
    if !status.is_success() {
        let code = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("error")
            .to_owned();
        let body = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        bail!(
            "{code} ({}): {}",
            status.as_u16(),
            v.get("message").and_then(Value::as_str).unwrap_or(&body)
        );
    }
    eprintln!("session: {session}");
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut out = std::io::stdout();
    let mut stream = resp.bytes_stream();
    let mut pending = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the response stream broke")?;
        if !sse {
            out.write_all(&chunk)?;
            continue;
        }
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                let data = data.trim_start();
                match serde_json::from_str::<Value>(data) {
                    Ok(Value::String(s)) => write!(out, "{s}")?,
                    Ok(v) => writeln!(out, "{v}")?,
                    Err(_) => writeln!(out, "{data}")?,
                }
                out.flush()?;
            }
        }
    }
    writeln!(out)?;
    Ok(())
}

fn new_session_id() -> String {
    format!("berth-cli-{}", berth_types::new_request_id())
}

/// `berth sessions ...`
#[derive(Subcommand)]
pub enum SessionsCmd {
    /// Live sessions, optionally of one runtime.
    List {
        /// Runtime id or name.
        runtime: Option<String>,
    },
    /// End a session now (its sandbox is destroyed; the id gets a fresh one next time).
    Stop {
        /// Runtime id or name.
        runtime: String,
        /// Session id.
        session: String,
    },
}

/// `berth sessions`.
pub async fn sessions(cmd: SessionsCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        SessionsCmd::List { runtime } => {
            let path = match runtime {
                Some(r) => format!(
                    "/berth/v1/sessions?runtime={}",
                    seg(&c.runtime_id(&r).await?)
                ),
                None => "/berth/v1/sessions".to_owned(),
            };
            let v = c.call("GET", &path, None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v["sessions"])?);
                return Ok(());
            }
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(vec![
                "RUNTIME",
                "SESSION",
                "VERSION",
                "ENDPOINT",
                "USER",
                "STARTED",
                "LAST ACTIVITY",
                "STATE",
            ]);
            for s in v["sessions"].as_array().into_iter().flatten() {
                let ts = |k: &str| s[k].as_i64().map(berth_types::iso8601).unwrap_or_default();
                t.add_row(vec![
                    s["runtimeId"].as_str().unwrap_or_default().to_owned(),
                    s["sessionId"].as_str().unwrap_or_default().to_owned(),
                    s["version"].to_string(),
                    s["endpoint"].as_str().unwrap_or_default().to_owned(),
                    s["userId"].as_str().unwrap_or("-").to_owned(),
                    ts("startedAt"),
                    ts("lastActivityAt"),
                    s["state"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            println!("{t}");
        }
        SessionsCmd::Stop { runtime, session } => {
            let id = c.runtime_id(&runtime).await?;
            c.call(
                "DELETE",
                &format!("/berth/v1/runtimes/{}/sessions/{}", seg(&id), seg(&session)),
                None,
            )
            .await?;
            println!("stopped {session}");
        }
    }
    Ok(())
}

/// `berth logs` arguments.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// Runtime id or name.
    pub runtime: String,
    /// Session id [default: list sessions with logs].
    #[arg(long)]
    pub session: Option<String>,
    /// Keep printing as the agent writes, until the session ends.
    #[arg(long, short)]
    pub follow: bool,
}

/// `berth logs`.
pub async fn logs(a: LogsArgs, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let id = c.runtime_id(&a.runtime).await?;
    let Some(session) = a.session else {
        let v = c
            .call(
                "GET",
                &format!("/berth/v1/runtimes/{}/logs", seg(&id)),
                None,
            )
            .await?;
        for s in v["sessions"].as_array().into_iter().flatten() {
            println!("{}", s.as_str().unwrap_or_default());
        }
        return Ok(());
    };
    let path = format!(
        "/berth/v1/runtimes/{}/logs?session={}&follow={}",
        seg(&id),
        seg(&session),
        a.follow
    );
    let resp = c.send_with("GET", &path, None, &[]).await?;
    if !resp.status().is_success() {
        bail!("{}", resp.text().await.unwrap_or_default());
    }
    let mut stream = resp.bytes_stream();
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}
