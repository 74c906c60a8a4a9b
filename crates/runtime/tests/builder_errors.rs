//! Builds that must fail before any pip run, with a message a user can act on.
#![allow(clippy::unwrap_used)]

mod builder_support;

use std::os::unix::fs::PermissionsExt;

use berth_runtime::builder::{BuildError, Builder, BuilderOptions, InterpreterSearch};
use builder_support::{Entry, builder, ep, files, names, zip};

const AGENT: &str = "print('hi')\n";

#[tokio::test]
async fn missing_entry_point_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    let err = b
        .build(
            files(&[("agent.py", AGENT)]),
            "PYTHON_3_11",
            &ep(&["main.py"]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::EntryPoint(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid entry point: \"main.py\" was not found in the code package"
    );
    let err = b
        .build(files(&[("agent.py", AGENT)]), "PYTHON_3_11", &ep(&["main"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"main\" was not found"), "{err}");
    let err = b
        .build(files(&[("agent.py", AGENT)]), "PYTHON_3_11", &ep(&[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 or 2 elements"), "{err}");
}

#[tokio::test]
async fn zip_slip_entries_are_refused_and_nothing_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    let cases: [(&[Entry<'_>], &str, &str); 4] = [
        (
            &[
                Entry::File("agent.py", AGENT),
                Entry::File("../evil.py", "x"),
            ],
            "../evil.py",
            "escapes the package",
        ),
        (
            &[
                Entry::File("agent.py", AGENT),
                Entry::File("/tmp/evil.py", "x"),
            ],
            "/tmp/evil.py",
            "absolute paths",
        ),
        (
            &[
                Entry::File("agent.py", AGENT),
                Entry::Link("lib/out", "../../../etc"),
            ],
            "lib/out",
            "outside the package",
        ),
        (
            &[
                Entry::File("agent.py", AGENT),
                Entry::Link("abs", "/etc/passwd"),
            ],
            "abs",
            "outside the package",
        ),
    ];
    for (entries, entry, reason) in cases {
        let err = b
            .build(zip(entries), "PYTHON_3_11", &ep(&["agent.py"]))
            .await
            .unwrap_err();
        match &err {
            BuildError::UnsafeEntry {
                entry: e,
                reason: r,
            } => {
                assert_eq!(e, entry);
                assert!(r.contains(reason), "{err}");
            }
            other => panic!("expected UnsafeEntry for {entry}, got {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("the code package entry {entry:?} is refused")),
            "{err}"
        );
    }
    assert!(!tmp.path().join("evil.py").exists());
    // Nothing half-unpacked is left behind, staging directories included.
    assert_eq!(names(&tmp.path().join("builds/code")), Vec::<String>::new());
}

#[tokio::test]
async fn links_inside_the_package_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Builder::new(BuilderOptions {
        interpreters: InterpreterSearch {
            path: vec![],
            pyenv_root: None,
            system: vec![],
        },
        ..BuilderOptions::new(tmp.path().join("builds"))
    });
    let entries = [
        Entry::File("src/agent.py", AGENT),
        Entry::Link("agent.py", "src/agent.py"),
        Entry::Link("src/up", ".."),
    ];
    // No interpreter to find: the build stops after unpacking and checking the entry point.
    let err = b
        .build(zip(&entries), "PYTHON_3_11", &ep(&["agent.py"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BuildError::InterpreterNotFound { .. }),
        "{err:?}"
    );
    let code = tmp.path().join("builds/code");
    let dirs = names(&code);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = code.join(&dirs[0]);
    assert_eq!(
        std::fs::read_to_string(dir.join("agent.py")).unwrap(),
        AGENT
    );
    assert_eq!(
        std::fs::read_link(dir.join("src/up")).unwrap().to_str(),
        Some("..")
    );
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(""), 0o555);
    assert_eq!(mode("src"), 0o555);
    assert_eq!(mode("src/agent.py"), 0o444);
}

#[tokio::test]
async fn bombs_and_garbage_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = BuilderOptions {
        max_unpacked_bytes: 10_000,
        max_entries: 3,
        ..BuilderOptions::new(tmp.path().join("builds"))
    };
    let b = Builder::new(opts);
    let big = "0".repeat(20_000);
    let err = b
        .build(
            files(&[("agent.py", AGENT), ("big.bin", &big)]),
            "PYTHON_3_11",
            &ep(&["agent.py"]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("more than 10000 bytes"), "{err}");
    let many = files(&[("agent.py", AGENT), ("a", ""), ("b", ""), ("c", "")]);
    let err = b
        .build(many, "PYTHON_3_11", &ep(&["agent.py"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("4 entries, the limit is 3"),
        "{err}"
    );
    let err = b
        .build(
            bytes::Bytes::from_static(b"not a zip"),
            "PYTHON_3_11",
            &ep(&["agent.py"]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidZip(_)), "{err:?}");
    assert_eq!(names(&tmp.path().join("builds/code")), Vec::<String>::new());
}

#[tokio::test]
async fn missing_interpreter_is_a_clear_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    let err = b
        .build(
            files(&[("agent.py", AGENT)]),
            "PYTHON_3_99",
            &ep(&["agent.py"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, BuildError::InterpreterNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("no python3.99 interpreter found for runtime PYTHON_3_99: searched "),
        "{msg}"
    );
    assert!(
        msg.contains("/usr/bin") && msg.ends_with("install Python 3.99 on the Berth host"),
        "{msg}"
    );

    let err = b
        .build(files(&[("agent.py", AGENT)]), "NODE_22", &ep(&["agent.py"]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "NODE_22 runtimes are not supported yet");
    let err = b
        .build(files(&[("agent.py", AGENT)]), "RUBY_3", &ep(&["agent.py"]))
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidRuntime(_)), "{err:?}");
}

#[tokio::test]
async fn an_interpreter_of_another_version_is_not_substituted() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // Claims to be python3.11 but reports 3.9, like a stale symlink would.
    let fake = bin.join("python3.11");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf '3.9.1\\n3 9\\n/usr/bin/python3.9\\n/usr\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = Builder::new(BuilderOptions {
        interpreters: InterpreterSearch {
            path: vec![bin.clone()],
            pyenv_root: None,
            system: vec![],
        },
        ..BuilderOptions::new(tmp.path().join("builds"))
    });
    let err = b
        .build(
            files(&[("agent.py", AGENT)]),
            "PYTHON_3_11",
            &ep(&["agent.py"]),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "rejected: {} (it is Python 3.9.1)",
            fake.display()
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn permissions_of_the_build_root_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = Builder::new(BuilderOptions::new(private.join("data/builds")));
    let open = Builder::new(BuilderOptions::new(tmp.path().join("data/builds")));
    let root = berth_runtime::sandbox::effective_uid() == 0;
    if root {
        // Agents run as nobody: a 0700 parent locks them out.
        let err = hidden.check_permissions().unwrap_err();
        assert!(
            err.contains(&format!(
                "{} does not grant other users execute permission (mode 0700)",
                private.display()
            )),
            "{err}"
        );
    } else {
        // Agents run as Berth's own user, who can reach its own directories.
        hidden.check_permissions().unwrap();
    }
    open.check_permissions().unwrap();
}

#[tokio::test]
async fn gc_refuses_malformed_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let b = builder(tmp.path());
    let err = b.gc(&["abc".to_owned()]).await.unwrap_err();
    assert!(matches!(err, BuildError::InvalidDigest(_)), "{err:?}");
    assert!(
        b.lookup("abc", "PYTHON_3_11", &ep(&["agent.py"]))
            .await
            .is_none()
    );
}
