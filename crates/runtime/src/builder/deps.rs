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
fn normalize_requirements(text: &str) -> Vec<String> {
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
