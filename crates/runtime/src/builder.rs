//! The version builder: turns a code package (the zip behind `codeConfiguration`) into something a
//! sandbox can run.
//!
//! A build unpacks the zip into a content-addressed, read-only code directory, finds the interpreter
//! for the requested `PYTHON_3_X` runtime, and creates (or reuses) a virtual environment holding the
//! package's dependencies (`requirements.txt`, else `[project].dependencies` of `pyproject.toml`).
//!
//! On-disk layout under [`BuilderOptions::root`]:
//! ```text
//! code/<hex>/                     unpacked package, dirs 0555, files 0444; <hex> = sha256 of the zip
//! code/.staging-<hex>-<random>/   an unpack in progress, renamed to code/<hex>/ when complete
//! envs/python3.X-<dep hash>/      a venv, shared by every package with the same dependencies;
//!                                 complete once it holds `.berth-complete`
//! logs/<hex>.log                  output of venv and pip for the last environment built for <hex>
//! index/<hex>.<RUNTIME>.json      which environment a package was built with, for `lookup`
//! sandboxes/build-<pid>-<n>-<k>/  work roots of the build sandboxes running now (see `confine.rs`)
//! ```
//!
//! venv and pip run in a build sandbox (`confine.rs`): their own uid, an allow-listed environment,
//! the host masked or read-only, only the target environment writable, egress only to the package
//! indexes. Requirement lines reaching outside the package are refused before (`deps::check_reach`).
//! Directory names use the bare hex digest rather than `sha256:<hex>` because the code directory
//! goes on `PYTHONPATH`, where a `:` would split it.
//!
//! Architecture Invariant: code directories are renamed into place complete, environments are only
//! used once their marker exists, and both are never modified afterwards (a version is immutable).
//! A venv embeds its own absolute path, so environments are built at their final path under a lock
//! rather than in a temporary directory. Locks are per process: one Berth process owns a build root.

mod confine;
mod deps;
mod entry;
mod env;
mod error;
mod fsx;
mod interpreter;
mod unpack;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

pub use confine::BuildSandbox;
pub use error::BuildError;
pub use interpreter::InterpreterSearch;

use deps::Deps;
use entry::EntryPlan;
use interpreter::Interpreter;

/// Marker file written last into a complete environment.
const ENV_MARKER: &str = ".berth-complete";

/// Configuration of the [`Builder`].
#[derive(Debug, Clone)]
pub struct BuilderOptions {
    /// Where builds live, normally `<data-dir>/builds`. Created if missing. Sandboxed agents run as an
    /// unprivileged user and must reach the code and environments here, so every parent directory
    /// must be searchable by other users (see [`Builder::check_permissions`]).
    pub root: PathBuf,
    /// Extra arguments for `pip install`, e.g. `["--index-url", "https://mirror/simple"]`. Empty by
    /// default: pip then follows the host's own configuration (`pip.conf`, `PIP_*` variables).
    pub pip_args: Vec<String>,
    /// How long creating one environment (venv plus pip) may take. Default 15 minutes.
    pub timeout: Duration,
    /// Cap on the total uncompressed size of a code package. Default 1 GiB.
    pub max_unpacked_bytes: u64,
    /// Cap on the number of entries of a code package. Default 100 000.
    pub max_entries: usize,
    /// Where Python interpreters are looked for. Default [`InterpreterSearch::from_env`].
    pub interpreters: InterpreterSearch,
    /// How venv and pip are confined (see [`BuildSandbox`]). `None` runs them as Berth itself with
    /// Berth's environment: only for measuring what the sandbox costs (`bench/`), never for
    /// untrusted packages.
    pub sandbox: Option<BuildSandbox>,
}

impl BuilderOptions {
    /// Defaults for a build root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            pip_args: Vec::new(),
            timeout: Duration::from_secs(15 * 60),
            max_unpacked_bytes: 1 << 30,
            max_entries: 100_000,
            interpreters: InterpreterSearch::from_env(),
            sandbox: Some(BuildSandbox::default()),
        }
    }
}

/// A built version, ready to be started by a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Content address of the code package: `sha256:<hex>` of the zip bytes.
    pub digest: String,
    /// The runtime it was built for, e.g. `PYTHON_3_11`.
    pub runtime: String,
    /// The unpacked package (`<root>/code/<hex>`), read-only, world-readable: the agent's working
    /// directory.
    pub code_dir: PathBuf,
    /// The virtual environment (`<root>/envs/python3.X-<dep hash>`), world-readable, shared by
    /// versions with the same dependencies. A venv only works at the path it was created at, so a
    /// sandbox that hides the data directory must keep this path visible.
    pub env_dir: PathBuf,
    /// `env_dir/bin/python`.
    pub python: PathBuf,
    /// The agent's command line, see the `entryPoint` forms in [`Builder::build`].
    pub argv: Vec<String>,
    /// Environment for the agent: `PYTHONPATH` = code dir (packages vendored next to the agent, as in
    /// AWS "direct code deploy" zips, are importable), `PYTHONUNBUFFERED=1`,
    /// `PYTHONDONTWRITEBYTECODE=1` (the code is read-only), `VIRTUAL_ENV`, and `PATH` starting with
    /// the environment's `bin/` (wrappers such as `opentelemetry-instrument` exec `python` by name).
    pub env: Vec<(String, String)>,
    /// The exact interpreter version, e.g. `3.11.2`.
    pub python_version: String,
    /// Whether the environment already existed (no venv or pip ran for this build).
    pub env_reused: bool,
}

/// Builds versions. Cheap to clone; clones share locks.
#[derive(Debug, Clone)]
pub struct Builder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: BuilderOptions,
    /// One async lock per code digest (`code:<hex>`) and per environment (`env:<name>`), so two
    /// builds of the same thing never work on the same directory at once. Entries die with their
    /// last guard.
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
    /// Berth runs as root, so sandboxes run agents as nobody: what they use must be reachable by
    /// other users.
    agents_run_as_other_user: bool,
    /// Interpreters already probed.
    interpreters: interpreter::Found,
    /// Uids of the builds running now, shared by every builder of the process.
    uids: Arc<confine::UidPool>,
    /// The package indexes of the host's pip configuration, read once at start.
    pip_source: confine::PipSource,
}

/// What `index/<hex>.<RUNTIME>.json` records.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    digest: String,
    runtime: String,
    env: String,
    python_version: String,
    interpreter: PathBuf,
}

/// What `.berth-complete` records, for whoever inspects an environment.
#[derive(Debug, Serialize)]
struct EnvRecord<'a> {
    python_version: &'a str,
    interpreter: &'a Path,
    requirements: &'a [String],
}

impl Builder {
    /// A builder over `opts.root` (made absolute against the current directory if relative).
    pub fn new(mut opts: BuilderOptions) -> Self {
        if let Ok(abs) = std::path::absolute(&opts.root) {
            opts.root = abs;
        }
        let pip_source = confine::PipSource::discover(&opts.pip_args);
        Self {
            inner: Arc::new(Inner {
                opts,
                locks: Mutex::new(HashMap::new()),
                agents_run_as_other_user: crate::sandbox::effective_uid() == 0,
                interpreters: interpreter::Found::default(),
                uids: confine::UidPool::process_wide(),
                pip_source,
            }),
        }
    }

    /// The options this builder was made with.
    pub fn options(&self) -> &BuilderOptions {
        &self.inner.opts
    }

    /// Where the venv/pip output of the last environment built for `digest` is kept.
    pub fn log_path(&self, digest: &str) -> Result<PathBuf, BuildError> {
        Ok(self
            .logs_root()
            .join(format!("{}.log", parse_digest(digest)?)))
    }

    /// Builds a version from the zip bytes of its code package.
    ///
    /// `runtime` is `PYTHON_3_<minor>`; the matching `python3.<minor>` must be installed on the host
    /// (see [`InterpreterSearch`]), no other version is substituted. `NODE_22` fails as unsupported.
    ///
    /// `entry_point` (AgentCore's `entryPoint`, 1 or 2 elements, relative to the package root):
    /// - `["agent.py"]`, `["agent.py", "arg"]`: `<env>/bin/python <code>/agent.py [arg]`;
    /// - `["agent"]`, `["pkg.main", "arg"]` (no `.py`): `python -m agent [arg]`, the module being
    ///   `agent.py` or `agent/__main__.py` in the package;
    /// - `["opentelemetry-instrument", "agent.py"]`: a program installed by the dependencies into
    ///   `<env>/bin` that wraps the interpreter, as the starter toolkit sends with observability on.
    ///
    /// Idempotent and safe to call concurrently: the same package is unpacked once, the same
    /// dependencies installed once; a cached environment means no pip run at all.
    pub async fn build(
        &self,
        zip: Bytes,
        runtime: &str,
        entry_point: &[String],
    ) -> Result<Built, BuildError> {
        let started = Instant::now();
        let minor = interpreter::parse_runtime(runtime)?;
        entry::check_shape(entry_point)?;
        self.check_root()?;

        let hex = {
            let zip = zip.clone();
            blocking("hashing the code package", move || {
                Ok(hex::encode(Sha256::digest(&zip)))
            })
            .await?
        };
        let digest = format!("sha256:{hex}");
        let _code_guard = self.lock(format!("code:{hex}")).await;
        self.ensure_layout().await?;
        let code_dir = self.ensure_code(&hex, zip).await?;

        let plan = {
            let code_dir = code_dir.clone();
            let entry_point = entry_point.to_vec();
            blocking("checking the entry point", move || {
                EntryPlan::new(&code_dir, &entry_point)
            })
            .await?
        };
        let interp = self
            .inner
            .interpreters
            .find(
                &self.inner.opts.interpreters,
                runtime,
                minor,
                self.inner.agents_run_as_other_user,
            )
            .await?;
        let deps = read_deps(&code_dir).await?;
        self.check_reach(&code_dir, &deps).await?;
        let env_name = deps.env_key(&interp, minor, &self.inner.opts.pip_args, &hex);
        let env_dir = self.envs_root().join(&env_name);

        // Held until the index entry is written, so `gc` never sees this environment unreferenced
        // and unlocked while it is about to be used.
        let _env_guard = self.lock(format!("env:{env_name}")).await;
        let env_reused = self
            .ensure_env(&env_dir, &interp, &deps, &code_dir, &hex)
            .await?;
        let argv = plan.argv(&code_dir, &env_dir)?;

        let manifest = Manifest {
            digest: digest.clone(),
            runtime: runtime.to_owned(),
            env: env_name.clone(),
            python_version: interp.version.clone(),
            interpreter: interp.executable.clone(),
        };
        let index_path = self.index_path(&hex, runtime);
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BuildError::io("encoding the build index entry", io::Error::other(e)))?;
        blocking("writing the build index entry", move || {
            fsx::write_atomic(&index_path, &bytes, 0o644)
                .map_err(|e| BuildError::io(format!("writing {}", index_path.display()), e))
        })
        .await?;

        tracing::info!(
            %digest,
            runtime,
            env = env_name,
            env_reused,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "version built"
        );
        Ok(self.built(
            digest,
            runtime,
            code_dir,
            env_dir,
            argv,
            interp.version,
            env_reused,
        ))
    }

    /// Re-opens a version built earlier (e.g. before a restart) without rebuilding: `None` when
    /// anything is missing or was never built for this runtime, and the caller should call
    /// [`build`](Self::build).
    pub async fn lookup(
        &self,
        digest: &str,
        runtime: &str,
        entry_point: &[String],
    ) -> Option<Built> {
        let hex = parse_digest(digest).ok()?.to_owned();
        interpreter::parse_runtime(runtime).ok()?;
        let index_path = self.index_path(&hex, runtime);
        let bytes = tokio::fs::read(&index_path).await.ok()?;
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %index_path.display(), error = %e, "unreadable build index entry");
                return None;
            }
        };
        if manifest.digest != digest || manifest.runtime != runtime || !is_plain_name(&manifest.env)
        {
            tracing::warn!(path = %index_path.display(), "build index entry does not match its name");
            return None;
        }
        let code_dir = self.code_root().join(&hex);
        let env_dir = self.envs_root().join(&manifest.env);
        let entry_point = entry_point.to_vec();
        let (code, env) = (code_dir.clone(), env_dir.clone());
        let argv = blocking("checking a built version", move || {
            let complete = code.is_dir()
                && env.join(ENV_MARKER).is_file()
                // Follows the venv's link to the base interpreter, which may have been uninstalled.
                && std::fs::metadata(env.join("bin").join("python")).is_ok_and(|m| m.is_file());
            if !complete {
                return Ok(None);
            }
            Ok(EntryPlan::new(&code, &entry_point)
                .and_then(|p| p.argv(&code, &env))
                .ok())
        })
        .await
        .ok()
        .flatten();
        let Some(argv) = argv else {
            tracing::debug!(%digest, runtime, "built version incomplete, needs a rebuild");
            return None;
        };
        Some(self.built(
            digest.to_owned(),
            runtime,
            code_dir,
            env_dir,
            argv,
            manifest.python_version,
            true,
        ))
    }

    /// Removes code directories, index entries and logs of every digest not in `keep_digests`, then
    /// every environment no remaining version uses. Anything a build is working on right now is
    /// skipped. `keep_digests` must include versions still being created, or a build that has just
    /// finished may lose its files; a digest that is not `sha256:<hex>` is an error, so a format
    /// mix-up cannot wipe everything.
    pub async fn gc(&self, keep_digests: &[String]) -> Result<(), BuildError> {
        let keep: HashSet<String> = keep_digests
            .iter()
            .map(|d| parse_digest(d).map(str::to_owned))
            .collect::<Result<_, _>>()?;
        let mut removed = 0usize;

        for name in list_dir(&self.code_root()).await? {
            let (hex, staging) = if is_hex64(&name) {
                (name.clone(), false)
            } else if let Some(hex) = name
                .strip_prefix(".staging-")
                .and_then(|r| r.get(..64))
                .filter(|h| is_hex64(h))
            {
                (hex.to_owned(), true)
            } else {
                continue;
            };
            if keep.contains(&hex) && !staging {
                continue;
            }
            // Busy: a build of this digest is running; leave it all to the next collection.
            let Some(_guard) = self.try_lock(format!("code:{hex}")) else {
                continue;
            };
            let path = self.code_root().join(&name);
            blocking("removing a code directory", move || {
                fsx::remove_tree(&path)
                    .map_err(|e| BuildError::io(format!("removing {}", path.display()), e))
            })
            .await?;
            removed += 1;
        }

        for (dir, suffix_ok) in [
            (
                self.index_root(),
                (|rest: &str| rest.starts_with('.') && rest.ends_with(".json")) as fn(&str) -> bool,
            ),
            (self.logs_root(), |rest: &str| rest == ".log"),
        ] {
            for name in list_dir(&dir).await? {
                let Some(hex) = name.get(..64).filter(|h| is_hex64(h)) else {
                    continue;
                };
                if keep.contains(hex) || !suffix_ok(&name[64..]) {
                    continue;
                }
                let Some(_guard) = self.try_lock(format!("code:{hex}")) else {
                    continue;
                };
                let path = dir.join(&name);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(BuildError::io(format!("removing {}", path.display()), e));
                    }
                }
            }
        }

        let mut referenced = HashSet::new();
        for name in list_dir(&self.index_root()).await? {
            if !name.ends_with(".json") {
                continue;
            }
            let Ok(bytes) = tokio::fs::read(self.index_root().join(&name)).await else {
                continue;
            };
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                referenced.insert(m.env);
            }
        }
        for name in list_dir(&self.envs_root()).await? {
            if referenced.contains(&name) || !is_plain_name(&name) {
                continue;
            }
            let Some(_guard) = self.try_lock(format!("env:{name}")) else {
                continue;
            };
            let path = self.envs_root().join(&name);
            blocking("removing an environment", move || {
                fsx::remove_tree(&path)
                    .map_err(|e| BuildError::io(format!("removing {}", path.display()), e))
            })
            .await?;
            removed += 1;
        }
        tracing::info!(kept = keep.len(), removed, "build garbage collected");
        Ok(())
    }

    /// Checks that sandboxed agents will be able to reach the build root: when Berth runs as root,
    /// agents run as nobody, so every existing parent of the root must be searchable by other users
    /// (a data directory under a `0700` home does not work). The error says which directory blocks
    /// and how to fix it. When Berth is not root, agents run as Berth's own user and this passes.
    pub fn check_permissions(&self) -> Result<(), String> {
        if !self.inner.agents_run_as_other_user {
            return Ok(());
        }
        let root = &self.inner.opts.root;
        let mut existing = root.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(parent) => existing = parent,
                None => return Ok(()),
            }
        }
        let existing = existing
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", existing.display()))?;
        match fsx::others_access_problem(&existing, 0o1) {
            None => Ok(()),
            Some(problem) => Err(format!(
                "the build directory {} is not reachable by the unprivileged user sandboxed agents run \
                 as: {problem}; allow other users to search it (chmod o+x) or choose a data directory \
                 elsewhere",
                root.display()
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn built(
        &self,
        digest: String,
        runtime: &str,
        code_dir: PathBuf,
        env_dir: PathBuf,
        argv: Vec<String>,
        python_version: String,
        env_reused: bool,
    ) -> Built {
        let python = env_dir.join("bin").join("python");
        // Both are UTF-8: `check_root` refused a root that is not, and the rest are ASCII names.
        let code = code_dir.to_string_lossy().into_owned();
        let env_path = env_dir.to_string_lossy().into_owned();
        let env = vec![
            ("PYTHONPATH".to_owned(), code),
            ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
            ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
            ("VIRTUAL_ENV".to_owned(), env_path.clone()),
            (
                "PATH".to_owned(),
                format!("{env_path}/bin:/usr/local/bin:/usr/bin:/bin"),
            ),
        ];
        Built {
            digest,
            runtime: runtime.to_owned(),
            code_dir,
            env_dir,
            python,
            argv,
            env,
            python_version,
            env_reused,
        }
    }

    fn check_root(&self) -> Result<(), BuildError> {
        let root = &self.inner.opts.root;
        let Some(s) = root.to_str() else {
            return Err(BuildError::Config(format!(
                "the build root {} is not valid UTF-8",
                root.display()
            )));
        };
        if !root.is_absolute() {
            return Err(BuildError::Config(format!(
                "the build root {s} is not an absolute path"
            )));
        }
        if s.contains(':') {
            return Err(BuildError::Config(format!(
                "the build root {s} contains ':', which breaks PYTHONPATH and PATH"
            )));
        }
        Ok(())
    }

    fn code_root(&self) -> PathBuf {
        self.inner.opts.root.join("code")
    }

    fn envs_root(&self) -> PathBuf {
        self.inner.opts.root.join("envs")
    }

    fn logs_root(&self) -> PathBuf {
        self.inner.opts.root.join("logs")
    }

    fn index_root(&self) -> PathBuf {
        self.inner.opts.root.join("index")
    }

    fn index_path(&self, hex: &str, runtime: &str) -> PathBuf {
        self.index_root().join(format!("{hex}.{runtime}.json"))
    }

    async fn ensure_layout(&self) -> Result<(), BuildError> {
        let root = self.inner.opts.root.clone();
        blocking("creating the build directories", move || {
            for dir in [
                root.clone(),
                root.join("code"),
                root.join("envs"),
                root.join("logs"),
                root.join("index"),
            ] {
                fsx::create_dir_mode(&dir, 0o755)
                    .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
            }
            // Build sandboxes' work roots: traversable only, their names are not for listing.
            let dir = root.join("sandboxes");
            fsx::create_dir_mode(&dir, 0o711)
                .map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
            Ok(())
        })
        .await
    }

    /// The unpacked package, unpacking it unless it already is. Called under the digest's lock.
    async fn ensure_code(&self, hex: &str, zip: Bytes) -> Result<PathBuf, BuildError> {
        let final_dir = self.code_root().join(hex);
        if tokio::fs::metadata(&final_dir)
            .await
            .is_ok_and(|m| m.is_dir())
        {
            return Ok(final_dir);
        }
        let limits = unpack::Limits {
            max_bytes: self.inner.opts.max_unpacked_bytes,
            max_entries: self.inner.opts.max_entries,
        };
        let code_root = self.code_root();
        let prefix = format!(".staging-{hex}-");
        blocking("unpacking the code package", move || {
            let staging = tempfile::Builder::new()
                .prefix(&prefix)
                .tempdir_in(&code_root)
                .map_err(|e| {
                    BuildError::io(
                        format!("creating a staging directory in {}", code_root.display()),
                        e,
                    )
                })?;
            // On error `staging` is dropped and removed (it is still writable at that point).
            unpack::unpack(&zip, staging.path(), limits)?;
            fsx::make_read_only_below(staging.path())
                .map_err(|e| BuildError::io("making the code directory read-only", e))?;
            let staged = staging.keep();
            if let Err(e) = std::fs::rename(&staged, &final_dir) {
                let _ = fsx::remove_tree(&staged);
                // A cancelled earlier build of the same digest may have finished unpacking in the
                // background (blocking tasks are not cancelled): identical content, use it.
                if final_dir.is_dir() {
                    return Ok(final_dir);
                }
                return Err(BuildError::io(
                    format!("moving the code into {}", final_dir.display()),
                    e,
                ));
            }
            // Last, because renaming needed it writable; tempfile created it 0700.
            std::fs::set_permissions(
                &final_dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o555),
            )
            .map_err(|e| {
                BuildError::io(format!("setting permissions of {}", final_dir.display()), e)
            })?;
            Ok(final_dir)
        })
        .await
    }

    /// Creates the environment unless it is complete; `Ok(true)` when it was. Called under the
    /// environment's lock.
    async fn ensure_env(
        &self,
        env_dir: &Path,
        interp: &Interpreter,
        deps: &Deps,
        code_dir: &Path,
        hex: &str,
    ) -> Result<bool, BuildError> {
        if tokio::fs::metadata(env_dir.join(ENV_MARKER)).await.is_ok() {
            return Ok(true);
        }
        if tokio::fs::symlink_metadata(env_dir).await.is_ok() {
            tracing::warn!(env = %env_dir.display(), "removing an incomplete environment");
            let path = env_dir.to_path_buf();
            blocking("removing an incomplete environment", move || {
                fsx::remove_tree(&path)
                    .map_err(|e| BuildError::io(format!("removing {}", path.display()), e))
            })
            .await?;
        }
        let log_path = self.logs_root().join(format!("{hex}.log"));
        let started = Instant::now();
        let opts = &self.inner.opts;
        let uid =
            match &opts.sandbox {
                Some(sb) => Some(self.inner.uids.take(sb.uid_base, sb.uid_count).ok_or_else(
                    || {
                        BuildError::Sandbox(format!(
                            "all {} build uids are in use; retry when a build has finished",
                            sb.uid_count
                        ))
                    },
                )?),
                None => None,
            };
        let sandboxes_dir = self.inner.opts.root.join("sandboxes");
        let sandbox = match (&opts.sandbox, &uid) {
            (Some(sb), Some(uid)) => Some(env::StepSandbox {
                opts: sb,
                sandboxes_dir: &sandboxes_dir,
                build_root: &opts.root,
                uid,
                source: &self.inner.pip_source,
                label: hex,
            }),
            _ => None,
        };
        let job = env::EnvJob {
            env_dir,
            interpreter: interp,
            deps,
            code_dir,
            log_path: &log_path,
            pip_args: &self.inner.opts.pip_args,
            timeout: self.inner.opts.timeout,
            sandbox,
        };
        if let Err(e) = job.run().await {
            let path = env_dir.to_path_buf();
            let cleanup = blocking("removing a failed environment", move || {
                fsx::remove_tree(&path)
                    .map_err(|e| BuildError::io(format!("removing {}", path.display()), e))
            })
            .await;
            if let Err(cleanup) = cleanup {
                tracing::warn!(error = %cleanup, "failed environment left behind, removed on the next build");
            }
            return Err(e);
        }
        let record = serde_json::to_vec_pretty(&EnvRecord {
            python_version: &interp.version,
            interpreter: &interp.executable,
            requirements: &deps.lines,
        })
        .map_err(|e| BuildError::io("encoding the environment record", io::Error::other(e)))?;
        let path = env_dir.to_path_buf();
        blocking("finishing the environment", move || {
            fsx::make_world_readable(&path).map_err(|e| {
                BuildError::io(format!("setting permissions in {}", path.display()), e)
            })?;
            let marker = path.join(ENV_MARKER);
            fsx::write_atomic(&marker, &record, 0o644)
                .map_err(|e| BuildError::io(format!("writing {}", marker.display()), e))
        })
        .await?;
        tracing::info!(
            env = %env_dir.display(),
            python = interp.version,
            requirements = deps.lines.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "environment created"
        );
        Ok(false)
    }

    /// Refuses requirement lines that reach outside the package or to hosts the operator did not
    /// allow, following the package's own `-r`/`-c` files, before anything runs.
    async fn check_reach(&self, code_dir: &Path, deps: &Deps) -> Result<(), BuildError> {
        let hosts = self.inner.pip_source.hosts.clone();
        let rules = self
            .inner
            .opts
            .sandbox
            .as_ref()
            .map(|s| s.egress_allow.clone())
            .unwrap_or_default();
        let allowed =
            move |h: &str| hosts.iter().any(|k| k == h) || rules.iter().any(|r| r.allows_name(h));
        let first = match deps.source {
            deps::Source::Pyproject => "pyproject.toml",
            _ => "requirements.txt",
        };
        let mut pending = vec![(first.to_owned(), deps.lines.clone(), 0usize)];
        let mut seen = 0usize;
        while let Some((file, lines, depth)) = pending.pop() {
            let included = deps::check_reach(&file, &lines, &allowed)?;
            for rel in included {
                seen += 1;
                if depth >= 8 || seen > 64 {
                    return Err(BuildError::Dependencies(format!(
                        "{file}: requirement files nest too deeply or are too many"
                    )));
                }
                let base = Path::new(&file).parent().unwrap_or(Path::new(""));
                let name = base.join(&rel).to_string_lossy().into_owned();
                // Lexically inside (checked above); a missing file is pip's error to report.
                let path = code_dir.join(&name);
                let Some(text) = read_optional(&path).await? else {
                    continue;
                };
                pending.push((name, deps::normalize_requirements(&text), depth + 1));
            }
        }
        Ok(())
    }

    fn lock_handle(&self, key: String) -> Arc<AsyncMutex<()>> {
        // Poisoning cannot leave the map inconsistent (every operation is a single insert or
        // retain), so a poisoned lock is simply taken over.
        let mut map = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let lock = Arc::new(AsyncMutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        lock
    }

    async fn lock(&self, key: String) -> OwnedMutexGuard<()> {
        self.lock_handle(key).lock_owned().await
    }

    fn try_lock(&self, key: String) -> Option<OwnedMutexGuard<()>> {
        self.lock_handle(key).try_lock_owned().ok()
    }
}

/// Reads `requirements.txt` / `pyproject.toml` at the package root.
async fn read_deps(code_dir: &Path) -> Result<Deps, BuildError> {
    let requirements = read_optional(&code_dir.join("requirements.txt")).await?;
    let pyproject = if requirements.is_none() {
        read_optional(&code_dir.join("pyproject.toml")).await?
    } else {
        None
    };
    Deps::from_files(requirements.as_deref(), pyproject.as_deref())
}

async fn read_optional(path: &Path) -> Result<Option<String>, BuildError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BuildError::io(format!("reading {name}"), e)),
    };
    if !meta.is_file() {
        return Err(BuildError::Dependencies(format!(
            "{name} is not a regular file"
        )));
    }
    if meta.len() > deps::MAX_DEP_FILE {
        return Err(BuildError::Dependencies(format!(
            "{name} is larger than {} bytes",
            deps::MAX_DEP_FILE
        )));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| BuildError::io(format!("reading {name}"), e))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| BuildError::Dependencies(format!("{name} is not valid UTF-8")))
}

async fn list_dir(dir: &Path) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(BuildError::io(format!("listing {}", dir.display()), e)),
    };
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| BuildError::io(format!("listing {}", dir.display()), e))?
    {
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// The hex part of `sha256:<64 lowercase hex>`.
fn parse_digest(digest: &str) -> Result<&str, BuildError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| is_hex64(h))
        .ok_or_else(|| BuildError::InvalidDigest(digest.to_owned()))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A single path component we created (no separators, not hidden).
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Runs synchronous filesystem work on the blocking pool.
async fn blocking<T, F>(what: &'static str, f: F) -> Result<T, BuildError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BuildError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::io(what, io::Error::other(e)))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let hex = "a".repeat(64);
        assert_eq!(parse_digest(&format!("sha256:{hex}")).unwrap(), hex);
        assert!(parse_digest(&hex).is_err());
        assert!(parse_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(parse_digest("sha256:abc").is_err());
    }

    #[tokio::test]
    async fn locks_are_shared_per_key_and_released() {
        let b = Builder::new(BuilderOptions::new("/nonexistent-berth-root"));
        let g = b.lock("k".into()).await;
        assert!(b.try_lock("k".into()).is_none());
        assert!(b.try_lock("other".into()).is_some());
        drop(g);
        assert!(b.try_lock("k".into()).is_some());
        assert!(
            b.inner
                .locks
                .lock()
                .unwrap()
                .values()
                .all(|w| w.strong_count() == 0)
        );
    }
}
