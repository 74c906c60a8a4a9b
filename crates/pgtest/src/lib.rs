//! A throwaway PostgreSQL cluster for tests (dev-only, never a dependency of the server).
//!
//! [`PgCluster::start`] runs Debian's `initdb` into a temporary directory and starts `postgres` on
//! it, listening on 127.0.0.1 on a port the OS picked and on a unix socket in that directory, with
//! `fsync` on (the store's durability is part of what its tests check). The cluster stops and its
//! directory goes when the [`PgCluster`] is dropped, or when the test process exits in any way:
//! `postgres` runs under a small keeper shell reading the test process's pipe, and the end of that
//! pipe (drop, exit, SIGKILL) makes the keeper stop `postgres` and remove the directory.
//!
//! Tests share one cluster per process ([`PgCluster::shared`]) and take a fresh database each
//! ([`PgCluster::create_database`]): starting a cluster costs about a second, a database a few
//! milliseconds.
//!
//! `initdb` refuses to run as root: when the euid is 0 the cluster runs as the `postgres` user
//! (created by Debian's package) and the temporary directory is handed to it.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping cluster may take before its process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the keeper shell runs: `postgres` in the background, then it waits for its stdin to end
/// and stops `postgres` (immediate shutdown: the cluster is thrown away) and removes the directory.
/// A non-interactive shell gives background jobs /dev/null as stdin, so only the keeper holds the
/// pipe. Arguments: `$1` the postgres binary, `$2` the cluster directory, `$3` the port.
const KEEPER: &str = r#"
"$1" -D "$2/data" -p "$3" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$2" \
    -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=400 \
    -c shared_buffers=64MB >"$2/postgres.log" 2>&1 &
pid=$!
read -r _ || true
kill -QUIT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$2"
"#;

/// A running throwaway cluster. The superuser is `postgres`, trusted without a password from
/// 127.0.0.1 and the socket.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    keeper: Mutex<Option<(Child, ChildStdin)>>,
    next_db: AtomicU64,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

/// The uid and gid to run the cluster as: `None` to stay the current user.
fn owner() -> Result<Option<(u32, u32)>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("running as root, reading /etc/passwd to find `postgres`: {e}"))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            let uid = f[2].parse().map_err(|_| "bad uid for `postgres`")?;
            let gid = f[3].parse().map_err(|_| "bad gid for `postgres`")?;
            return Ok(Some((uid, gid)));
        }
    }
    Err(
        "running as root and there is no `postgres` user (initdb refuses root): \
         run scripts/setup-debian.sh, which installs postgresql-15 and creates it"
            .into(),
    )
}

/// The directory holding `initdb`, `postgres` and `psql`: `$BERTH_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout).
fn bindir() -> Result<PathBuf, String> {
    let has_all = |d: &Path| {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(d) = std::env::var_os("BERTH_PG_BINDIR") {
        let d = PathBuf::from(d);
        return if has_all(&d) {
            Ok(d)
        } else {
            Err(format!(
                "BERTH_PG_BINDIR={} lacks initdb, postgres or psql",
                d.display()
            ))
        };
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let Some(major) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let d = e.path().join("bin");
            if has_all(&d) && best.as_ref().is_none_or(|(m, _)| major > *m) {
                best = Some((major, d));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        "postgresql server binaries (initdb, postgres, psql) not found in /usr/lib/postgresql/*/bin: \
         run scripts/setup-debian.sh (installs postgresql-15) or set BERTH_PG_BINDIR"
            .into()
    })
}

/// A port the OS says is free now (released before `postgres` binds it; a lost race is retried).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the keeper (and so postgres) on an initialised directory.
fn spawn(
    bin: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
    port: u16,
) -> Result<(Child, ChildStdin), String> {
    let mut keeper = Command::new("/bin/sh");
    keeper.current_dir(dir);
    if let Some((uid, gid)) = owner {
        keeper.uid(uid).gid(gid);
    }
    keeper
        .arg("-c")
        .arg(KEEPER)
        .arg("berth-pg-keeper")
        .arg(bin.join("postgres"))
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = keeper
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let stdin = child.stdin.take().ok_or("keeper has no stdin")?;
    Ok((child, stdin))
}

/// Kills the keeper's process group (postgres and its children share it) and reaps the keeper.
fn kill(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.wait();
}

/// Runs SQL through `psql` over the socket in `dir`, as the superuser; returns its unaligned,
/// tuples-only output.
fn psql(bin: &Path, dir: &Path, port: u16, db: &str, sql: &str) -> Result<String, String> {
    let mut c = Command::new(bin.join("psql"));
    c.arg("-h").arg(dir).arg("-p").arg(port.to_string()).args([
        "-U",
        "postgres",
        "-d",
        db,
        "-XAtq",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]);
    run(c, "psql")
}

/// Polls until the cluster answers a query, with a bounded deadline; the error carries the
/// server's log.
fn wait_ready(bin: &Path, dir: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if psql(bin, dir, port, "postgres", "SELECT 1").is_ok() {
            return Ok(());
        }
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(dir.join("postgres.log")) {
            let _ = f.read_to_string(&mut log);
        }
        // Our own probes log "FATAL: the database system is starting up"; anything else fatal
        // (a port taken, a bad setting) means this attempt is over.
        let failed = log
            .lines()
            .any(|l| l.contains("FATAL") && !l.contains("is starting up"));
        if failed || Instant::now() > deadline {
            return Err(format!(
                "postgres in {} did not start: {log}",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl PgCluster {
    /// Initialises and starts a new cluster; see the module docs.
    pub fn start() -> Result<Self, String> {
        let bin = bindir()?;
        let owner = owner()?;
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("handing {} to postgres: {e}", dir.path().display()))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.current_dir(dir.path());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        run(initdb, "initdb").map_err(|e| match owner {
            Some(_) => format!(
                "{e} (initdb runs as the postgres user, which must be able to reach {}: \
                 point TMPDIR at a directory every user can traverse)",
                dir.path().display()
            ),
            None => e,
        })?;

        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let (mut child, stdin) = spawn(&bin, dir.path(), owner, port)?;
            match wait_ready(&bin, dir.path(), port) {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        port,
                        bin,
                        keeper: Mutex::new(Some((child, stdin))),
                        next_db: AtomicU64::new(0),
                    });
                }
                Err(e) => {
                    // Killed before the keeper's cleanup: the directory stays for another try.
                    kill(&mut child);
                    drop(stdin);
                    let _ = std::fs::remove_file(dir.path().join("data/postmaster.pid"));
                    let port_taken = e.contains("could not bind")
                        || e.contains("could not create any TCP/IP sockets");
                    if !port_taken {
                        return Err(e);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The cluster every test of this process shares, started by the first caller. It lives
    /// until the process exits; the keeper then stops it and removes its directory.
    pub fn shared() -> Result<&'static PgCluster, String> {
        static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(Self::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket (and the data directory).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of database `db` as the superuser over TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database with a name unique in this cluster; returns its URL.
    pub fn create_database(&self) -> Result<String, String> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(&name))
    }

    /// Runs SQL through `psql` over the socket, as the superuser, on database `db`; returns its
    /// unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        psql(&self.bin, self.dir.path(), self.port, db, sql)
    }
}

impl Drop for PgCluster {
    /// Closes the keeper's pipe (it stops postgres and removes the directory) and reaps it; past
    /// a deadline the process group is killed.
    fn drop(&mut self) {
        let Some((mut child, stdin)) = self.keeper.lock().ok().and_then(|mut k| k.take()) else {
            return;
        };
        drop(stdin);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        kill(&mut child);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_serves_fresh_databases_and_goes_away_on_drop() {
        let c = PgCluster::start().unwrap();
        let a = c.create_database().unwrap();
        let b = c.create_database().unwrap();
        assert_ne!(a, b);
        assert_eq!(c.psql("postgres", "SHOW fsync").unwrap().trim(), "on");
        let db = a.rsplit('/').next().unwrap();
        c.psql(db, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
            .unwrap();
        assert_eq!(c.psql(db, "SELECT x FROM t").unwrap().trim(), "7");
        let dir = c.socket_dir().to_owned();
        let port = c.port();
        drop(c);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "postgres still listening on {port}"
        );
    }
}
