//! cgroup limits contain a misbehaving agent without touching its neighbours.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::path::PathBuf;
use std::time::Duration;

use berth_runtime::sandbox::Sandbox;
use sandbox_support::{Fixture, eventually, hello, ready, run};

fn cgroup_file(sb: &Sandbox, controller: &str, file: &str) -> PathBuf {
    let dir = sb
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.to_string_lossy().contains(&format!("/{controller}")))
        .unwrap();
    dir.join(file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed_and_its_sibling_stays_healthy() {
    let fx = Fixture::new();
    let hog_code = "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n";
    let mut hog = fx.command("hog", &["-c", hog_code]);
    hog.limits.memory_bytes = Some(64 << 20);
    let sibling = Sandbox::start(fx.agent("sibling")).await.unwrap();
    ready(&sibling).await;

    let hog = Sandbox::start(hog).await.unwrap();
    let info = tokio::time::timeout(Duration::from_secs(60), hog.exited())
        .await
        .expect("hog was never killed");
    assert_eq!(info.signal, Some(libc::SIGKILL), "{info}");
    assert!(info.oom_killed, "{info}");
    assert!(!info.destroyed);

    // The sibling has no limit and keeps serving, including a 128 MiB allocation of its own.
    assert_eq!(hello(&sibling).await["name"], "sibling");
    assert_eq!(
        run(&sibling, "x = b'y' * (128 << 20)\nprint(len(x))")
            .await
            .trim(),
        (128u64 << 20).to_string()
    );

    hog.destroy().await.unwrap();
    sibling.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_is_bounded_by_the_pids_limit() {
    let fx = Fixture::new();
    let bomb_code =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let mut bomb = fx.command("bomb", &["-c", bomb_code]);
    bomb.limits.pids = Some(32);
    bomb.limits.cpu_millis = Some(200);
    let sibling = Sandbox::start(fx.agent("sibling")).await.unwrap();
    ready(&sibling).await;

    let bomb = Sandbox::start(bomb).await.unwrap();
    let events = cgroup_file(&bomb, "pids", "pids.events");
    let hit_limit = eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(&events)
            .is_ok_and(|t| t.trim().strip_prefix("max ").is_some_and(|n| n != "0"))
    })
    .await;
    assert!(hit_limit, "the fork bomb never reached the pids limit");
    let current: u64 = std::fs::read_to_string(cgroup_file(&bomb, "pids", "pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 32, "{current} tasks despite pids.max 32");
    let quota = std::fs::read_to_string(cgroup_file(&bomb, "cpu", "cpu.cfs_quota_us")).unwrap();
    assert_eq!(quota.trim(), "20000");

    // The sibling still forks and serves.
    assert_eq!(hello(&sibling).await["name"], "sibling");
    let forked = run(&sibling, "import subprocess\nprint(subprocess.run(['/bin/echo', 'ok'], capture_output=True, text=True).stdout)").await;
    assert_eq!(forked.trim(), "ok");

    let dirs = bomb.cgroup_dirs();
    bomb.destroy().await.unwrap();
    assert!(
        dirs.iter().all(|d| !d.exists()),
        "cgroup left behind: {dirs:?}"
    );
    sibling.destroy().await.unwrap();
}
