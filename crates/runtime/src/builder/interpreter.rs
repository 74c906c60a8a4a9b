//! Finding the Python interpreter for a `PYTHON_3_X` runtime.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::process::Command;

use super::{BuildError, fsx};

/// Where interpreters are looked for, in this order: each directory of [`path`](Self::path), then
/// `<pyenv_root>/versions/3.X.*/bin` (newest patch release first), then [`system`](Self::system).
/// Every candidate is run once to check that it really is Python 3.X; the first that is (and, when
/// agents run as another user, that this user can execute) is used. A missing interpreter is an
/// error: another minor version is never substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpreterSearch {
    /// Directories searched first (default: the entries of `PATH`).
    pub path: Vec<PathBuf>,
    /// A pyenv installation searched next (default: `$PYENV_ROOT`, else `~/.pyenv`).
    pub pyenv_root: Option<PathBuf>,
    /// Directories searched last (default: `/usr/bin`, `/usr/local/bin`).
    pub system: Vec<PathBuf>,
}

impl InterpreterSearch {
    /// The defaults, read from this process's environment (`PATH`, `PYENV_ROOT`, `HOME`).
    pub fn from_env() -> Self {
        let path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let pyenv_root = std::env::var_os("PYENV_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".pyenv"))
            });
        Self {
            path,
            pyenv_root,
            system: vec![PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")],
        }
    }
}

/// A verified interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpreter {
    /// The real executable (`sys.executable`, canonicalised), never a pyenv shim.
    pub executable: PathBuf,
    /// The full version, e.g. `3.11.2`.
    pub version: String,
    /// `sys.base_prefix`, where its standard library lives.
    pub base_prefix: PathBuf,
}

/// Interpreters found so far, by minor version. Probing runs every candidate (a pyenv shim costs
/// ~100 ms), so a hit skips it as long as the chosen executable is the same file as when it was
/// probed; an interpreter installed later earlier in the search order is noticed after a restart.
#[derive(Debug, Default)]
pub(crate) struct Found(Mutex<HashMap<u32, (Interpreter, Stamp)>>);

/// Identity and version of a file: device, inode, size, modification time.
type Stamp = (u64, u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

impl Found {
    /// [`find`], remembering the answer.
    pub async fn find(
        &self,
        search: &InterpreterSearch,
        runtime: &str,
        minor: u32,
        for_other_user: bool,
    ) -> Result<Interpreter, BuildError> {
        let cached = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&minor)
            .cloned();
        if let Some((interp, seen)) = cached
            && stamp(&interp.executable) == Some(seen)
        {
            return Ok(interp);
        }
        let interp = find(search, runtime, minor, for_other_user).await?;
        if let Some(seen) = stamp(&interp.executable) {
            // Poisoning cannot leave a map of plain values inconsistent.
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(minor, (interp.clone(), seen));
        }
        Ok(interp)
    }
}

/// The minor version of a `PYTHON_3_<minor>` runtime. Which minors are allowed is the control
/// plane's business; here any number is accepted so that an unavailable one fails with a clear
/// "interpreter not found".
pub(crate) fn parse_runtime(runtime: &str) -> Result<u32, BuildError> {
    if runtime.starts_with("NODE_") {
        return Err(BuildError::UnsupportedRuntime(runtime.to_owned()));
    }
    runtime
        .strip_prefix("PYTHON_3_")
        .filter(|m| !m.is_empty() && m.len() <= 3 && m.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| BuildError::InvalidRuntime(runtime.to_owned()))
}

/// How long checking one candidate may take (a pyenv shim runs a shell script first).
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Prints `<version>\n<executable>\n<base prefix>`.
const PROBE: &str = "import sys; print(sys.version.split()[0]); print(sys.version_info[0], sys.version_info[1]); \
                     print(sys.executable); print(sys.base_prefix)";

/// Finds a working `python3.<minor>`. With `for_other_user`, candidates that another user could not
/// execute (e.g. a pyenv under a `0700` home) are skipped, because the agent runs as nobody.
pub(crate) async fn find(
    search: &InterpreterSearch,
    runtime: &str,
    minor: u32,
    for_other_user: bool,
) -> Result<Interpreter, BuildError> {
    let program = format!("python3.{minor}");
    let search_owned = search.clone();
    let program_owned = program.clone();
    let candidates =
        tokio::task::spawn_blocking(move || candidates(&search_owned, &program_owned, minor))
            .await
            .map_err(|e| BuildError::io("listing python interpreters", std::io::Error::other(e)))?;

    let mut rejected = Vec::new();
    let mut seen = HashSet::new();
    for candidate in candidates {
        let interp = match probe(&candidate, minor).await {
            Ok(i) => i,
            Err(why) => {
                rejected.push(format!("{} ({why})", candidate.display()));
                continue;
            }
        };
        if !seen.insert(interp.executable.clone()) {
            continue;
        }
        if for_other_user && let Some(problem) = other_user_problem(&interp, minor) {
            rejected.push(format!(
                "{} (not usable by the unprivileged agent user: {problem})",
                interp.executable.display()
            ));
            continue;
        }
        tracing::debug!(program, executable = %interp.executable.display(), version = interp.version, "python interpreter found");
        return Ok(interp);
    }

    let mut places = Vec::new();
    if !search.path.is_empty() {
        places.push(format!("PATH ({})", join_paths(&search.path)));
    }
    if let Some(root) = &search.pyenv_root {
        places.push(format!("{}/versions/3.{minor}.*/bin", root.display()));
    }
    if !search.system.is_empty() {
        places.push(join_paths(&search.system));
    }
    let mut searched = if places.is_empty() {
        "nothing (the search list is empty)".to_owned()
    } else {
        places.join(", ")
    };
    if !rejected.is_empty() {
        searched.push_str("; rejected: ");
        searched.push_str(&rejected.join(", "));
    }
    Err(BuildError::InterpreterNotFound {
        runtime: runtime.to_owned(),
        program,
        minor,
        searched,
    })
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Every existing executable named `program` in search order, without duplicates.
fn candidates(search: &InterpreterSearch, program: &str, minor: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if is_executable_file(&p) && !out.contains(&p) {
            out.push(p);
        }
    };
    for dir in &search.path {
        if dir.is_absolute() {
            push(dir.join(program));
        }
    }
    if let Some(root) = &search.pyenv_root {
        for version in pyenv_versions(&root.join("versions"), minor) {
            push(
                root.join("versions")
                    .join(version)
                    .join("bin")
                    .join(program),
            );
        }
    }
    for dir in &search.system {
        push(dir.join(program));
    }
    out
}

/// pyenv version directories for `3.<minor>` (`3.12`, `3.12.4`, `3.12.0rc1`), newest first.
fn pyenv_versions(versions_dir: &Path, minor: u32) -> Vec<OsString> {
    let Ok(entries) = std::fs::read_dir(versions_dir) else {
        return Vec::new();
    };
    let exact = format!("3.{minor}");
    let prefix = format!("3.{minor}.");
    let mut found: Vec<(Vec<u64>, OsString)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let s = name.to_str()?;
            if s != exact && !s.starts_with(&prefix) {
                return None;
            }
            // Sort key: the numeric parts, so 3.12.10 sorts after 3.12.9.
            let key = s
                .split(|c: char| !c.is_ascii_digit())
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.parse().ok())
                .collect();
            Some((key, name))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, n)| n).collect()
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the candidate and checks it reports 3.<minor>.
async fn probe(candidate: &Path, minor: u32) -> Result<Interpreter, String> {
    let mut cmd = Command::new(candidate);
    cmd.arg("-c")
        .arg(PROBE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    super::env::scrub_python_env(&mut cmd);
    let output = match tokio::time::timeout(PROBE_TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run: {e}")),
        Err(_) => {
            return Err(format!(
                "did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
    };
    if !output.status.success() {
        return Err(format!("{}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let (Some(version), Some(info), Some(executable), Some(base_prefix)) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err("unexpected output".to_owned());
    };
    if info.trim() != format!("3 {minor}") {
        return Err(format!("it is Python {}", version.trim()));
    }
    let executable = if executable.trim().is_empty() {
        candidate.to_path_buf()
    } else {
        PathBuf::from(executable.trim())
    };
    let executable = std::fs::canonicalize(&executable)
        .map_err(|e| format!("cannot resolve {}: {e}", executable.display()))?;
    Ok(Interpreter {
        executable,
        version: version.trim().to_owned(),
        base_prefix: PathBuf::from(base_prefix.trim()),
    })
}

/// Why an unprivileged user could not run this interpreter, if it could not: the binary and the
/// standard library directory must be reachable.
fn other_user_problem(interp: &Interpreter, minor: u32) -> Option<String> {
    fsx::others_access_problem(&interp.executable, 0o1).or_else(|| {
        let stdlib = interp
            .base_prefix
            .join("lib")
            .join(format!("python3.{minor}"));
        let stdlib = std::fs::canonicalize(&stdlib).unwrap_or(stdlib);
        fsx::others_access_problem(&stdlib, 0o5)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runtimes() {
        assert_eq!(parse_runtime("PYTHON_3_11").unwrap(), 11);
        assert_eq!(parse_runtime("PYTHON_3_99").unwrap(), 99);
        assert!(matches!(
            parse_runtime("NODE_22"),
            Err(BuildError::UnsupportedRuntime(_))
        ));
        assert_eq!(
            parse_runtime("NODE_22").unwrap_err().to_string(),
            "NODE_22 runtimes are not supported yet"
        );
        assert!(matches!(
            parse_runtime("PYTHON_2_7"),
            Err(BuildError::InvalidRuntime(_))
        ));
        assert!(matches!(
            parse_runtime("PYTHON_3_"),
            Err(BuildError::InvalidRuntime(_))
        ));
        assert!(matches!(
            parse_runtime("PYTHON_3_1x"),
            Err(BuildError::InvalidRuntime(_))
        ));
    }

    #[test]
    fn pyenv_versions_sorted_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        for v in [
            "3.12.9",
            "3.12.10",
            "3.12",
            "3.120.1",
            "3.1.2",
            "3.12.0rc1",
            "system",
        ] {
            std::fs::create_dir(tmp.path().join(v)).unwrap();
        }
        let got: Vec<_> = pyenv_versions(tmp.path(), 12)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(got, ["3.12.10", "3.12.9", "3.12.0rc1", "3.12"]);
    }
}
