//! Process isolation: a plain child on a host port, still tracked and torn down as a whole.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use berth_runtime::sandbox::{DEFAULT_FIRST_UID, Error, Isolation, Network, Sandbox};
use sandbox_support::{Fixture, hello, ready, run};

/// Whether `pid` is a live process. Without a PID namespace, a killed grandchild is re-parented to
/// the host's init, which reaps it in its own time: a zombie counts as dead.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_mode_agent_listens_on_port_and_is_torn_down_entirely() {
    let fx = Fixture::new();
    let mut spec = fx.agent("plain");
    spec.isolation = Isolation::Process;
    let (a, b) = {
        let mut other = fx.agent("plain2");
        other.isolation = Isolation::Process;
        tokio::try_join!(Sandbox::start(spec), Sandbox::start(other)).unwrap()
    };
    tokio::join!(ready(&a), ready(&b));
    // Two agents, two host ports, both on host loopback.
    assert_ne!(a.agent_addr().port(), b.agent_addr().port());
    assert!(a.agent_addr().ip().is_loopback());
    let h = hello(&a).await;
    assert_eq!(h["name"], "plain");
    assert!(h["uid"].as_u64().unwrap() >= u64::from(DEFAULT_FIRST_UID));
    assert_eq!(hello(&b).await["name"], "plain2");

    let env = run(&a, "import os\nprint(os.environ['PORT'], os.environ['AGENT_PORT'], os.environ['HOME'], os.getcwd())").await;
    let port = a.agent_addr().port();
    let work_root = a.work_root().to_path_buf();
    assert_eq!(
        env.trim(),
        format!(
            "{port} {port} {} {}",
            work_root.join("storage").display(),
            fx.code.canonicalize().unwrap().display()
        )
    );
    // No namespace, so nothing to expose.
    assert!(matches!(
        a.expose_host_port(0, "127.0.0.1:1".parse().unwrap()).await,
        Err(Error::Unsupported(_))
    ));

    // A grandchild that leaves the agent's process group is still found through the cgroup.
    let out = run(&a, "import subprocess\nprint(subprocess.Popen(['/bin/sleep', '1000'], start_new_session=True).pid)").await;
    let sleeper: u32 = out.trim().parse().unwrap();
    let agent = a.pid();
    let dirs = a.cgroup_dirs();
    a.destroy().await.unwrap();
    for pid in [agent, sleeper] {
        assert!(!alive(pid), "process {pid} survived");
    }
    assert!(dirs.iter().all(|d| !d.exists()));
    assert!(!work_root.exists());
    assert_eq!(hello(&b).await["name"], "plain2");
    b.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_mode_exit_kills_leftovers() {
    let fx = Fixture::new();
    // The agent starts a background child in its own session and exits: the sandbox is over, and
    // so is the child.
    let code = "import subprocess, sys\nprint(subprocess.Popen(['/bin/sleep', '1000'], start_new_session=True).pid, flush=True)\nsys.exit(7)";
    let mut spec = fx.command("leaver", &["-c", code]);
    spec.isolation = Isolation::Process;
    spec.network = Network::Isolated;
    let sb = Sandbox::start(spec).await.unwrap();
    let info = sb.exited().await;
    assert_eq!(info.code, Some(7));
    let log = sb.log_path().to_path_buf();
    let sleeper: u32 = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("out "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap();
    assert!(!alive(sleeper), "leftover {sleeper} survived the agent");
    sb.destroy().await.unwrap();
}
