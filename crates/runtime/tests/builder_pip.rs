//! Builds that create real environments with the host's Python 3.11 and pip (PyPI or the host's
//! configured index).
#![allow(clippy::unwrap_used)]

mod builder_support;

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use berth_runtime::builder::{BuildError, Built};
use builder_support::{builder, ep, files, names, run_agent};

const SIX_AGENT: &str = "import six, sys\nprint('six', six.__version__, sys.argv[1:])\n";

#[tokio::test]
async fn requirements_are_installed_and_environments_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    let root = tmp.path().join("builds");

    let started = Instant::now();
    let first = b
        .build(
            files(&[
                ("agent.py", SIX_AGENT),
                ("requirements.txt", "six==1.16.0\n"),
            ]),
            "PYTHON_3_11",
            &ep(&["agent.py", "x"]),
        )
        .await
        .unwrap();
    eprintln!(
        "cold build (venv + pip install six): {:?}",
        started.elapsed()
    );
    assert!(!first.env_reused);
    assert!(first.digest.starts_with("sha256:") && first.digest.len() == 7 + 64);
    assert_eq!(first.code_dir, root.join("code").join(&first.digest[7..]));
    assert!(first.env_dir.starts_with(root.join("envs")));
    assert!(
        first
            .env_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("python3.11-")
    );
    assert!(first.python_version.starts_with("3.11."));
    assert_eq!(first.argv[0], first.python.to_str().unwrap());
    assert_eq!(run_agent(&first), "six 1.16.0 ['x']\n");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&first.code_dir), 0o555);
    assert_eq!(mode(&first.code_dir.join("agent.py")), 0o444);
    assert_eq!(
        mode(&first.env_dir) & 0o005,
        0o005,
        "environment must be world-readable"
    );
    let log = std::fs::read_to_string(b.log_path(&first.digest).unwrap()).unwrap();
    assert!(log.contains("-m venv") && log.contains("six"), "{log}");

    // Other code, same dependencies: the environment is reused, pip never runs.
    let started = Instant::now();
    let second = b
        .build(
            files(&[
                ("main.py", SIX_AGENT),
                ("requirements.txt", "# same deps\nsix==1.16.0"),
            ]),
            "PYTHON_3_11",
            &ep(&["main.py"]),
        )
        .await
        .unwrap();
    eprintln!("warm build (cached environment): {:?}", started.elapsed());
    assert!(second.env_reused);
    assert_ne!(second.digest, first.digest);
    assert_eq!(second.env_dir, first.env_dir);
    assert!(
        !b.log_path(&second.digest).unwrap().exists(),
        "no venv or pip ran"
    );
    assert_eq!(run_agent(&second), "six 1.16.0 []\n");

    // Building the same package again changes nothing.
    let again = b
        .build(
            files(&[
                ("agent.py", SIX_AGENT),
                ("requirements.txt", "six==1.16.0\n"),
            ]),
            "PYTHON_3_11",
            &ep(&["agent.py", "x"]),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Built {
            env_reused: true,
            ..first.clone()
        }
    );

    // After a restart, the built version is found without building.
    let reopened = builder(tmp.path());
    let found = reopened
        .lookup(&first.digest, "PYTHON_3_11", &ep(&["agent.py", "x"]))
        .await
        .unwrap();
    assert_eq!(
        found,
        Built {
            env_reused: true,
            ..first.clone()
        }
    );
    assert!(
        reopened
            .lookup(&first.digest, "PYTHON_3_12", &ep(&["agent.py"]))
            .await
            .is_none()
    );
    assert!(
        reopened
            .lookup(&first.digest, "PYTHON_3_11", &ep(&["other.py"]))
            .await
            .is_none()
    );

    // Collecting the first version keeps the environment the second still uses.
    reopened
        .gc(std::slice::from_ref(&second.digest))
        .await
        .unwrap();
    assert!(!first.code_dir.exists());
    assert!(second.code_dir.exists() && second.env_dir.exists());
    assert!(
        reopened
            .lookup(&first.digest, "PYTHON_3_11", &ep(&["agent.py", "x"]))
            .await
            .is_none()
    );
    assert!(
        reopened
            .lookup(&second.digest, "PYTHON_3_11", &ep(&["main.py"]))
            .await
            .is_some()
    );
    reopened.gc(&[]).await.unwrap();
    for dir in ["code", "envs", "index", "logs"] {
        assert_eq!(names(&root.join(dir)), Vec::<String>::new(), "{dir}");
    }
}

#[tokio::test]
async fn a_bad_requirement_quotes_pip() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    let zip = files(&[
        ("agent.py", SIX_AGENT),
        (
            "requirements.txt",
            "this-package-does-not-exist-berth==1.0\n",
        ),
    ]);
    let err = b
        .build(zip, "PYTHON_3_11", &ep(&["agent.py"]))
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::Step { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("installing dependencies with pip failed (exit status: 1):\n"),
        "{msg}"
    );
    assert!(
        msg.contains("No matching distribution found for this-package-does-not-exist-berth==1.0"),
        "{msg}"
    );
    // The half-built environment is gone, the log stays for inspection.
    assert_eq!(names(&tmp.path().join("builds/envs")), Vec::<String>::new());
    let logs = names(&tmp.path().join("builds/logs"));
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(tmp.path().join("builds/logs").join(&logs[0])).unwrap();
    assert!(log.contains("this-package-does-not-exist-berth"), "{log}");
}

#[tokio::test]
async fn pyproject_dependencies_are_installed_without_building_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    // The build backend does not exist: building the project itself would fail.
    let pyproject = r#"
[project]
name = "berth-test-agent"
version = "0.1.0"
dependencies = ["six==1.16.0"]

[build-system]
requires = ["this-backend-does-not-exist-berth"]
build-backend = "nowhere"
"#;
    let built = b
        .build(
            files(&[("agent.py", SIX_AGENT), ("pyproject.toml", pyproject)]),
            "PYTHON_3_11",
            &ep(&["agent"]),
        )
        .await
        .unwrap();
    assert_eq!(built.argv[1..], ["-m", "agent"]);
    assert_eq!(run_agent(&built), "six 1.16.0 []\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builds_of_the_same_package_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    // No dependencies: an environment without pip, quick to create.
    let zip = files(&[("agent.py", "print('plain')\n")]);
    let entry = ep(&["agent.py"]);
    let (x, y) = tokio::join!(
        b.build(zip.clone(), "PYTHON_3_11", &entry),
        b.build(zip.clone(), "PYTHON_3_11", &entry)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        (x.code_dir.clone(), x.env_dir.clone()),
        (y.code_dir.clone(), y.env_dir.clone())
    );
    assert!(
        x.env_reused != y.env_reused,
        "exactly one build creates the environment"
    );
    assert_eq!(run_agent(&x), "plain\n");
    assert_eq!(names(&tmp.path().join("builds/code")).len(), 1);
    assert_eq!(names(&tmp.path().join("builds/envs")).len(), 1);
}
