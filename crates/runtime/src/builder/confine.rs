//! The build sandbox: venv and pip run inside a [`Sandbox`] made by the same machinery as sessions.
//!
//! A build step runs as a build uid of its own (allocated per build from
//! [`BuildSandbox::uid_base`], never an agent's), with an environment built from an allow-list (no
//! `BERTH_*`, `AWS_*` or anything else of Berth's own), the host read-only or masked (the build root
//! and [`BuildSandbox::hidden`], normally the data dir, are masked; only the package's code is
//! bound back read-only), the target environment directory bound read-write at its final path (a
//! venv embeds it), `/tmp` and `HOME` (pip's cache) private to the step, cgroup limits, and network
//! only through the egress proxy in allow-only mode: the package indexes of the host's pip
//! configuration plus the operator's `--egress-allow` entries. When it succeeds the environment is
//! handed to root (`lchown`, no set-id bits, no group or other write), so neither the build uid nor
//! agents can change it afterwards.
//!
//! The pip cache is private to the build on purpose: a shared writable cache would let one tenant's
//! `setup.py` plant wheels another tenant's build installs. The cost is a download per cold build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ini::Ini;

use crate::sandbox::{EgressRule, Isolation, Limits, RunAs};

/// pip's settings passed from Berth's environment or pip configuration into a build: where
/// packages come from and how to reach them, nothing that moves the installation elsewhere.
const PIP_SETTINGS: [&str; 12] = [
    "index-url",
    "extra-index-url",
    "find-links",
    "trusted-host",
    "cert",
    "client-cert",
    "timeout",
    "default-timeout",
    "retries",
    "prefer-binary",
    "only-binary",
    "no-binary",
];

/// Variables of Berth's own environment a build may see (TLS trust and locale).
const PASSED_VARS: [&str; 5] = [
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "LANG",
    "LC_ALL",
];

/// The default index when nothing configures one.
const PYPI: &str = "https://pypi.org/simple";

/// How builds are confined. See the module docs.
#[derive(Debug, Clone)]
pub struct BuildSandbox {
    /// Namespaces (default) or plain processes, as for sessions (`berth serve --isolation`).
    pub isolation: Isolation,
    /// Host directories masked in the build sandbox in addition to the build root (Berth passes its
    /// data directory: the database and the root secret must be unreadable).
    pub hidden: Vec<PathBuf>,
    /// cgroup limits of one build step. Default: 4 GiB of memory, 1024 tasks.
    pub limits: Limits,
    /// Destinations builds may reach besides the package indexes (the operator's `--egress-allow`).
    pub egress_allow: Vec<EgressRule>,
    /// First uid (and gid) of the range builds run as; one per concurrent build.
    pub uid_base: u32,
    /// Size of that range: how many builds may run at once.
    pub uid_count: u32,
}

impl Default for BuildSandbox {
    fn default() -> Self {
        Self {
            isolation: Isolation::Namespaces,
            hidden: Vec::new(),
            limits: Limits {
                memory_bytes: Some(4 << 30),
                pids: Some(1024),
                cpu_millis: None,
            },
            egress_allow: Vec::new(),
            // Below the agents' range (sessions allocate from 1 000 000) and far above normal users.
            uid_base: 900_000,
            uid_count: 4096,
        }
    }
}

/// Build uids in use.
#[derive(Debug, Default)]
pub(crate) struct UidPool {
    used: Mutex<BTreeSet<u32>>,
}

/// A build uid, given back when dropped.
#[derive(Debug)]
pub(crate) struct BuildUid {
    pub(crate) uid: u32,
    /// Berth's own uid, not one of the range: a server that is not root cannot switch to another
    /// uid, so its builds run as itself (the environment is then not handed to root either).
    pub(crate) own: bool,
    pool: Arc<UidPool>,
}

impl Drop for BuildUid {
    fn drop(&mut self) {
        if self.own {
            return;
        }
        self.pool
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.uid);
    }
}

impl BuildUid {
    pub(crate) fn run_as(&self) -> RunAs {
        RunAs::Fixed {
            uid: self.uid,
            gid: self.uid,
        }
    }
}

impl UidPool {
    /// The pool of this process: builders over different roots must not hand out the same uid.
    pub(crate) fn process_wide() -> Arc<Self> {
        static POOL: std::sync::LazyLock<Arc<UidPool>> = std::sync::LazyLock::new(Arc::default);
        POOL.clone()
    }

    /// As root, a free uid of the range (`None` when every one is taken); otherwise Berth's own.
    pub(crate) fn take(self: &Arc<Self>, base: u32, count: u32) -> Option<BuildUid> {
        let own = crate::sandbox::effective_uid();
        if own != 0 {
            return Some(BuildUid {
                uid: own,
                own: true,
                pool: self.clone(),
            });
        }
        self.take_from_range(base, count)
    }

    /// The lowest free uid of the range, or `None` when every one is taken.
    fn take_from_range(self: &Arc<Self>, base: u32, count: u32) -> Option<BuildUid> {
        // Poisoning cannot leave a set of integers inconsistent.
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let uid = (base..base.saturating_add(count)).find(|u| !used.contains(u))?;
        used.insert(uid);
        Some(BuildUid {
            uid,
            own: false,
            pool: self.clone(),
        })
    }
}

/// Where a build's packages come from, as the host's pip would see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PipSource {
    /// `PIP_*` variables for the build: the effective settings of Berth's environment and pip
    /// configuration files (the sandbox has another `HOME`, so root's user configuration would be
    /// lost otherwise).
    pub env: Vec<(String, String)>,
    /// Host names of the package indexes and find-links URLs (lowercase).
    pub hosts: Vec<String>,
    /// Local find-links directories, kept visible read-only in the sandbox.
    pub local_dirs: Vec<PathBuf>,
}

impl PipSource {
    /// Reads the host's pip configuration the way pip does (later files win, `[install]` over
    /// `[global]`, `PIP_*` variables over files), then `pip_args` (`--index-url x` and the like).
    pub(crate) fn discover(pip_args: &[String]) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut files: Vec<PathBuf> = vec!["/etc/xdg/pip/pip.conf".into(), "/etc/pip.conf".into()];
        if let Some(home) = var("HOME") {
            files.push(Path::new(&home).join(".pip/pip.conf"));
            files.push(Path::new(&home).join(".config/pip/pip.conf"));
        }
        if let Some(file) = var("PIP_CONFIG_FILE") {
            files.push(file.into());
        }
        let mut settings: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| match settings.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => settings.push((k.to_owned(), v)),
        };
        for file in files {
            let Ok(conf) = Ini::load_from_file(&file) else {
                continue;
            };
            for section in ["global", "install"] {
                let Some(props) = conf.section(Some(section)) else {
                    continue;
                };
                for (k, v) in props.iter() {
                    let k = k.replace('_', "-");
                    if PIP_SETTINGS.contains(&k.as_str()) {
                        set(&k, v.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                }
            }
        }
        for key in PIP_SETTINGS {
            if let Some(v) = var(&env_name(key)) {
                set(key, v);
            }
        }
        let mut args = pip_args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            let key = match name {
                "-i" | "--index-url" => "index-url",
                "--extra-index-url" => "extra-index-url",
                "-f" | "--find-links" => "find-links",
                "--trusted-host" => "trusted-host",
                _ => continue,
            };
            if let Some(v) = inline.or_else(|| args.next().cloned()) {
                set(key, v);
            }
        }

        let mut out = Self::default();
        let index = settings
            .iter()
            .find(|(k, _)| k == "index-url")
            .map_or(PYPI.to_owned(), |(_, v)| v.clone());
        let mut urls = vec![index];
        for (k, v) in &settings {
            if k == "extra-index-url" || k == "find-links" {
                urls.extend(v.split_whitespace().map(str::to_owned));
            }
            out.env.push((env_name(k), v.clone()));
        }
        for url in urls {
            match url_host(&url) {
                Some(host) => {
                    if host == "pypi.org" {
                        // PyPI serves its files from another host.
                        out.hosts.push("files.pythonhosted.org".into());
                    }
                    out.hosts.push(host);
                }
                None => {
                    let path = url.strip_prefix("file://").unwrap_or(&url);
                    if Path::new(path).is_absolute() && Path::new(path).is_dir() {
                        out.local_dirs.push(PathBuf::from(path));
                    }
                }
            }
        }
        out.hosts.sort();
        out.hosts.dedup();
        out
    }
}

/// The environment of a build step: the allow-listed variables of Berth's own environment, pip's
/// settings, and what makes pip and Python stay inside the environment being built.
pub(crate) fn build_env(source: &PipSource) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PASSED_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.extend(source.env.iter().cloned());
    env.extend(
        [
            // Bytecode is written on purpose: pip compiles the environment's modules once here,
            // since agents find it read-only and would otherwise compile them at every start.
            ("PYTHONNOUSERSITE", "1"),
            ("PIP_NO_INPUT", "1"),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
            // Berth's own settings above are the configuration; files in the sandbox are not.
            ("PIP_CONFIG_FILE", "/dev/null"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

fn env_name(key: &str) -> String {
    format!("PIP_{}", key.replace('-', "_").to_ascii_uppercase())
}

/// The lowercase host of an `http(s)://` URL.
fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    uri.host().map(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_unique_and_given_back() {
        let pool = Arc::new(UidPool::default());
        let a = pool.take_from_range(10, 2).unwrap();
        let b = pool.take_from_range(10, 2).unwrap();
        assert_eq!((a.uid, b.uid), (10, 11));
        assert!(pool.take_from_range(10, 2).is_none());
        drop(a);
        assert_eq!(pool.take_from_range(10, 2).unwrap().uid, 10);
    }

    #[test]
    fn pip_args_name_the_indexes() {
        let s = PipSource::discover(&[
            "--index-url=https://Mirror.Example/simple".into(),
            "--extra-index-url".into(),
            "http://10.1.2.3:8080/simple".into(),
            "--no-deps".into(),
        ]);
        assert!(s.hosts.contains(&"mirror.example".to_owned()), "{s:?}");
        assert!(s.hosts.contains(&"10.1.2.3".to_owned()), "{s:?}");
        assert!(
            s.env.contains(&(
                "PIP_INDEX_URL".into(),
                "https://Mirror.Example/simple".into()
            )),
            "{s:?}"
        );
        let env = build_env(&s);
        assert!(
            env.iter()
                .all(|(k, _)| !k.starts_with("BERTH_") && !k.starts_with("AWS_"))
        );
    }

    #[test]
    fn default_index_is_pypi_with_its_file_host() {
        assert_eq!(
            url_host("https://pypi.org/simple").as_deref(),
            Some("pypi.org")
        );
        assert_eq!(url_host("/opt/wheels"), None);
        assert_eq!(
            url_host("https://[fd00::1]:3141/x").as_deref(),
            Some("fd00::1")
        );
    }
}
