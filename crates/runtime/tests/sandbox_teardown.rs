//! Teardown leaves nothing behind; crashes are detected; logs are captured and bounded.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::path::Path;
use std::time::Duration;

use berth_runtime::sandbox::{Error, Sandbox};
use sandbox_support::{Fixture, eventually, ready, run};

fn cgroup_pids(sb: &Sandbox) -> Vec<u32> {
    let dir = sb
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.to_string_lossy().contains("/pids"))
        .unwrap();
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_leaves_no_process_mount_cgroup_or_directory() {
    let fx = Fixture::new();
    let mounts_before = host_mounts();
    let sb = Sandbox::start(fx.agent("gone")).await.unwrap();
    ready(&sb).await;
    // A grandchild in its own session: killing the agent's process group alone would miss it.
    run(
        &sb,
        "import subprocess\nsubprocess.Popen(['/bin/sleep', '1000'], start_new_session=True)",
    )
    .await;
    let pids = cgroup_pids(&sb);
    assert!(pids.len() >= 3, "init, agent and sleep expected: {pids:?}");
    assert!(pids.contains(&sb.pid()));
    let work_root = sb.work_root().to_path_buf();
    let dirs = sb.cgroup_dirs();
    assert_eq!(dirs.len(), 3);
    // The sandbox's mounts live in its own mount namespace only.
    assert_eq!(host_mounts(), mounts_before);

    sb.destroy().await.unwrap();
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived"
        );
    }
    for dir in &dirs {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    assert!(!work_root.exists());
    assert_eq!(host_mounts(), mounts_before);

    // Idempotent, and the sandbox reports why it ended.
    sb.destroy().await.unwrap();
    assert!(matches!(sb.connect().await, Err(Error::Destroyed)));
    let info = sb.exited().await;
    assert!(info.destroyed, "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_is_reported_to_every_waiter_and_output_is_logged() {
    let fx = Fixture::new();
    let code = "import sys\nprint('hello out', flush=True)\nprint('hello err', file=sys.stderr, flush=True)\nsys.exit(3)";
    let sb = Sandbox::start(fx.command("crash", &["-c", code]))
        .await
        .unwrap();
    let (first, second) = tokio::join!(sb.exited(), sb.exited());
    assert_eq!(first.code, Some(3), "{first}");
    assert_eq!(first, second);
    assert!(!first.destroyed && !first.oom_killed);
    assert_eq!(sb.try_exit(), Some(first));
    assert!(matches!(sb.connect().await, Err(Error::Exited(_))));

    // The pump finishes draining the pipes on its own once every writer is gone.
    let log = sb.log_path().to_path_buf();
    let logged = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("out hello out\n") && t.contains("err hello err\n"))
    })
    .await;
    assert!(logged, "log: {:?}", std::fs::read_to_string(&log));
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exec_is_reported_and_cleaned_up() {
    let fx = Fixture::new();
    let mut spec = fx.command("noexec", &[]);
    spec.argv = vec!["/nonexistent/agent".into()];
    let work_root = spec.work_root.clone();
    let id = spec.id.clone();
    let err = Sandbox::start(spec).await.err().unwrap();
    match &err {
        Error::Setup { step, source } => {
            assert_eq!(step, "exec /nonexistent/agent");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!work_root.exists());
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/berth/{id}")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_sandbox_is_cleaned_up() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.agent("dropped")).await.unwrap();
    ready(&sb).await;
    let pids = cgroup_pids(&sb);
    let work_root = sb.work_root().to_path_buf();
    let dirs = sb.cgroup_dirs();
    drop(sb);
    let clean = eventually(Duration::from_secs(15), || {
        !work_root.exists()
            && dirs.iter().all(|d| !d.exists())
            && pids
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    })
    .await;
    assert!(
        clean,
        "dropped sandbox left {work_root:?} or {dirs:?} or one of {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_is_rotated_at_its_cap() {
    let fx = Fixture::new();
    let code = "for i in range(300):\n    print(f'line-{i:03} ' + 'x' * 1000)\n";
    let mut spec = fx.command("chatty", &["-c", code]);
    spec.log_cap_bytes = 64 * 1024;
    let sb = Sandbox::start(spec).await.unwrap();
    assert!(sb.exited().await.success());
    let log = sb.log_path().to_path_buf();
    let done = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("out line-299 "))
    })
    .await;
    assert!(done);
    let current = std::fs::metadata(&log).unwrap().len();
    let previous = std::fs::metadata(log.with_extension("log.1"))
        .unwrap()
        .len();
    assert!(
        current <= 64 * 1024 && previous <= 64 * 1024,
        "{current} {previous}"
    );
    assert!(
        previous > 60 * 1024,
        "the rotated file was filled first: {previous}"
    );
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_reaps_orphaned_zombies() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.agent("reaper")).await.unwrap();
    ready(&sb).await;
    // The grandchild exits while its parent still lives, then the parent exits: the zombie is
    // re-parented to init, which must collect it.
    let snippet = "import os, time\n\
        pid = os.fork()\n\
        if pid == 0:\n\
        \x20   if os.fork() == 0:\n\
        \x20       os._exit(0)\n\
        \x20   time.sleep(0.2)\n\
        \x20   os._exit(0)\n\
        os.waitpid(pid, 0)\n\
        def zombies():\n\
        \x20   found = []\n\
        \x20   for p in os.listdir('/proc'):\n\
        \x20       try:\n\
        \x20           if p.isdigit() and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z':\n\
        \x20               found.append(p)\n\
        \x20       except OSError:\n\
        \x20           pass\n\
        \x20   return found\n\
        for _ in range(500):\n\
        \x20   if not zombies():\n\
        \x20       break\n\
        \x20   time.sleep(0.01)\n\
        print(zombies())";
    assert_eq!(run(&sb, snippet).await.trim(), "[]");
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_collision_is_refused_without_touching_the_live_sandbox() {
    let fx = Fixture::new();
    let spec = fx.agent("twin");
    let twin = spec.clone();
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    run(&sb, "open('/mnt/session/keep', 'w').write('1')").await;
    assert!(matches!(Sandbox::start(twin).await, Err(Error::InUse(_))));
    assert!(sb.work_root().join("logs/agent.log").exists());
    assert_eq!(
        run(&sb, "print(open('/mnt/session/keep').read())")
            .await
            .trim(),
        "1"
    );
    assert_eq!(sandbox_support::hello(&sb).await["name"], "twin");
    sb.destroy().await.unwrap();
}

/// Whether `pid` is a live process (a zombie waiting for the host's init to reap it is dead).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"))
    })
}

/// If Berth dies hard, its sandboxes die with it (init's parent-death signal). This test re-runs its
/// own binary as the "Berth" process, kills that with SIGKILL and watches the sandbox vanish.
#[test]
fn sandboxes_die_with_a_killed_berth() {
    const ROLE: &str = "BERTH_SANDBOX_TEST_ROLE";
    if std::env::var(ROLE).as_deref() == Ok("berth") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let fx = Fixture::new();
            let sb = Sandbox::start(fx.agent("orphan")).await.unwrap();
            ready(&sb).await;
            let report = serde_json::json!({
                "pids": cgroup_pids(&sb),
                "cgroups": sb.cgroup_dirs(),
                "base": fx.base.path(),
            });
            println!("ORPHAN {report}");
            // Wait to be killed; the fixture and the sandbox are never dropped.
            std::future::pending::<()>().await;
        });
        return;
    }

    // Killed on every path, so a failing assertion cannot leave the "berth" process running.
    struct Berth(std::process::Child);
    impl Drop for Berth {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut berth = Berth(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sandboxes_die_with_a_killed_berth",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, "berth")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = std::io::BufReader::new(berth.0.stdout.take().unwrap());
    let line = std::io::BufRead::lines(stdout)
        .map(|l| l.unwrap())
        // The harness prints "test <name> ... " without a newline before the test's own output.
        .find_map(|l| {
            l.split_once("ORPHAN ")
                .map(|(_, report)| report.to_string())
        })
        .expect("the berth process never reported its sandbox");
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();
    let pids: Vec<u32> = report["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    assert!(pids.len() >= 2 && pids.iter().all(|p| alive(*p)));

    drop(berth);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let gone = rt.block_on(eventually(Duration::from_secs(15), || {
        pids.iter().all(|p| !alive(*p))
    }));
    assert!(gone, "sandbox processes outlived berth: {pids:?}");

    // What a hard crash does leave: empty cgroup directories and the work root. Clean them up here.
    for dir in report["cgroups"].as_array().unwrap() {
        let dir = Path::new(dir.as_str().unwrap());
        let removed = rt.block_on(eventually(Duration::from_secs(5), || {
            std::fs::remove_dir(dir).is_ok() || !dir.exists()
        }));
        assert!(removed, "cannot remove {}", dir.display());
    }
    std::fs::remove_dir_all(report["base"].as_str().unwrap()).unwrap();
}

/// An agent that exits with `code` on SIGTERM (or ignores it when `code` is `None`) once it
/// listens.
fn term_agent(code: Option<i32>) -> String {
    let handler = match code {
        Some(c) => format!("lambda *a: os._exit({c})"),
        None => "signal.SIG_IGN".into(),
    };
    format!(
        "import os, signal, socket\nsignal.signal(signal.SIGTERM, {handler})\n\
         s = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', int(os.environ.get('PORT', '8080'))))\ns.listen()\nwhile True:\n    s.accept()[0].close()\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_asks_the_agent_to_end_before_killing_it() {
    let fx = Fixture::new();
    for isolation in [
        berth_runtime::sandbox::Isolation::Namespaces,
        berth_runtime::sandbox::Isolation::Process,
    ] {
        let mut spec = fx.command("term", &["-c", &term_agent(Some(42))]);
        spec.isolation = isolation;
        let sb = Sandbox::start(spec).await.unwrap();
        ready(&sb).await;
        let work_root = sb.work_root().to_path_buf();
        sb.stop(Duration::from_secs(20)).await.unwrap();
        let info = sb.exited().await;
        // The agent's own handler ran: init passed SIGTERM on (namespaces), or got it directly.
        assert_eq!(info.code, Some(42), "{isolation:?}: {info}");
        assert!(info.destroyed, "{info}");
        assert!(!work_root.exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_an_agent_that_ignores_sigterm_after_its_grace() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.command("deaf", &["-c", &term_agent(None)]))
        .await
        .unwrap();
    ready(&sb).await;
    let pid = sb.pid();
    sb.stop(Duration::from_millis(200)).await.unwrap();
    let info = sb.exited().await;
    assert_eq!(info.code, None, "killed, not exited: {info}");
    assert!(info.destroyed, "{info}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}
