//! What a code package depends on, and the cache key of the environment that satisfies it.

use sha2::{Digest, Sha256};

use super::BuildError;
use super::interpreter::Interpreter;

/// Largest dependency file read (a requirements file is a few KB; anything bigger is a mistake).
pub(crate) const MAX_DEP_FILE: u64 = 1024 * 1024;

/// Where the dependencies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// No dependency file: an environment without packages.
    None,
    /// `requirements.txt` at the package root, installed with `pip install -r`.
    Requirements,
    /// `[project].dependencies` of `pyproject.toml`; the project itself is not built.
    Pyproject,
}

/// The dependencies of one code package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deps {
    pub source: Source,
    /// Requirement lines, normalised: comments, blank lines and continuations removed.
    pub lines: Vec<String>,
    /// The requirements refer to files of the package (`-r other.txt`, `./vendor/x.whl`, `-e .`), so
    /// the environment depends on the package content and is not shared with other packages.
    pub local_refs: bool,
}

impl Deps {
    /// Whether pip has anything to install.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Reads the dependency declaration of a package: `requirements.txt` wins over `pyproject.toml`
    /// (the starter toolkit prefers it too), neither means no dependencies.
    pub fn from_files(
        requirements: Option<&str>,
        pyproject: Option<&str>,
    ) -> Result<Self, BuildError> {
        if let Some(text) = requirements {
            let lines = normalize_requirements(text);
            let local_refs = lines.iter().any(|l| is_local_ref(l));
            return Ok(Self {
                source: Source::Requirements,
                lines,
                local_refs,
            });
        }
        if let Some(text) = pyproject {
            let lines = pyproject_dependencies(text)?;
            let local_refs = lines.iter().any(|l| is_local_ref(l));
            return Ok(Self {
                source: Source::Pyproject,
                lines,
                local_refs,
            });
        }
        Ok(Self {
            source: Source::None,
            lines: Vec::new(),
            local_refs: false,
        })
    }

    /// The environment directory name: `python3.<minor>-<32 hex digits>`, a hash over everything that
    /// decides what ends up in the environment: the interpreter (path and exact version, since a
    /// venv is bound to both), pip's extra arguments, and the normalised requirements (plus the code
    /// digest when they refer to files of the package).
    pub fn env_key(
        &self,
        interp: &Interpreter,
        minor: u32,
        pip_args: &[String],
        code_hex: &str,
    ) -> String {
        let mut h = Sha256::new();
        let mut field = |tag: &str, value: &str| {
            h.update(tag.as_bytes());
            h.update(b"\0");
            h.update(value.as_bytes());
            h.update(b"\n");
        };
        field("berth-env", "1");
        field("interpreter", &interp.executable.to_string_lossy());
        field("version", &interp.version);
        for arg in pip_args {
            field("pip-arg", arg);
        }
        let source = match self.source {
            Source::None => "none",
            Source::Requirements => "requirements.txt",
            Source::Pyproject => "pyproject.toml",
        };
        field("source", source);
        for line in &self.lines {
            field("req", line);
        }
        if self.local_refs {
            field("code", code_hex);
        }
        let digest = hex::encode(h.finalize());
        format!("python3.{minor}-{}", &digest[..32])
    }
}

/// Joins `\` continuations, drops comments (`#` at the start or after whitespace, as pip does) and
/// blank lines, trims, keeps order.
pub(crate) fn normalize_requirements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        push_requirement(&mut out, &pending);
        pending.clear();
    }
    push_requirement(&mut out, &pending);
    out
}

fn push_requirement(out: &mut Vec<String>, line: &str) {
    let without_comment = match line.find('#') {
        Some(0) => "",
        Some(i) if line[..i].ends_with(char::is_whitespace) => &line[..i],
        _ => line,
    };
    let cleaned = without_comment
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if !cleaned.is_empty() {
        out.push(cleaned);
    }
}

/// Whether a requirement line refers to a file or directory of the package.
fn is_local_ref(line: &str) -> bool {
    const FILE_OPTIONS: [&str; 8] = [
        "-r",
        "--requirement",
        "-c",
        "--constraint",
        "-e",
        "--editable",
        "-f",
        "--find-links",
    ];
    let first = line.split([' ', '=']).next().unwrap_or("");
    if FILE_OPTIONS.contains(&first) {
        let rest = line[first.len()..].trim_start_matches([' ', '=']);
        return !rest.contains("://") || rest.starts_with("file:");
    }
    line.starts_with('.')
        || line.contains("file:")
        || ((line.contains('/') || line.contains('\\')) && !line.contains("://"))
}

/// Options whose value is a requirements or constraints file pip reads.
const FILE_LIST_OPTIONS: [&str; 4] = ["-r", "--requirement", "-c", "--constraint"];
/// Options whose value is where packages come from.
const SOURCE_OPTIONS: [&str; 6] = [
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
];

/// Checks that requirement lines stay inside the package and reach only allowed hosts, before pip
/// runs. `allowed_host` says whether a host name (without port) may be reached. Returns the
/// package-relative requirement and constraint files the lines include, for the caller to check in
/// turn (they are read by pip from the package too).
pub(crate) fn check_reach(
    file: &str,
    lines: &[String],
    allowed_host: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, BuildError> {
    let refuse = |line: &str, why: String| {
        Err(BuildError::Dependencies(format!(
            "{file}: the line {line:?} {why}; requirements may only refer to files inside the code \
             package and to the package indexes the operator allows"
        )))
    };
    let mut included = Vec::new();
    for line in lines {
        let (option, value) = split_option(line);
        if let Some(option) = option {
            let value = value.unwrap_or_default();
            if FILE_LIST_OPTIONS.contains(&option) {
                match classify(&value) {
                    Target::Url(host) if allowed_host(&host) => {}
                    Target::Url(host) => {
                        return refuse(
                            line,
                            format!("reads from {host}, which is not an allowed package index"),
                        );
                    }
                    Target::File => return refuse(line, "uses a file: URL".into()),
                    Target::Outside => {
                        return refuse(line, "names a path outside the code package".into());
                    }
                    Target::Inside => included.push(value),
                }
            } else if option == "--trusted-host" {
                let host = value.rsplit_once(':').map_or(value.as_str(), |(h, p)| {
                    if p.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        value.as_str()
                    }
                });
                if !allowed_host(&host.to_ascii_lowercase()) {
                    return refuse(
                        line,
                        format!("trusts {host}, which is not an allowed package index"),
                    );
                }
            } else if SOURCE_OPTIONS.contains(&option) || matches!(option, "-e" | "--editable") {
                match classify(&value) {
                    Target::Url(host) if allowed_host(&host) => {}
                    Target::Url(host) => {
                        return refuse(
                            line,
                            format!("reaches {host}, which is not an allowed package index"),
                        );
                    }
                    Target::File => return refuse(line, "uses a file: URL".into()),
                    Target::Outside => {
                        return refuse(line, "names a path outside the code package".into());
                    }
                    Target::Inside => {}
                }
            }
            continue;
        }
        // A requirement: `name[extras] @ url`, a URL, a path, or a plain specifier.
        let spec = line.split(';').next().unwrap_or("").trim();
        let spec = spec.split(" --").next().unwrap_or(spec).trim();
        let target = match spec.split_once('@') {
            Some((_, url)) if !spec.contains("://") || url.contains("://") => url.trim(),
            _ => spec,
        };
        if target.to_ascii_lowercase().contains("file:") {
            return refuse(line, "uses a file: URL".into());
        }
        let looks_like_path = target.starts_with('.')
            || target.starts_with('/')
            || target.starts_with('~')
            || target.contains('/')
            || target.contains('\\');
        if target.contains("://") || looks_like_path {
            match classify(target) {
                Target::Url(host) if allowed_host(&host) => {}
                Target::Url(host) => {
                    return refuse(
                        line,
                        format!("downloads from {host}, which is not an allowed package index"),
                    );
                }
                Target::File => return refuse(line, "uses a file: URL".into()),
                Target::Outside => {
                    return refuse(line, "names a path outside the code package".into());
                }
                Target::Inside => {}
            }
        }
    }
    Ok(included)
}

/// `(Some(option), value)` for an option line (`-r x`, `-rx`, `--requirement=x`), else `(None, None)`.
fn split_option(line: &str) -> (Option<&'static str>, Option<String>) {
    if !line.starts_with('-') {
        return (None, None);
    }
    let all = FILE_LIST_OPTIONS
        .iter()
        .chain(SOURCE_OPTIONS.iter())
        .chain(["-e", "--editable"].iter());
    for &opt in all {
        let Some(rest) = line.strip_prefix(opt) else {
            continue;
        };
        let value = if opt.starts_with("--") {
            match rest.chars().next() {
                Some('=') | Some(' ') => rest[1..].trim(),
                None => "",
                _ => continue,
            }
        } else {
            rest.trim_start_matches('=').trim()
        };
        // A value is one token; trailing options (`--hash`) belong to the line, not the value.
        let value = value.split_whitespace().next().unwrap_or("");
        return (Some(opt), Some(value.to_owned()));
    }
    // Another option (`--pre`, `--hash`, `--no-binary`): nothing to reach.
    (Some("--other"), None)
}

/// Where a path or URL points.
enum Target {
    /// A network URL on this host (lowercase, without port or credentials).
    Url(String),
    /// A `file:` URL.
    File,
    /// An absolute path, a home-relative path, or one climbing out with `..`.
    Outside,
    /// A relative path inside the package.
    Inside,
}

fn classify(value: &str) -> Target {
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("file:") {
        return Target::File;
    }
    if let Some((scheme, rest)) = value.split_once("://") {
        let _ = scheme;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = host_port.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            host_port.split(':').next().unwrap_or("")
        };
        return Target::Url(host.to_ascii_lowercase());
    }
    let path = std::path::Path::new(value);
    if value.starts_with('~')
        || path.is_absolute()
        || path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Target::Outside;
    }
    Target::Inside
}

/// `[project].dependencies`, refusing declarations Berth would silently get wrong.
fn pyproject_dependencies(text: &str) -> Result<Vec<String>, BuildError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| {
        BuildError::Dependencies(format!("pyproject.toml is not valid TOML: {}", e.message()))
    })?;
    let Some(project) = doc.get("project") else {
        let poetry = doc.get("tool").and_then(|t| t.get("poetry")).is_some();
        if poetry {
            return Err(BuildError::Dependencies(
                "pyproject.toml declares dependencies under [tool.poetry], which Berth does not read: \
                 list them in [project].dependencies or in a requirements.txt"
                    .into(),
            ));
        }
        return Ok(Vec::new());
    };
    let project = project.as_table().ok_or_else(|| {
        BuildError::Dependencies("[project] in pyproject.toml is not a table".into())
    })?;
    let dynamic = project.get("dynamic").and_then(|d| d.as_array());
    if dynamic.is_some_and(|d| d.iter().any(|v| v.as_str() == Some("dependencies"))) {
        return Err(BuildError::Dependencies(
            "pyproject.toml declares its dependencies as dynamic, which Berth cannot resolve without \
             building the project: list them in [project].dependencies or in a requirements.txt"
                .into(),
        ));
    }
    let Some(deps) = project.get("dependencies") else {
        return Ok(Vec::new());
    };
    let deps = deps.as_array().ok_or_else(|| {
        BuildError::Dependencies(
            "[project].dependencies in pyproject.toml must be an array of strings".into(),
        )
    })?;
    deps.iter()
        .map(|d| {
            d.as_str().map(|s| s.trim().to_owned()).ok_or_else(|| {
                BuildError::Dependencies(format!(
                    "[project].dependencies in pyproject.toml must be an array of strings, found {d}"
                ))
            })
        })
        .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn interp() -> Interpreter {
        Interpreter {
            executable: PathBuf::from("/usr/bin/python3.11"),
            version: "3.11.2".into(),
            base_prefix: PathBuf::from("/usr"),
        }
    }

    #[test]
    fn requirements_are_normalized() {
        let text = "# top\r\nsix==1.16.0  # pinned\r\n\r\nrequests \\\n  >=2\nurl#frag==1\n   \n";
        let d = Deps::from_files(Some(text), None).unwrap();
        assert_eq!(d.lines, ["six==1.16.0", "requests >=2", "url#frag==1"]);
        assert!(!d.local_refs);
        let same = Deps::from_files(Some("six==1.16.0\nrequests >=2\nurl#frag==1"), None).unwrap();
        assert_eq!(
            d.env_key(&interp(), 11, &[], "aa"),
            same.env_key(&interp(), 11, &[], "bb")
        );
    }

    #[test]
    fn key_depends_on_what_matters() {
        let d = Deps::from_files(Some("six"), None).unwrap();
        let base = d.env_key(&interp(), 11, &[], "aa");
        assert!(base.starts_with("python3.11-") && base.len() == "python3.11-".len() + 32);
        let mut other = interp();
        other.version = "3.11.9".into();
        assert_ne!(base, d.env_key(&other, 11, &[], "aa"));
        assert_ne!(
            base,
            d.env_key(&interp(), 11, &["--index-url=x".into()], "aa")
        );
        let none = Deps::from_files(None, None).unwrap();
        assert!(none.is_empty());
        assert_ne!(base, none.env_key(&interp(), 11, &[], "aa"));
        assert_eq!(
            none.env_key(&interp(), 11, &[], "aa"),
            none.env_key(&interp(), 11, &[], "bb")
        );
    }

    #[test]
    fn local_references_tie_the_env_to_the_code() {
        for line in [
            "-r base.txt",
            "-e .",
            "./wheels/x.whl",
            "--find-links=wheels/",
            "pkg @ file:///x",
            "libs/x",
        ] {
            let d = Deps::from_files(Some(line), None).unwrap();
            assert!(d.local_refs, "{line}");
            assert_ne!(
                d.env_key(&interp(), 11, &[], "aa"),
                d.env_key(&interp(), 11, &[], "bb"),
                "{line}"
            );
        }
        for line in [
            "six==1.16",
            "pkg @ https://example.com/x.whl",
            "--index-url https://pypi.org/simple",
            "-f https://x/y",
        ] {
            assert!(
                !Deps::from_files(Some(line), None).unwrap().local_refs,
                "{line}"
            );
        }
    }

    fn reach(line: &str) -> Result<Vec<String>, BuildError> {
        let allowed = |h: &str| h == "pypi.org" || h == "mirror.internal";
        check_reach("requirements.txt", &normalize_requirements(line), &allowed)
    }

    #[test]
    fn lines_reaching_outside_the_package_are_refused() {
        for (line, why) in [
            ("-r /root-only-file", "outside the code package"),
            ("-r../x.txt", "outside the code package"),
            ("--requirement=sub/../../x", "outside the code package"),
            ("-c /etc/shadow", "outside the code package"),
            ("--constraint file:///etc/shadow", "file: URL"),
            ("-e /opt/host/pkg", "outside the code package"),
            ("--editable=~/pkg", "outside the code package"),
            ("-e file:///opt/x#egg=x", "file: URL"),
            ("pkg @ file:///etc/x", "file: URL"),
            (
                "/opt/wheels/x-1-py3-none-any.whl",
                "outside the code package",
            ),
            ("../sibling", "outside the code package"),
            ("--index-url https://evil.example/simple", "evil.example"),
            (
                "-i https://user:pw@evil.example:8443/simple",
                "evil.example",
            ),
            ("--extra-index-url=http://10.0.0.1/simple", "10.0.0.1"),
            ("-f https://evil.example/wheels/", "evil.example"),
            ("--find-links /opt/wheels", "outside the code package"),
            ("--trusted-host evil.example:8080", "evil.example"),
            ("pkg @ https://evil.example/pkg.whl", "evil.example"),
            ("-r https://evil.example/req.txt", "evil.example"),
        ] {
            let err = reach(line).expect_err(line).to_string();
            assert!(err.contains(why), "{line}: {err}");
            assert!(
                err.starts_with("invalid dependency declaration: requirements.txt: the line"),
                "{err}"
            );
        }
    }

    #[test]
    fn lines_inside_the_package_or_to_allowed_indexes_pass() {
        for line in [
            "six==1.16.0",
            "requests[socks]>=2 ; python_version >= '3.8'",
            "./pkg",
            "pkg/sub",
            "-e .",
            "--find-links wheels/",
            "-i https://mirror.internal/simple",
            "--extra-index-url https://pypi.org/simple",
            "--trusted-host mirror.internal:8443",
            "x @ https://pypi.org/x.whl",
            "--pre",
            "six --hash=sha256:abc",
            "--only-binary :all:",
        ] {
            assert!(reach(line).unwrap().is_empty(), "{line}");
        }
        assert_eq!(
            reach("-r base.txt\n-c ./c.txt").unwrap(),
            ["base.txt", "./c.txt"]
        );
    }

    #[test]
    fn pyproject_dependencies_only() {
        let text = "[project]\nname = \"a\"\ndependencies = [\"six==1.16.0\", \" attrs \"]\n[build-system]\nrequires = [\"hatchling\"]\n";
        let d = Deps::from_files(None, Some(text)).unwrap();
        assert_eq!(d.source, Source::Pyproject);
        assert_eq!(d.lines, ["six==1.16.0", "attrs"]);
        assert!(
            Deps::from_files(None, Some("[tool.ruff]\nline-length = 1\n"))
                .unwrap()
                .is_empty()
        );
        assert!(
            Deps::from_files(None, Some("[project]\nname = \"a\"\n"))
                .unwrap()
                .is_empty()
        );
        let err =
            Deps::from_files(None, Some("[tool.poetry.dependencies]\nsix = \"*\"\n")).unwrap_err();
        assert!(err.to_string().contains("[tool.poetry]"), "{err}");
        let err =
            Deps::from_files(None, Some("[project]\ndynamic = [\"dependencies\"]\n")).unwrap_err();
        assert!(err.to_string().contains("dynamic"), "{err}");
        let err = Deps::from_files(None, Some("[project]\ndependencies = [1]\n")).unwrap_err();
        assert!(err.to_string().contains("array of strings"), "{err}");
        let err = Deps::from_files(None, Some("[project\n")).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
        // requirements.txt wins when both exist.
        let d = Deps::from_files(Some("six"), Some(text)).unwrap();
        assert_eq!(d.source, Source::Requirements);
    }
}
