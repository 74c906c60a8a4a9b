//! Turning an AgentCore `entryPoint` into the agent's command line.
//!
//! Accepted forms (paths are relative to the package root):
//! - `["agent.py"]` or `["src/agent.py", "arg"]`: `python <code>/agent.py [arg]`;
//! - `["agent"]` or `["pkg.main", "arg"]` (a module name, no `.py`): `python -m agent [arg]`; the
//!   module must be in the package (`agent.py` or `agent/__main__.py`);
//! - `["opentelemetry-instrument", "agent.py"]` (what the starter toolkit sends for direct code
//!   deploy with observability): a program installed in the environment's `bin/` wrapping the
//!   second element, `<env>/bin/opentelemetry-instrument <env>/bin/python <code>/agent.py`.

use std::path::{Path, PathBuf};

use super::BuildError;
use super::unpack::safe_relative;

/// What to run inside the interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A `.py` file, relative to the package root.
    Script(PathBuf),
    /// A module run with `-m`.
    Module(String),
}

/// A checked entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryPlan {
    /// A program of the environment's `bin/` that runs the interpreter (e.g. `opentelemetry-instrument`).
    wrapper: Option<String>,
    target: Target,
    /// An extra argument passed to the agent.
    arg: Option<String>,
}

impl EntryPlan {
    /// Checks the entry point against the unpacked package (synchronous, a few `stat`s).
    pub fn new(code_dir: &Path, entry_point: &[String]) -> Result<Self, BuildError> {
        check_shape(entry_point)?;
        let first = &entry_point[0];
        let second = entry_point.get(1);
        if looks_like_script(first) {
            let target = script(code_dir, first)?;
            return Ok(Self {
                wrapper: None,
                target,
                arg: second.cloned(),
            });
        }
        if is_module_name(first) && module_exists(code_dir, first) {
            return Ok(Self {
                wrapper: None,
                target: Target::Module(first.clone()),
                arg: second.cloned(),
            });
        }
        if let Some(second) = second
            && is_program_name(first)
        {
            let target = if looks_like_script(second) {
                Some(script(code_dir, second)?)
            } else if is_module_name(second) && module_exists(code_dir, second) {
                Some(Target::Module(second.clone()))
            } else {
                None
            };
            if let Some(target) = target {
                return Ok(Self {
                    wrapper: Some(first.clone()),
                    target,
                    arg: None,
                });
            }
            return Err(BuildError::EntryPoint(format!(
                "neither {first:?} nor {second:?} was found in the code package"
            )));
        }
        Err(BuildError::EntryPoint(format!(
            "{first:?} was not found in the code package (expected a .py file relative to the package \
             root, or the name of a module in it)"
        )))
    }

    /// The agent's command line; checks that a wrapper program exists in the environment.
    pub fn argv(&self, code_dir: &Path, env_dir: &Path) -> Result<Vec<String>, BuildError> {
        let python = path_string(&env_dir.join("bin").join("python"))?;
        let mut argv = Vec::with_capacity(5);
        if let Some(wrapper) = &self.wrapper {
            let program = env_dir.join("bin").join(wrapper);
            let usable = std::fs::metadata(&program).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            });
            if !usable {
                return Err(BuildError::EntryPoint(format!(
                    "{wrapper:?} is neither a file of the code package nor a program installed by its \
                     dependencies: add the package that provides it to requirements.txt{}",
                    if wrapper == "opentelemetry-instrument" {
                        " (aws-opentelemetry-distro)"
                    } else {
                        ""
                    }
                )));
            }
            argv.push(path_string(&program)?);
        }
        argv.push(python);
        match &self.target {
            Target::Script(rel) => argv.push(path_string(&code_dir.join(rel))?),
            Target::Module(name) => {
                argv.push("-m".to_owned());
                argv.push(name.clone());
            }
        }
        argv.extend(self.arg.iter().cloned());
        Ok(argv)
    }
}

/// The shape AgentCore allows: one or two non-empty strings (the control plane validates the same;
/// this keeps the builder safe on its own).
pub(crate) fn check_shape(entry_point: &[String]) -> Result<(), BuildError> {
    if entry_point.is_empty() || entry_point.len() > 2 {
        return Err(BuildError::EntryPoint(format!(
            "entryPoint must have 1 or 2 elements, got {}",
            entry_point.len()
        )));
    }
    if entry_point.iter().any(|e| e.is_empty() || e.contains('\0')) {
        return Err(BuildError::EntryPoint(
            "entryPoint elements must be non-empty strings".into(),
        ));
    }
    Ok(())
}

fn looks_like_script(s: &str) -> bool {
    s.ends_with(".py") || s.contains('/')
}

fn is_module_name(s: &str) -> bool {
    s.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    })
}

fn is_program_name(s: &str) -> bool {
    !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn script(code_dir: &Path, name: &str) -> Result<Target, BuildError> {
    let rel = match safe_relative(name) {
        Ok(Some(rel)) => rel,
        Ok(None) | Err(_) => {
            return Err(BuildError::EntryPoint(format!(
                "{name:?} is not a relative path inside the code package"
            )));
        }
    };
    if !is_file_inside(code_dir, &rel) {
        return Err(BuildError::EntryPoint(format!(
            "{name:?} was not found in the code package"
        )));
    }
    Ok(Target::Script(rel))
}

fn module_exists(code_dir: &Path, name: &str) -> bool {
    let rel: PathBuf = name.split('.').collect();
    is_file_inside(code_dir, &rel.with_extension("py"))
        || is_file_inside(code_dir, &rel.join("__main__.py"))
}

/// A regular file (possibly through the package's own links, which unpacking kept inside).
fn is_file_inside(code_dir: &Path, rel: &Path) -> bool {
    std::fs::metadata(code_dir.join(rel)).is_ok_and(|m| m.is_file())
}

fn path_string(p: &Path) -> Result<String, BuildError> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| BuildError::Config(format!("path {} is not valid UTF-8", p.display())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ep(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn forms() {
        let tmp = tempfile::tempdir().unwrap();
        let code = tmp.path().join("code");
        let env = tmp.path().join("env");
        std::fs::create_dir_all(code.join("src/pkg")).unwrap();
        std::fs::create_dir_all(env.join("bin")).unwrap();
        std::fs::write(code.join("agent.py"), "").unwrap();
        std::fs::write(code.join("src/pkg/__main__.py"), "").unwrap();
        let py = env.join("bin/python").display().to_string();
        let c = |p: &str| code.join(p).display().to_string();

        let argv = |v: &[&str]| EntryPlan::new(&code, &ep(v)).and_then(|p| p.argv(&code, &env));
        assert_eq!(argv(&["agent.py"]).unwrap(), [py.clone(), c("agent.py")]);
        assert_eq!(
            argv(&["./agent.py", "x"]).unwrap(),
            [py.clone(), c("agent.py"), "x".into()]
        );
        assert_eq!(
            argv(&["agent"]).unwrap(),
            [py.clone(), "-m".into(), "agent".into()]
        );
        assert_eq!(
            argv(&["src.pkg"]).unwrap(),
            [py.clone(), "-m".into(), "src.pkg".into()]
        );
        assert!(argv(&["pkg"]).is_err());
        assert!(
            argv(&["missing.py"])
                .unwrap_err()
                .to_string()
                .contains("\"missing.py\" was not found")
        );
        assert!(
            argv(&["../agent.py"])
                .unwrap_err()
                .to_string()
                .contains("not a relative path")
        );
        assert!(argv(&["/etc/passwd"]).is_err());
        assert!(argv(&[]).is_err());
        assert!(argv(&["a.py", "b", "c"]).is_err());

        // A wrapper must be installed in the environment.
        let err = argv(&["opentelemetry-instrument", "agent.py"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws-opentelemetry-distro"), "{err}");
        let wrapper = env.join("bin/opentelemetry-instrument");
        std::fs::write(&wrapper, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            argv(&["opentelemetry-instrument", "agent.py"]).unwrap(),
            [wrapper.display().to_string(), py.clone(), c("agent.py")]
        );
        assert!(argv(&["opentelemetry-instrument", "nope.py"]).is_err());
    }

    #[test]
    fn names() {
        assert!(is_module_name("agent") && is_module_name("pkg.main") && is_module_name("_x1"));
        assert!(!is_module_name("1x") && !is_module_name("a..b") && !is_module_name("a-b"));
        assert!(is_program_name("opentelemetry-instrument") && !is_program_name("../x"));
    }
}
