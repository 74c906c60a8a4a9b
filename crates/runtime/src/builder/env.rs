//! Creating a Python environment: `python3.X -m venv`, then pip, each with its output appended to the
//! build log and its tail kept for the error message.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use super::BuildError;
use super::confine::{self, BuildSandbox, BuildUid, PipSource};
use super::deps::{Deps, Source};
use super::fsx;
use super::interpreter::Interpreter;
use crate::sandbox::{EgressPolicy, EgressRule, Network, Sandbox, SandboxSpec};

/// Lines of output quoted in an error.
const TAIL_LINES: usize = 40;
/// Bytes of output quoted in an error.
const TAIL_BYTES: usize = 4096;

/// File inside the environment that lists what pip installed from `pyproject.toml`.
pub(crate) const PYPROJECT_REQUIREMENTS: &str = ".berth-requirements.txt";

/// Removes the variables that would make an interpreter or pip look somewhere else than the
/// environment being built (a user site, another venv, a target directory).
pub(crate) fn scrub_python_env(cmd: &mut Command) {
    for var in [
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "VIRTUAL_ENV",
        "__PYVENV_LAUNCHER__",
        "PIP_USER",
        "PIP_TARGET",
        "PIP_PREFIX",
        "PIP_ROOT",
        "PIP_REQUIRE_VIRTUALENV",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PYTHONNOUSERSITE", "1");
}

/// One environment to create at `env_dir` (which must not exist).
pub(crate) struct EnvJob<'a> {
    pub env_dir: &'a Path,
    pub interpreter: &'a Interpreter,
    pub deps: &'a Deps,
    /// The unpacked code: pip's working directory, where `requirements.txt` lives.
    pub code_dir: &'a Path,
    pub log_path: &'a Path,
    pub pip_args: &'a [String],
    pub timeout: Duration,
    /// Where the steps run; `None` runs them as Berth itself (benchmarks only).
    pub sandbox: Option<StepSandbox<'a>>,
}

/// How the steps of one build are confined (see `confine.rs`).
pub(crate) struct StepSandbox<'a> {
    pub opts: &'a BuildSandbox,
    /// Parent of the build sandboxes' work roots.
    pub sandboxes_dir: &'a Path,
    /// The build root, masked in the sandbox except for the code and the target environment.
    pub build_root: &'a Path,
    pub uid: &'a BuildUid,
    pub source: &'a PipSource,
    /// The code digest, for logs.
    pub label: &'a str,
}

impl EnvJob<'_> {
    /// Runs venv and pip. On error the caller removes the half-built directory.
    pub async fn run(&self) -> Result<(), BuildError> {
        let deadline = Instant::now() + self.timeout;
        let mut log = Log::create(self.log_path).await?;
        if let Some(sb) = &self.sandbox {
            // The environment is built at its final path by the build uid: the mount point of its
            // writable bind.
            let (dir, uid, own) = (self.env_dir.to_path_buf(), sb.uid.uid, sb.uid.own);
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir(&dir)?;
                if own {
                    return Ok(());
                }
                std::os::unix::fs::chown(&dir, Some(uid), Some(uid))
            })
            .await
            .map_err(|e| BuildError::io("creating the environment", std::io::Error::other(e)))?
            .map_err(|e| BuildError::io(format!("creating {}", self.env_dir.display()), e))?;
        }

        let mut venv = vec![
            self.interpreter.executable.to_string_lossy().into_owned(),
            "-m".to_owned(),
            "venv".to_owned(),
        ];
        if self.deps.is_empty() {
            // Nothing to install: skip ensurepip, which is most of venv's time (and agents cannot
            // pip install at run time anyway, the environment is read-only to them).
            venv.push("--without-pip".to_owned());
        }
        venv.push(self.env_dir.to_string_lossy().into_owned());
        let step = format!(
            "creating the python {} virtual environment",
            self.interpreter.version
        );
        self.step(venv, false, &step, &mut log, deadline, 0).await?;

        if !self.deps.is_empty() {
            let requirements: PathBuf = match self.deps.source {
                Source::Requirements => self.code_dir.join("requirements.txt"),
                Source::Pyproject | Source::None => {
                    let path = self.env_dir.join(PYPROJECT_REQUIREMENTS);
                    let mut text = self.deps.lines.join("\n");
                    text.push('\n');
                    tokio::fs::write(&path, text)
                        .await
                        .map_err(|e| BuildError::io(format!("writing {}", path.display()), e))?;
                    path
                }
            };
            let mut pip: Vec<String> = [
                self.env_dir
                    .join("bin")
                    .join("python")
                    .to_string_lossy()
                    .as_ref(),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ]
            .map(str::to_owned)
            .to_vec();
            pip.extend(self.pip_args.iter().cloned());
            pip.push("-r".to_owned());
            // Local references are built from a writable copy of the code (build backends write
            // next to their sources), where relative paths resolve as in the package.
            let copy = self.sandbox.is_some() && self.deps.local_refs;
            if copy && self.deps.source == Source::Requirements {
                pip.push("requirements.txt".to_owned());
            } else {
                pip.push(requirements.to_string_lossy().into_owned());
            }
            self.step(
                pip,
                copy,
                "installing dependencies with pip",
                &mut log,
                deadline,
                1,
            )
            .await?;
        }
        if let Some(sb) = &self.sandbox {
            let (dir, own) = (self.env_dir.to_path_buf(), sb.uid.own);
            // Not root: the tree stays Berth's (it cannot give it away); the caller makes it
            // readable by all.
            tokio::task::spawn_blocking(move || if own { Ok(()) } else { fsx::seal(&dir) })
                .await
                .map_err(|e| BuildError::io("sealing the environment", std::io::Error::other(e)))?
                .map_err(|e| BuildError::io(format!("sealing {}", self.env_dir.display()), e))?;
        }
        log.finish().await
    }

    /// Runs one step in the build sandbox, or as Berth itself without one.
    async fn step(
        &self,
        argv: Vec<String>,
        copy_code: bool,
        step: &str,
        log: &mut Log,
        deadline: Instant,
        n: u32,
    ) -> Result<(), BuildError> {
        let Some(sb) = &self.sandbox else {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]).current_dir(self.code_dir);
            return run_logged(cmd, step, log, deadline, self.timeout).await;
        };
        let argv = if copy_code {
            let mut wrapped = vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                "cp -R \"$0\" /tmp/src && chmod -R u+w /tmp/src && cd /tmp/src && exec \"$@\""
                    .to_owned(),
                self.code_dir.to_string_lossy().into_owned(),
            ];
            wrapped.extend(argv);
            wrapped
        } else {
            argv
        };
        run_sandboxed(self, sb, argv, step, log, deadline, n).await
    }
}

/// Runs one build step in a sandbox and copies its output into the build log.
async fn run_sandboxed(
    job: &EnvJob<'_>,
    sb: &StepSandbox<'_>,
    argv: Vec<String>,
    step: &str,
    log: &mut Log,
    deadline: Instant,
    n: u32,
) -> Result<(), BuildError> {
    // Sandbox ids name cgroups, which are host-wide: the pid and a counter keep them unique.
    static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let step_no = STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("build-{}-{step_no}-{n}", std::process::id());
    let mut spec = SandboxSpec::new(id.clone(), sb.sandboxes_dir.join(&id), job.code_dir, argv);
    spec.isolation = sb.opts.isolation;
    spec.limits = sb.opts.limits;
    spec.run_as = sb.uid.run_as();
    spec.env = confine::build_env(sb.source);
    spec.env.push((
        "PATH".into(),
        format!("{}/bin:/usr/local/bin:/usr/bin:/bin", job.env_dir.display()),
    ));
    spec.hidden = sb.opts.hidden.clone();
    spec.hidden.push(sb.build_root.to_path_buf());
    spec.visible = vec![job.interpreter.base_prefix.clone()];
    spec.visible.extend(sb.source.local_dirs.iter().cloned());
    spec.writable = vec![job.env_dir.to_path_buf()];
    spec.network = Network::Public;
    spec.egress = EgressPolicy {
        allow: sb
            .source
            .hosts
            .iter()
            .filter_map(|h| h.parse::<EgressRule>().ok())
            .chain(sb.opts.egress_allow.iter().cloned())
            .collect(),
        allow_only: true,
        runtime: None,
        session: Some(format!("build {}", sb.label)),
    };
    spec.log_cap_bytes = 8 * 1024 * 1024;
    let shown = spec.argv.join(" ");
    log.write(format!("$ {shown}\n").as_bytes()).await?;
    tracing::debug!(command = shown, sandbox = id, "build step started");

    let sandbox = Sandbox::start(spec)
        .await
        .map_err(|e| BuildError::Sandbox(format!("{step}: {e}")))?;
    // Dropping the sandbox (a cancelled build) kills the step and removes its files.
    let outcome = tokio::time::timeout_at(deadline, sandbox.exited()).await;
    if outcome.is_ok() && !sandbox.logs_flushed(Duration::from_secs(10)).await {
        tracing::warn!(sandbox = id, "build output still open after the step ended");
    }
    let (mut out_tail, mut err_tail) = (Tail::default(), Tail::default());
    let captured = read_sandbox_log(sandbox.log_path()).await;
    for line in captured.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"err ") {
            err_tail.push(rest);
            log.write(rest).await?;
        } else if let Some(rest) = line.strip_prefix(b"out ") {
            out_tail.push(rest);
            log.write(rest).await?;
        } else {
            continue;
        }
        log.write(b"\n").await?;
    }
    if let Err(e) = sandbox.destroy().await {
        tracing::warn!(sandbox = id, error = %e, "removing a build sandbox");
    }
    match outcome {
        Ok(info) if info.success() => {
            log.write(b"\n").await?;
            Ok(())
        }
        Ok(info) => {
            log.write(format!("{info}\n\n").as_bytes()).await?;
            // Worded as for an unsandboxed process, so failure reasons read the same either way.
            let status = match info.code {
                Some(code) => format!("exit status: {code}"),
                None => info.to_string(),
            };
            Err(BuildError::Step {
                step: step.to_owned(),
                status,
                output: quote(&err_tail, &out_tail),
            })
        }
        Err(_) => {
            log.write(format!("killed after {} s\n\n", job.timeout.as_secs()).as_bytes())
                .await?;
            Err(BuildError::Timeout {
                step: step.to_owned(),
                after: job.timeout,
                output: quote(&err_tail, &out_tail),
            })
        }
    }
}

/// The sandbox's captured output, the rotated generation first.
async fn read_sandbox_log(path: &Path) -> Vec<u8> {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let mut out = tokio::fs::read(&rotated).await.unwrap_or_default();
    out.extend(tokio::fs::read(path).await.unwrap_or_default());
    out
}

/// The build log: everything every step printed, as it arrives.
struct Log {
    file: tokio::fs::File,
    path: PathBuf,
}

impl Log {
    async fn create(path: &Path) -> Result<Self, BuildError> {
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| BuildError::io(format!("creating build log {}", path.display()), e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), BuildError> {
        self.file
            .write_all(bytes)
            .await
            .map_err(|e| BuildError::io(format!("writing build log {}", self.path.display()), e))
    }

    async fn finish(mut self) -> Result<(), BuildError> {
        self.file
            .flush()
            .await
            .map_err(|e| BuildError::io(format!("writing build log {}", self.path.display()), e))
    }
}

/// The last lines of one output stream.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(text);
    }

    /// At most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes, cut at the front.
    fn render(&self) -> String {
        let joined = self
            .lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        let joined = joined.trim();
        if joined.len() <= TAIL_BYTES {
            return joined.to_owned();
        }
        let mut start = joined.len() - TAIL_BYTES;
        while !joined.is_char_boundary(start) {
            start += 1;
        }
        format!("...{}", &joined[start..])
    }
}

/// Quoted output: stderr, where pip and venv report errors; stdout when stderr is empty.
fn quote(stderr: &Tail, stdout: &Tail) -> String {
    let err = stderr.render();
    if !err.is_empty() {
        return err;
    }
    let out = stdout.render();
    if out.is_empty() {
        "(no output)".to_owned()
    } else {
        out
    }
}

/// Runs one step in its own process group, streaming its output into the log, and fails with the
/// quoted tail if it exits unsuccessfully or outlives `deadline` (then the whole group is killed,
/// including build backends pip started).
async fn run_logged(
    mut cmd: Command,
    step: &str,
    log: &mut Log,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), BuildError> {
    scrub_python_env(&mut cmd);
    cmd.env("PIP_NO_INPUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let shown = {
        let std = cmd.as_std();
        let mut s = format!("$ {}", std.get_program().to_string_lossy());
        for a in std.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    };
    log.write(format!("{shown}\n").as_bytes()).await?;
    tracing::debug!(command = shown, "build step started");

    let mut child = cmd
        .spawn()
        .map_err(|e| BuildError::io(format!("{step}: starting {shown:?}"), e))?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    // If this future is dropped (the build was cancelled), `kill_on_drop` only reaches the leader:
    // the guard takes the build backends pip started with it.
    let mut group = GroupGuard(pid);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(BuildError::io(
            step,
            std::io::Error::other("child pipes missing"),
        ));
    };
    let mut out_tail = Tail::default();
    let mut err_tail = Tail::default();

    let outcome = tokio::time::timeout_at(
        deadline,
        pump(
            stdout,
            stderr,
            log,
            &mut out_tail,
            &mut err_tail,
            &mut child,
        ),
    )
    .await;
    if let Ok(Ok(_)) = &outcome {
        // Reaped: the pid may be reused, never signal it again.
        group.0 = None;
    }
    match outcome {
        Ok(Ok(status)) if status.success() => {
            log.write(b"\n").await?;
            Ok(())
        }
        Ok(Ok(status)) => {
            log.write(format!("{status}\n\n").as_bytes()).await?;
            Err(BuildError::Step {
                step: step.to_owned(),
                status: status.to_string(),
                output: quote(&err_tail, &out_tail),
            })
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            group.kill();
            // Reap it; the group leader is dead already, so this returns at once.
            let _ = child.kill().await;
            log.write(format!("killed after {} s\n\n", timeout.as_secs()).as_bytes())
                .await?;
            Err(BuildError::Timeout {
                step: step.to_owned(),
                after: timeout,
                output: quote(&err_tail, &out_tail),
            })
        }
    }
}

/// Kills a build step's process group when dropped, unless the step was reaped.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // SAFETY: kill(2) has no memory-safety preconditions. The negative pid addresses the
            // process group the child leads (`process_group(0)`); its leader has not been reaped
            // (the guard is disarmed once it is), so the group id cannot have been reused.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies both streams line by line into the log and the tails until both end, then waits for exit.
async fn pump(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    log: &mut Log,
    out_tail: &mut Tail,
    err_tail: &mut Tail,
    child: &mut tokio::process::Child,
) -> Result<ExitStatus, BuildError> {
    let mut out = BufReader::new(stdout);
    let mut err = BufReader::new(stderr);
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let read_err = |e| BuildError::io("reading build step output", e);
    while out_open || err_open {
        // `read_until` keeps what it read in the buffer when the other branch wins, and the same
        // buffer is passed again on the next turn, so no output is lost.
        tokio::select! {
            r = out.read_until(b'\n', &mut out_buf), if out_open => {
                if r.map_err(read_err)? == 0 {
                    out_open = false;
                }
                if !out_buf.is_empty() && (!out_open || out_buf.ends_with(b"\n")) {
                    log.write(&out_buf).await?;
                    out_tail.push(&out_buf);
                    out_buf.clear();
                }
            }
            r = err.read_until(b'\n', &mut err_buf), if err_open => {
                if r.map_err(read_err)? == 0 {
                    err_open = false;
                }
                if !err_buf.is_empty() && (!err_open || err_buf.ends_with(b"\n")) {
                    log.write(&err_buf).await?;
                    err_tail.push(&err_buf);
                    err_buf.clear();
                }
            }
        }
    }
    child
        .wait()
        .await
        .map_err(|e| BuildError::io("waiting for build step", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let r = t.render();
        assert!(r.starts_with("line 60\n") && r.ends_with("line 99"), "{r}");
        let mut big = Tail::default();
        big.push("é".repeat(5000).as_bytes());
        let r = big.render();
        assert!(
            r.starts_with("...") && r.len() <= TAIL_BYTES + 3,
            "{}",
            r.len()
        );
    }

    #[tokio::test]
    async fn failing_step_quotes_stderr_and_logs_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let log_path = tmp.path().join("x.log");
        let mut log = Log::create(&log_path).await.unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "echo out1; echo err1 >&2; printf 'no newline' >&2; exit 3",
        ]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let err = run_logged(cmd, "testing", &mut log, deadline, Duration::from_secs(30))
            .await
            .unwrap_err();
        log.finish().await.unwrap();
        let msg = err.to_string();
        assert!(
            msg.starts_with("testing failed (exit status: 3):\n"),
            "{msg}"
        );
        assert!(
            msg.contains("err1\nno newline") && !msg.contains("out1"),
            "{msg}"
        );
        let logged = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            logged.contains("out1") && logged.contains("err1") && logged.contains("exit status: 3"),
            "{logged}"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = Log::create(&tmp.path().join("x.log")).await.unwrap();
        let mut cmd = Command::new("/bin/sh");
        // The background sleep keeps the pipes open: only killing the group ends it.
        cmd.args(["-c", "echo started >&2; sleep 300 & sleep 300"]);
        let limit = Duration::from_secs(3);
        let err = run_logged(cmd, "sleeping", &mut log, Instant::now() + limit, limit)
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("started"), "{err}");
    }
}
