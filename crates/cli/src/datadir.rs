//! The data dir at rest: where it is by default, who may read what in it, and a start-up probe
//! proving that an agent (another uid) can reach the code and environment dirs inside it.
//!
//! Modes are set explicitly (not through the process umask): the builder relies on the usual `022`
//! umask to make code and virtualenvs readable by agents, so a `077` umask would break them.

use anyhow::{Context, bail};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::warn;

/// The system data dir used when Berth runs as root.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/berth";

/// Files of the data dir that hold secrets or tenants' data.
const PRIVATE_FILES: [&str; 7] = [
    "credentials.json",
    "credentials.json.tmp",
    "berth.lock",
    "berth.db",
    "berth.db-wal",
    "berth.db-shm",
    "berth.db-journal",
];

/// Subdirectories an agent reaches by host path when it runs as a plain process (process
/// isolation as root): everything else stays private even when the data dir is traversable.
const AGENT_REACHABLE: [&str; 2] = ["builds", "sessions"];

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The default data dir: [`SYSTEM_DATA_DIR`] for root (a home such as `/root` is `0700`, and
/// agents run as another uid), else `$XDG_DATA_HOME/berth` or `~/.local/share/berth`.
pub fn default_data_dir() -> PathBuf {
    default_for(is_root(), &|k| std::env::var_os(k))
}

fn default_for(root: bool, env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if root {
        return PathBuf::from(SYSTEM_DATA_DIR);
    }
    if let Some(x) = env("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("berth");
    }
    let home = env("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/berth")
}

/// Mode of the data dir: `0700`, or `0711` (traversal only, no listing) when agents run as
/// another uid directly on host paths and must reach `builds/` and `sessions/` through it.
pub fn data_dir_mode(agents_traverse: bool) -> u32 {
    if agents_traverse { 0o711 } else { 0o700 }
}

/// Creates the data dir with its mode, or fixes the modes of an existing one: the dir itself,
/// the database, credentials and lock `0600`, `logs/` `0700` with its files `0600`, and (when
/// `agents_traverse`) every subdirectory agents do not need `0700`.
pub fn secure(dir: &Path, agents_traverse: bool) -> anyhow::Result<()> {
    let mode = data_dir_mode(agents_traverse);
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("data_dir: cannot create {}", parent.display()))?;
        }
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .with_context(|| format!("data_dir: cannot create {}", dir.display()))?;
    }
    chmod(dir, mode)?;
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        if path.exists() {
            chmod(&path, 0o600)?;
        }
    }
    // Made here so the sessions' kept logs land in a private dir from the first one on.
    let logs = dir.join("logs");
    if !logs.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&logs)
            .with_context(|| format!("data_dir: cannot create {}", logs.display()))?;
    }
    private_tree(&logs)?;
    if agents_traverse {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let is_dir = entry.file_type()?.is_dir();
            if is_dir && !AGENT_REACHABLE.iter().any(|n| name == *n) {
                chmod(&entry.path(), 0o700)?;
            }
        }
    }
    Ok(())
}

/// Directories `0700`, files `0600`, all the way down (symlinks left alone).
fn private_tree(dir: &Path) -> anyhow::Result<()> {
    chmod(dir, 0o700)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            private_tree(&entry.path())?;
        } else if kind.is_file() {
            chmod(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

fn chmod(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("data_dir: cannot stat {}", path.display()))?;
    if meta.mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| {
        format!(
            "data_dir: cannot set mode {mode:o} on {} (owned by uid {})",
            path.display(),
            meta.uid()
        )
    })
}

/// The database file of a `sqlite://PATH` store URL (`None` for other stores and for URLs the
/// store's parser rejects, which fail at start with its message).
pub fn sqlite_path(store: &str) -> Option<PathBuf> {
    berth_store::StoreUrl::parse(store)
        .ok()?
        .sqlite_path()
        .map(Path::to_path_buf)
}

/// Creates the database file `0600` before SQLite opens it (SQLite gives its `-wal`, `-shm` and
/// journal files the database's mode), or fixes an existing one and its companions. A missing
/// parent directory (a `--store` outside the data dir) is created `0700`.
pub fn secure_sqlite(db: &Path) -> anyhow::Result<()> {
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("store: cannot create {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(db)
        .with_context(|| format!("store: cannot create {}", db.display()))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if path.exists() {
            chmod(&path, 0o600).with_context(|| "store")?;
        }
    }
    Ok(())
}

/// The name of the probe's code and environment dirs (a dot keeps them out of the builder's
/// content-addressed names).
const PROBE_NAME: &str = ".berth-probe";

/// Prints nothing and exits 0 when the agent can read `argv[1]` (a file in the code dir) and list
/// `argv[2]` (the environment dir); otherwise names the path on stderr and exits 3.
const PROBE_SCRIPT: &str = "import os, sys\n\
try:\n    open(sys.argv[1], 'rb').close()\n    os.listdir(sys.argv[2])\n\
except OSError as e:\n    print(f'{e.filename}: {e.strerror}', file=sys.stderr)\n    sys.exit(3)\n";

/// Starts a sandbox the way sessions start (same isolation, same agent uid, the data dir hidden)
/// in a code dir under `builds/code/` with an environment dir under `builds/envs/`, and checks that
/// the agent can enter the code dir, read a file in it and list the environment dir. Fails with a
/// message naming the path and the fix when it cannot.
pub async fn probe_agent_access(
    data_dir: &Path,
    isolation: berth_runtime::Isolation,
) -> anyhow::Result<()> {
    let builds = data_dir.join("builds");
    let code = builds.join("code").join(PROBE_NAME);
    let env = builds.join("envs").join(PROBE_NAME);
    let work_root = data_dir.join("sessions").join(PROBE_NAME);
    for d in [&code, &env] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(d)
            .with_context(|| format!("creating {}", d.display()))?;
        chmod(d, 0o755)?;
    }
    let marker = code.join("probe.txt");
    std::fs::write(&marker, b"berth\n").with_context(|| format!("writing {}", marker.display()))?;
    chmod(&marker, 0o644)?;
    let _ = std::fs::remove_dir_all(&work_root);

    let mut spec = berth_runtime::SandboxSpec::new(
        format!("berth-probe-{}", std::process::id()),
        &work_root,
        &code,
        vec![
            "python3".into(),
            "-c".into(),
            PROBE_SCRIPT.into(),
            marker.display().to_string(),
            env.display().to_string(),
        ],
    );
    spec.isolation = isolation;
    spec.network = match isolation {
        berth_runtime::Isolation::Namespaces => berth_runtime::Network::Isolated,
        berth_runtime::Isolation::Process => berth_runtime::Network::Public,
    };
    spec.hidden = vec![data_dir.to_path_buf()];
    spec.visible = vec![env.clone()];
    spec.env = vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())];
    let fix = |path: &Path| {
        format!(
            "agents run as unprivileged uids of their own and must reach {}: make each directory above it traversable \
             by others (chmod o+x), or pass --data-dir a directory under one that is (as root the \
             default is {SYSTEM_DATA_DIR})",
            path.display()
        )
    };

    let sandbox = match berth_runtime::Sandbox::start(spec).await {
        Ok(s) => s,
        Err(berth_runtime::sandbox::Error::Setup { step, source }) if step.contains("exec") => {
            // No python3 at the usual places: builds will say which interpreter is missing;
            // the directories were entered (chdir comes before exec).
            warn!(%step, error = %source, "start-up probe could not run python3; agent file access not checked beyond the code dir");
            return Ok(());
        }
        Err(e) => {
            let blocked = first_closed_ancestor(&code).unwrap_or(code.clone());
            bail!(
                "data_dir: a probe agent could not start in {}: {e}; {}",
                code.display(),
                fix(&blocked)
            );
        }
    };
    let exit = tokio::time::timeout(Duration::from_secs(30), sandbox.exited()).await;
    let log = std::fs::read_to_string(sandbox.log_path()).unwrap_or_default();
    if let Err(e) = sandbox.destroy().await {
        warn!(error = %e, "start-up probe teardown failed");
    }
    let _ = std::fs::remove_dir_all(&work_root);
    let exit = exit.map_err(|_| {
        anyhow::anyhow!("data_dir: the start-up probe agent did not exit within 30 s")
    })?;
    if exit.success() {
        return Ok(());
    }
    let detail = log.trim();
    if exit.code == Some(3) {
        let path = detail
            .split(": ")
            .next()
            .map(PathBuf::from)
            .unwrap_or(env.clone());
        bail!(
            "data_dir: a probe agent cannot read {detail}; {}",
            fix(&path)
        );
    }
    warn!(exit = %exit, output = %detail, "start-up probe agent failed for another reason; agent file access not checked");
    Ok(())
}

/// The first ancestor of `path` (from `/` down) that others cannot traverse.
fn first_closed_ancestor(path: &Path) -> Option<PathBuf> {
    let ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.into_iter().rev().find_map(|p| {
        let meta = std::fs::metadata(p).ok()?;
        (meta.is_dir() && meta.mode() & 0o001 == 0).then(|| p.to_path_buf())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    #[test]
    fn root_defaults_to_the_system_dir_and_users_to_xdg() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".into()),
            _ => None,
        };
        assert_eq!(default_for(true, &env), PathBuf::from("/var/lib/berth"));
        assert_eq!(
            default_for(false, &env),
            PathBuf::from("/home/u/.local/share/berth")
        );
        let xdg = |k: &str| (k == "XDG_DATA_HOME").then(|| "/x".into());
        assert_eq!(default_for(false, &xdg), PathBuf::from("/x/berth"));
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///d/berth.db?mode=rwc"),
            Some(PathBuf::from("/d/berth.db"))
        );
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn secure_creates_private_dirs_and_fixes_existing_files() {
        let dir = std::env::temp_dir().join(format!("berth-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("a/data");
        secure(&data, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(data.join("credentials.json"), "{}").unwrap();
        std::fs::set_permissions(
            data.join("credentials.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::create_dir_all(data.join("logs/rt")).unwrap();
        std::fs::write(data.join("logs/rt/s.log"), "x").unwrap();
        std::fs::create_dir_all(data.join("artifacts")).unwrap();
        std::fs::create_dir_all(data.join("builds")).unwrap();
        secure(&data, true).unwrap();
        assert_eq!(mode(&data), 0o711);
        assert_eq!(mode(&data.join("credentials.json")), 0o600);
        assert_eq!(mode(&data.join("logs")), 0o700);
        assert_eq!(mode(&data.join("logs/rt/s.log")), 0o600);
        assert_eq!(mode(&data.join("artifacts")), 0o700);
        assert_eq!(mode(&data.join("builds")), 0o755);
        secure(&data, false).unwrap();
        assert_eq!(mode(&data), 0o700);

        let db = dir.join("elsewhere/store/berth.db");
        secure_sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
