//! Namespaced sandboxes are isolated from each other and from the host.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::os::unix::fs::PermissionsExt;

use berth_runtime::sandbox::{DEFAULT_FIRST_UID, Sandbox};
use sandbox_support::{Fixture, hello, ready, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_listen_on_8080_side_by_side() {
    let fx = Fixture::new();
    let (a, b) =
        tokio::try_join!(Sandbox::start(fx.agent("a")), Sandbox::start(fx.agent("b"))).unwrap();
    tokio::join!(ready(&a), ready(&b));
    assert_eq!(a.agent_addr().port(), 8080);
    assert_eq!(b.agent_addr().port(), 8080);

    let (ha, hb) = (hello(&a).await, hello(&b).await);
    assert_eq!(ha["name"], "a");
    assert_eq!(hb["name"], "b");
    // Each agent is PID 2 of its own namespace (init is 1) and runs as a uid of its own.
    assert_eq!(ha["pid"], 2);
    assert_eq!(hb["pid"], 2);
    let (ua, ub) = (ha["uid"].as_u64().unwrap(), hb["uid"].as_u64().unwrap());
    assert!(ua >= u64::from(DEFAULT_FIRST_UID) && ub >= u64::from(DEFAULT_FIRST_UID));
    assert_ne!(ua, ub);

    // From inside a, 127.0.0.1:8080 is a itself: b has no address a could use.
    let own = run(&a, "import json, urllib.request\nprint(json.load(urllib.request.urlopen('http://127.0.0.1:8080/'))['name'])").await;
    assert_eq!(own.trim(), "a");

    // Nor does the host's loopback exist in there: a port open on the host is refused.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)"
    );
    assert_eq!(run(&a, &probe).await.trim(), "ConnectionRefusedError");

    a.destroy().await.unwrap();
    // b is unaffected by a's teardown.
    assert_eq!(hello(&b).await["name"], "b");
    b.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_and_files_are_private() {
    let fx = Fixture::new();
    let (a, b) =
        tokio::try_join!(Sandbox::start(fx.agent("a")), Sandbox::start(fx.agent("b"))).unwrap();
    tokio::join!(ready(&a), ready(&b));

    // /proc lists only the agent's own processes: no init (hidepid), nothing of b or the host.
    let pids = run(
        &a,
        "import os\nprint(sorted(p for p in os.listdir('/proc') if p.isdigit()))",
    )
    .await;
    assert_eq!(pids.trim(), "['2']");

    let write = "import os\nopen('/tmp/secret-a', 'w').write('a')\nopen('/mnt/session/secret-a', 'w').write('a')\nprint(os.environ['HOME'], os.getcwd())";
    let out = run(&a, write).await;
    assert_eq!(
        out.trim(),
        format!("/mnt/session {}", fx.code.canonicalize().unwrap().display())
    );
    // Both live in a's own tmpfs mounts, not on the host's disk.
    let stored = a.work_root().join("storage/secret-a");
    assert!(!stored.exists());
    assert!(!a.work_root().join("tmp/secret-a").exists());

    let look = format!(
        "import os\n\
         print(os.path.exists('/tmp/secret-a'), os.path.exists('/mnt/session/secret-a'))\n\
         print(sorted(os.listdir({base:?})))\n\
         print(os.path.exists({sandboxes:?}) and os.listdir({sandboxes:?}))\n\
         try:\n    open({stored:?}).read()\n    print('read')\nexcept OSError as e:\n    print(type(e).__name__)",
        base = fx.base.path().display().to_string(),
        sandboxes = fx.sandboxes.display().to_string(),
        stored = stored.display().to_string(),
    );
    let seen = run(&b, &look).await;
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "False False", "b sees a's /tmp or storage");
    // Of the data directory only the bound code directory exists.
    assert_eq!(lines[1], "['code']");
    assert_eq!(lines[2], "False");
    assert_eq!(lines[3], "FileNotFoundError");

    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_root_is_read_only() {
    let fx = Fixture::new();
    // A world-writable host file outside the hidden data dir: only the read-only mount stops writes.
    let open_dir = tempfile::Builder::new()
        .prefix("berth-ww-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open_file = open_dir.path().join("world-writable");
    std::fs::write(&open_file, "x").unwrap();
    std::fs::set_permissions(&open_file, std::fs::Permissions::from_mode(0o666)).unwrap();

    let sb = Sandbox::start(fx.agent("ro")).await.unwrap();
    ready(&sb).await;
    let code = fx.code.canonicalize().unwrap();
    let snippet = format!(
        "import errno, os\n\
         for p in ['/', '/usr', {code:?}, '/tmp', '/mnt/session', '/dev/shm']:\n    print(p, bool(os.statvfs(p).f_flag & os.ST_RDONLY))\n\
         for p in [{open:?}, '/usr/berth-probe', {code:?} + '/new']:\n\
         \x20   try:\n        open(p, 'a').write('y')\n        print('wrote', p)\n\
         \x20   except OSError as e:\n        print(errno.errorcode[e.errno])",
        code = code.display().to_string(),
        open = open_file.display().to_string(),
    );
    let out = run(&sb, &snippet).await;
    let lines: Vec<&str> = out.lines().collect();
    let code = code.display();
    assert_eq!(
        &lines[..6],
        [
            "/ True".to_string(),
            "/usr True".into(),
            format!("{code} True"),
            "/tmp False".into(),
            "/mnt/session False".into(),
            "/dev/shm False".into()
        ]
    );
    // The host file is not in the sandbox's root at all; what is there is read-only.
    assert_eq!(&lines[6..], ["ENOENT", "EROFS", "EROFS"]);
    assert_eq!(std::fs::read_to_string(&open_file).unwrap(), "x");
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_unprivileged_in_its_own_namespaces() {
    let fx = Fixture::new();
    let spec = fx.agent("ns");
    let id = spec.id.clone();
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    let snippet = "import os, resource, socket\n\
        print(socket.gethostname())\n\
        print(os.getuid(), os.getgid(), os.getgroups())\n\
        print(sorted(os.listdir('/sys/class/net')))\n\
        print(all(l.endswith(':/') for l in open('/proc/self/cgroup').read().split()))\n\
        print([l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0])\n\
        print(resource.getrlimit(resource.RLIMIT_CORE))\n\
        print(sorted(os.listdir('/dev')))\n\
        print(os.path.exists('/run'))\n\
        open('/dev/null', 'w').write('x')\n\
        print(len(open('/dev/urandom', 'rb').read(16)))";
    let out = run(&sb, snippet).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], id);
    let ids: Vec<&str> = lines[1].splitn(3, ' ').collect();
    assert_eq!(ids[0], ids[1], "gid equals the leased uid");
    assert!(ids[0].parse::<u32>().unwrap() >= DEFAULT_FIRST_UID);
    assert_eq!(ids[2], "[]");
    assert_eq!(lines[2], "['lo']");
    assert_eq!(
        lines[3], "True",
        "cgroup namespace rooted at the sandbox's cgroup"
    );
    assert_eq!(lines[4], "1", "no_new_privs");
    assert_eq!(lines[5], "(0, 0)", "core dumps off");
    assert_eq!(
        lines[6],
        "['fd', 'full', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']"
    );
    assert_eq!(lines[7], "False", "no /run");
    assert_eq!(lines[8], "16");
    sb.destroy().await.unwrap();
}
