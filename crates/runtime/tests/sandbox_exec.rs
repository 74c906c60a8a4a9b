//! `Sandbox::exec`: a command next to a running agent, in its namespaces, cgroups, uid and
//! filter, with its environment; its process group killed on demand and with the sandbox.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use berth_runtime::sandbox::{Execution, Isolation, Sandbox};
use sandbox_support::{Fixture, hello, ready, run};
use tokio::io::AsyncReadExt;

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Runs to the end; `(stdout, stderr, exit code or 128 + signal)`.
async fn finish(mut run: Execution) -> (String, String, i32) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (a, b) = tokio::join!(
        run.stdout.read_to_end(&mut out),
        run.stderr.read_to_end(&mut err)
    );
    a.unwrap();
    b.unwrap();
    let info = run.wait().await;
    let code = info
        .code
        .or(info.signal.map(|s| 128 + s))
        .expect("an exit code or a signal");
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        code,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_shares_the_agents_namespaces_files_uid_and_environment() {
    let fx = Fixture::new();
    let mut spec = fx.agent("exec");
    spec.env.push(("FROM_SPEC".into(), "spec-value".into()));
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    let me = hello(&sb).await;
    let hostname = run(&sb, "import socket\nprint(socket.gethostname())").await;
    run(
        &sb,
        "open('/tmp/from-agent', 'w').write('agent wrote this')",
    )
    .await;
    let agent_cgroup = run(&sb, "print(open('/proc/self/cgroup').read())").await;

    let script = "cat /tmp/from-agent; echo; id -u; hostname; echo \"$FROM_SPEC $HOME\"; \
                  cat /proc/self/cgroup; echo oops >&2; exit 3";
    let (out, err, code) = finish(sb.exec(&sh(script)).await.unwrap()).await;
    assert_eq!(code, 3);
    assert_eq!(err, "oops\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "agent wrote this");
    assert_eq!(lines[1], me["uid"].to_string());
    assert_eq!(lines[2], hostname.trim());
    assert_eq!(lines[3], "spec-value /mnt/session");
    // The agent's cgroup namespace, rooted at the sandbox's own cgroup.
    assert_eq!(lines[4..].join("\n").trim(), agent_cgroup.trim());

    // And the agent sees what the command wrote.
    let (_, _, code) = finish(
        sb.exec(&sh("echo hi > /mnt/session/from-cmd"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        run(&sb, "print(open('/mnt/session/from-cmd').read(), end='')").await,
        "hi\n"
    );
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_group_ends_the_command_and_its_children() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.agent("kill")).await.unwrap();
    ready(&sb).await;
    let mut cmd = sb
        .exec(&sh("echo started; sleep 1000 & sleep 1000"))
        .await
        .unwrap();
    let mut first = [0u8; 8];
    cmd.stdout.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"started\n");
    cmd.kill_group();
    let info = cmd.wait().await;
    assert_eq!(info.signal, Some(9), "{info:?}");
    let procs = "import os\nprint([open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()])";
    // SIGKILLed processes leave /proc when the kernel is done with them: poll, bounded.
    let mut left = run(&sb, procs).await;
    for _ in 0..100 {
        if !left.contains("sleep") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        left = run(&sb, procs).await;
    }
    assert!(!left.contains("sleep"), "{left}");
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_the_sandbox_ends_a_running_command() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.agent("destroy")).await.unwrap();
    ready(&sb).await;
    let cmd = sb.exec(&sh("sleep 1000")).await.unwrap();
    sb.destroy().await.unwrap();
    let (_, _, code) = finish(cmd).await;
    assert_eq!(code, 128 + 9);
    assert!(sb.exec(&sh("true")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_isolation_runs_the_command_with_the_agents_environment() {
    let fx = Fixture::new();
    let mut spec = fx.agent("plain");
    spec.isolation = Isolation::Process;
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    let me = hello(&sb).await;
    let (out, _, code) = finish(sb.exec(&sh("id -u; echo \"$TMPDIR\"")).await.unwrap()).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("{}\n{}\n", me["uid"], sb.work_root().join("tmp").display())
    );
    sb.destroy().await.unwrap();
}
