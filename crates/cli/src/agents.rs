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
    /// Directory with the agent's code (and requirements.txt or pyproject.toml), or with a
    /// Dockerfile (or Containerfile): then it is built with buildah or podman and pushed to
    /// Berth's registry, and the version runs that image.
    #[arg(required_unless_present = "image")]
    pub dir: Option<PathBuf>,
    /// Deploy this container image instead of a directory: an ECR-style URI
    /// (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`), served by Berth's registry
    /// unless the server maps that registry elsewhere.
    #[arg(long, conflicts_with_all = ["dir", "entrypoint", "runtime"])]
    pub image: Option<String>,
    /// Account id of the ECR-style URI a built image is deployed by.
    #[arg(long, default_value = "000000000000")]
    pub account_id: String,
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
    let mut env = serde_json::Map::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv}: expected KEY=VALUE")
        };
        env.insert(k.to_owned(), v.into());
    }
    let artifact = match (&a.image, &a.dir) {
        (Some(uri), _) => json!({"containerConfiguration": {"containerUri": uri}}),
        (None, Some(dir)) => match dockerfile(dir) {
            Some(file) => {
                let uri = build_image(dir, &file, &a, &args, &c).await?;
                json!({"containerConfiguration": {"containerUri": uri}})
            }
            None => code_artifact(dir, &a, &c).await?,
        },
        (None, None) => bail!("give a directory or --image"),
    };
    let mut spec = json!({
        "agentRuntimeArtifact": artifact,
        "roleArn": a.role_arn,
    });
    if !env.is_empty() {
        spec["environmentVariables"] = Value::Object(env);
    }
    if let Some(t) = a.idle_timeout {
        spec["lifecycleConfiguration"] = json!({"idleRuntimeSessionTimeout": t});
    }
    create_or_update(&c, &a, spec).await
}

/// The directory's Dockerfile or Containerfile, if it has one.
fn dockerfile(dir: &Path) -> Option<PathBuf> {
    ["Dockerfile", "Containerfile"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Builds `dir` with the host's buildah (or podman), pushes the image to Berth's registry, and
/// returns the ECR-style URI the version is deployed by.
async fn build_image(
    dir: &Path,
    file: &Path,
    a: &DeployArgs,
    args: &ClientArgs,
    c: &Client,
) -> anyhow::Result<String> {
    let tool = ["buildah", "podman"]
        .into_iter()
        .find(|t| which(t))
        .with_context(|| {
            format!(
                "{} has a {}: building it needs buildah or podman on PATH (or push an image yourself and pass --image)",
                dir.display(),
                file.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
            )
        })?;
    let url = reqwest::Url::parse(&args.endpoint_url)
        .with_context(|| format!("--endpoint-url {}", args.endpoint_url))?;
    let host = match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => bail!("--endpoint-url {} names no host", args.endpoint_url),
    };
    // Repository names are lower case (the Distribution spec and ECR alike).
    let repo = a.name.to_lowercase();
    let tag = format!(
        "v{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let local = format!("localhost/{repo}:{tag}");
    eprintln!("building {} with {tool}", dir.display());
    run_tool(
        std::process::Command::new(tool)
            .args(["build", "-f"])
            .arg(file)
            .args(["-t", &local])
            .arg(dir),
    )?;
    // The credentials go in an auth file only this user can read, never on a command line
    // (which every local user can read in /proc).
    let auth = tempfile::Builder::new().prefix("berth-auth").tempfile()?;
    let (id, secret) = c.credentials();
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{id}:{secret}"),
    );
    std::fs::write(
        auth.path(),
        json!({"auths": {&host: {"auth": token}}}).to_string(),
    )?;
    let dest = format!("docker://{host}/{repo}:{tag}");
    eprintln!("pushing {local} to Berth's registry");
    run_tool(
        std::process::Command::new(tool)
            .args(["push", "--authfile"])
            .arg(auth.path())
            .arg(format!("--tls-verify={}", url.scheme() == "https"))
            .args([&local, &dest]),
    )?;
    Ok(format!(
        "{}.dkr.ecr.{}.amazonaws.com/{repo}:{tag}",
        a.account_id, args.region
    ))
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// Runs a build tool with its output passed through; its failure is an error naming it.
fn run_tool(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    let status = cmd
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Packages a code directory, uploads it, and returns its `codeConfiguration` artifact.
async fn code_artifact(dir: &Path, a: &DeployArgs, c: &Client) -> anyhow::Result<Value> {
    let entry = match a.entrypoint.clone() {
        Some(e) => e,
        None if dir.join("agent.py").is_file() => "agent.py".into(),
        None if dir.join("main.py").is_file() => "main.py".into(),
        None => bail!(
            "{} has neither agent.py nor main.py nor a Dockerfile; pass --entrypoint",
            dir.display()
        ),
    };
    if !dir.join(&entry).is_file() {
        bail!("entry point {entry} not found in {}", dir.display());
    }
    let runtime = match a.runtime.clone() {
        Some(r) => r,
        None => host_python_runtime()?,
    };
    let zip = zip_dir(dir)?;
    let digest = hex::encode(Sha256::digest(&zip));
    let key = format!("{}/{}.zip", a.name, &digest[..16]);
    eprintln!(
        "packaged {} ({} KiB) -> s3://{DEPLOY_BUCKET}/{key}",
        dir.display(),
        zip.len() / 1024
    );
    c.s3_put(DEPLOY_BUCKET, None).await?;
    c.s3_put(DEPLOY_BUCKET, Some((&key, zip))).await?;
    Ok(json!({"codeConfiguration": {
        "code": {"s3": {"bucket": DEPLOY_BUCKET, "prefix": key}},
        "runtime": runtime, "entryPoint": [entry]}}))
}

/// Creates the runtime, or adds a version to it, and waits for the version to be built.
async fn create_or_update(c: &Client, a: &DeployArgs, mut spec: Value) -> anyhow::Result<()> {
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
    outln!("version: {version}");
    outln!(
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
    let payload = parse_payload(&text)?;
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
    remember(&id, &session);
    let resp = Client::success(resp).await?;
    eprintln!("session: {session}");
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut out = std::io::stdout();
    let mut stream = resp.bytes_stream();
    let mut pending = String::new();
    // The error carried by the last event, if it was an error event: the stream then failed.
    let mut failed: Option<String> = None;
    let mut event_name = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the response stream broke")?;
        if !sse {
            out.write_all(&chunk)?;
            continue;
        }
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            let line = line.trim_end();
            if line.is_empty() {
                event_name.clear();
            } else if let Some(name) = line.strip_prefix("event:") {
                event_name = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                let data = data.trim_start();
                let parsed = serde_json::from_str::<Value>(data);
                failed = stream_error(&event_name, parsed.as_ref().ok(), data);
                match parsed {
                    Ok(Value::String(s)) => write!(out, "{s}")?,
                    Ok(v) => writeln!(out, "{v}")?,
                    Err(_) => writeln!(out, "{data}")?,
                }
                out.flush()?;
            }
        }
    }
    writeln!(out)?;
    if let Some(e) = failed {
        bail!("the response stream ended in an error event: {e}");
    }
    Ok(())
}

/// The payload `berth invoke` sends: JSON as given, any other text as `{"prompt": TEXT}`. Text
/// that looks like JSON (starts with `{` or `[`) but does not parse is refused rather than sent
/// as a prompt, since it is almost always a quoting mistake.
fn parse_payload(text: &str) -> anyhow::Result<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(e) if text.trim_start().starts_with(['{', '[']) => {
            bail!(
                "the payload looks like JSON but does not parse ({e}); fix it, or quote it differently"
            )
        }
        Err(_) => Ok(json!({"prompt": text.trim_end()})),
    }
}

/// The error an SSE event carries: an `event: error`, or a `data:` object with an `error` key
/// (what Berth sends when an agent fails mid-stream, and what the AgentCore SDK sends when an
/// agent's generator raises).
fn stream_error(event_name: &str, data: Option<&Value>, raw: &str) -> Option<String> {
    if let Some(e) = data.and_then(|v| v.get("error")) {
        return Some(match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    (event_name == "error").then(|| raw.to_owned())
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

/// `berth images` subcommands.
#[derive(Subcommand)]
pub enum ImagesCmd {
    /// The images in the server's cache, with the versions pinning each.
    List,
    /// Removes cached images no version pins, and their layers.
    Prune,
}

/// `berth images`.
pub async fn images(cmd: ImagesCmd, args: ClientArgs) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    match cmd {
        ImagesCmd::List => {
            let v = c.call("GET", "/berth/v1/images", None).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v["images"])?);
                return Ok(());
            }
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            t.set_header(vec!["DIGEST", "REFERENCE", "PLATFORM", "SIZE", "USED BY"]);
            for i in v["images"].as_array().into_iter().flatten() {
                let used: Vec<String> = i["usedBy"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        format!(
                            "{} v{}",
                            u["runtimeId"].as_str().unwrap_or_default(),
                            u["version"]
                        )
                    })
                    .collect();
                t.add_row(vec![
                    i["digest"].as_str().unwrap_or_default().to_owned(),
                    i["reference"].as_str().unwrap_or_default().to_owned(),
                    i["platform"].as_str().unwrap_or_default().to_owned(),
                    format!("{} MiB", i["sizeBytes"].as_u64().unwrap_or(0) / (1 << 20)),
                    if used.is_empty() {
                        "-".to_owned()
                    } else {
                        used.join(", ")
                    },
                ]);
            }
            outln!("{t}");
        }
        ImagesCmd::Prune => {
            let v = c.call("POST", "/berth/v1/images/prune", None).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&v["pruned"])?);
                return Ok(());
            }
            let n = |k: &str| v["pruned"][k].as_array().map_or(0, Vec::len);
            outln!("removed {} images and {} layers", n("images"), n("layers"));
        }
    }
    Ok(())
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
                outln!("{}", serde_json::to_string_pretty(&v["sessions"])?);
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
                "NODE",
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
                    s["nodeId"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            outln!("{t}");
            for node in v["unreachableNodes"].as_array().into_iter().flatten() {
                eprintln!("node {node} could not be asked: its sessions are not listed");
            }
        }
        SessionsCmd::Stop { runtime, session } => {
            let id = c.runtime_id(&runtime).await?;
            c.call(
                "DELETE",
                &format!("/berth/v1/runtimes/{}/sessions/{}", seg(&id), seg(&session)),
                None,
            )
            .await?;
            outln!("stopped {session}");
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
    /// Print the agent's output byte for byte. By default terminal control characters (escape
    /// sequences that could recolour, retitle or rewrite the terminal) are shown as `\x1b`.
    #[arg(long)]
    pub raw: bool,
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
            outln!("{}", s.as_str().unwrap_or_default());
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
    let mut visible = Visible::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if a.raw {
            out.write_all(&chunk)?;
        } else {
            out.write_all(&visible.push(&chunk))?;
        }
        out.flush()?;
    }
    if !a.raw {
        out.write_all(&visible.finish())?;
    }
    Ok(())
}

/// Makes agent output safe for a terminal: C0 controls other than newline and tab, DEL, and the
/// C1 controls (U+0080 to U+009F, which some terminals read as `ESC [` and friends) are written
/// as visible escapes (`\x1b`, `\u{9b}`). Stateful so a character split across chunks is still
/// recognised.
#[derive(Default)]
pub struct Visible {
    /// A `0xC2` lead byte held back from the previous chunk.
    held: bool,
}

impl Visible {
    /// The visible form of the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for &b in chunk {
            if std::mem::take(&mut self.held) {
                if (0x80..=0x9f).contains(&b) {
                    out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes());
                    continue;
                }
                out.push(0xc2);
            }
            match b {
                b'\n' | b'\t' => out.push(b),
                0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                0xc2 => self.held = true,
                _ => out.push(b),
            }
        }
        out
    }

    /// What is still held back at the end of the output.
    pub fn finish(&mut self) -> Vec<u8> {
        if std::mem::take(&mut self.held) {
            vec![0xc2]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_sent() {
        let mut v = Visible::default();
        let shown = v.push(b"\x1b[31mred\x1b]0;title\x07\r\ttab\nok\x7f");
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "\\x1b[31mred\\x1b]0;title\\x07\\x0d\ttab\nok\\x7f"
        );
        // U+009B (CSI) split across two chunks, and a harmless U+00E9 (é) in one piece.
        let mut v = Visible::default();
        let mut shown = v.push(b"a\xc2");
        shown.extend(v.push(b"\x9b2J \xc3\xa9 \xc2\xa9"));
        shown.extend(v.finish());
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "a\\u{9b}2J \u{e9} \u{a9}"
        );
    }

    #[test]
    fn payloads_that_look_like_json_must_parse() {
        assert_eq!(parse_payload("{\"a\": 1}").unwrap(), json!({"a": 1}));
        assert_eq!(
            parse_payload("hello\n").unwrap(),
            json!({"prompt": "hello"})
        );
        let e = parse_payload("{prompt: 1}").unwrap_err().to_string();
        assert!(
            e.starts_with("the payload looks like JSON but does not parse"),
            "{e}"
        );
        assert!(parse_payload("  [1, 2").is_err());
    }

    #[test]
    fn error_events_are_recognised() {
        assert_eq!(
            stream_error("", Some(&json!({"error": "boom", "error_type": "X"})), ""),
            Some("boom".into())
        );
        assert_eq!(stream_error("error", None, "bad"), Some("bad".into()));
        assert_eq!(stream_error("", Some(&json!({"word": "a"})), ""), None);
    }
}
