//! Shared fixtures for the sandbox integration tests: a test agent, spec builders, an HTTP client.
//!
//! The tests need root (namespaces, cgroups); the machines that run them (developers' and CI) do.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_runtime::sandbox::{Sandbox, SandboxSpec};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

/// A small HTTP agent: `GET /` answers `{"name", "pid", "uid", "peer"}` (peer: the client's port), `POST /run` executes the body as
/// Python and answers `{"ok", "out", "error"}` (what the snippet printed, or the exception).
pub const AGENT: &str = r#"
import contextlib, http.server, io, json, os
PORT = int(os.environ.get("PORT", "8080"))
NAME = os.environ.get("AGENT_NAME", "")

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.reply({"name": NAME, "pid": os.getpid(), "uid": os.getuid(), "peer": self.client_address[1]})

    def do_POST(self):
        code = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, {"__name__": "snippet"})
            self.reply({"ok": True, "out": out.getvalue()})
        except BaseException as e:
            self.reply({"ok": False, "out": out.getvalue(), "error": repr(e)})

    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("agent", NAME, "listening on", PORT, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"#;

/// The interpreter the agents run with. It must be readable by `nobody`, which rules out a pyenv
/// under `/root`: Debian's system Python is on every machine of this kind.
pub const PYTHON: &str = "/usr/bin/python3";

/// A per-test directory tree: `base/code/agent.py` and `base/sandboxes/<name>` work roots. `base`
/// plays Berth's data directory and is hidden from the agents.
pub struct Fixture {
    pub base: TempDir,
    pub code: PathBuf,
    pub sandboxes: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Fixture {
    pub fn new() -> Fixture {
        assert!(
            Path::new(PYTHON).exists(),
            "{PYTHON} is required by the sandbox tests"
        );
        let base = tempfile::Builder::new()
            .prefix("berth-sbx-")
            .tempdir_in(base_parent())
            .unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let code = base.path().join("code");
        std::fs::create_dir(&code).unwrap();
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(code.join("agent.py"), AGENT).unwrap();
        std::fs::set_permissions(
            code.join("agent.py"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let sandboxes = base.path().join("sandboxes");
        std::fs::create_dir(&sandboxes).unwrap();
        Fixture {
            base,
            code,
            sandboxes,
        }
    }

    /// A namespaced spec running the test agent, named `name` (`AGENT_NAME`), with a unique id.
    pub fn agent(&self, name: &str) -> SandboxSpec {
        let mut spec = self.command(name, &["agent.py"]);
        spec.env.push(("AGENT_NAME".into(), name.into()));
        spec
    }

    /// A namespaced spec running `python3 <args>`.
    pub fn command(&self, name: &str, args: &[&str]) -> SandboxSpec {
        let id = format!(
            "t{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            name
        );
        let mut argv = vec![PYTHON.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut spec = SandboxSpec::new(id.clone(), self.sandboxes.join(&id), &self.code, argv);
        spec.hidden = vec![self.base.path().to_path_buf()];
        spec
    }
}

/// The target dir's tmp when every ancestor lets others traverse it (the agent user must reach the
/// code directory), otherwise /var/tmp.
fn base_parent() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&target).unwrap();
    let traversable = target
        .ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if traversable {
        target
    } else {
        PathBuf::from("/var/tmp")
    }
}

/// Waits until the agent accepts connections.
pub async fn ready(sb: &Sandbox) {
    sb.wait_accepting(Duration::from_secs(30))
        .await
        .expect("agent never became ready");
}

/// Sends one request through the sandbox's connector with hyper-util's pooled client.
pub async fn http(
    sb: &Sandbox,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(sb.connector());
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://agent{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// `GET /` of the test agent.
pub async fn hello(sb: &Sandbox) -> serde_json::Value {
    let (status, body) = http(sb, "GET", "/", "").await.unwrap();
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// Runs a Python snippet inside the agent; returns what it printed. Panics if it raised.
pub async fn run(sb: &Sandbox, code: &str) -> String {
    let (status, body) = http(sb, "POST", "/run", code).await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true, "snippet failed: {v}\n{code}");
    v["out"].as_str().unwrap().to_string()
}

/// Polls `check` with a growing pause until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
