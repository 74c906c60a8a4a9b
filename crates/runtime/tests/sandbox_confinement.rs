//! Confinement of an agent: its own uid, the seccomp filter, the minimal root, bounded `/tmp` and
//! `/mnt/session`.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::os::unix::fs::PermissionsExt;

use berth_runtime::sandbox::{DEFAULT_FIRST_UID, Isolation, Network, Sandbox};
use sandbox_support::{Fixture, hello, ready, run};

/// Python that calls `syscall(2)` through ctypes and prints `<label> <ok|ERRNO>` per call. A clone
/// that unexpectedly succeeds leaves its child through `_exit` at once.
fn syscalls(calls: &[(&str, i64, Vec<i64>)]) -> String {
    let mut code = String::from(
        "import ctypes, errno, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         libc.syscall.restype = ctypes.c_long\n\
         def sc(label, nr, *args):\n\
         \x20   r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])\n\
         \x20   if r == 0 and label.startswith('clone'):\n\
         \x20       os._exit(0) if os.getpid() != PID else None\n\
         \x20   print(label, 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()])\n\
         PID = os.getpid()\n",
    );
    for (label, nr, args) in calls {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        code.push_str(&format!("sc({label:?}, {nr}, {})\n", args.join(", ")));
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_refuses_namespaces_keyrings_mounts_and_kernel_interfaces() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.agent("sc")).await.unwrap();
    ready(&sb).await;
    let newuser = i64::from(libc::CLONE_NEWUSER);
    let sigchld = i64::from(libc::SIGCHLD);
    let calls: Vec<(&str, i64, Vec<i64>)> = vec![
        ("unshare_user", libc::SYS_unshare, vec![newuser]),
        (
            "unshare_net",
            libc::SYS_unshare,
            vec![i64::from(libc::CLONE_NEWNET)],
        ),
        (
            "clone_user",
            libc::SYS_clone,
            vec![newuser | sigchld, 0, 0, 0, 0],
        ),
        ("setns", libc::SYS_setns, vec![0, 0]),
        ("mount", libc::SYS_mount, vec![0, 0, 0, 0, 0]),
        ("umount2", libc::SYS_umount2, vec![0, 0]),
        ("fsopen", libc::SYS_fsopen, vec![0, 0]),
        // KEYCTL_GET_KEYRING_ID of KEY_SPEC_USER_KEYRING, creating it.
        ("keyctl", libc::SYS_keyctl, vec![0, -4, 1]),
        ("add_key", libc::SYS_add_key, vec![0, 0, 0, 0, 0]),
        ("request_key", libc::SYS_request_key, vec![0, 0, 0, 0]),
        ("ptrace", libc::SYS_ptrace, vec![0, 1, 0, 0]),
        ("bpf", libc::SYS_bpf, vec![0, 0, 0]),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            vec![0, 0, -1, -1, 0],
        ),
        ("userfaultfd", libc::SYS_userfaultfd, vec![0]),
        ("io_uring_setup", libc::SYS_io_uring_setup, vec![1, 0]),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            vec![0, 0, 0],
        ),
        ("clock_settime", libc::SYS_clock_settime, vec![0, 0]),
        ("reboot", libc::SYS_reboot, vec![0, 0, 0, 0]),
        // clone3 fails as if the kernel lacked it, so libc falls back to the checked clone.
        ("clone3", libc::SYS_clone3, vec![0, 0]),
        // A harmless call still works.
        ("getpid", libc::SYS_getpid, vec![]),
    ];
    let out = run(&sb, &syscalls(&calls)).await;
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = calls
        .iter()
        .map(|(label, _, _)| {
            let expect = match *label {
                "clone3" => "ENOSYS",
                "getpid" => "ok",
                _ => "EPERM",
            };
            format!("{label} {expect}")
        })
        .collect();
    assert_eq!(got, want);

    // What agents do every day still works: threads, fork and exec of a subprocess, a filter mode.
    let everyday = "import subprocess, threading\n\
        t = threading.Thread(target=lambda: None); t.start(); t.join()\n\
        print(subprocess.run(['/bin/sh', '-c', 'echo forked'], capture_output=True, text=True).stdout.strip())\n\
        print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0])";
    assert_eq!(run(&sb, everyday).await.trim(), "forked\n2");
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_holds_only_what_the_agent_needs() {
    let fx = Fixture::new();
    // The code lives under a directory only root may enter, like a data dir under /root.
    let locked = tempfile::Builder::new()
        .prefix("berth-locked-")
        .tempdir_in(fx.base.path())
        .unwrap();
    std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let code = locked.path().join("code");
    std::fs::create_dir(&code).unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(fx.code.join("agent.py"), code.join("agent.py")).unwrap();
    let mut spec = fx.agent("root");
    spec.code_dir = code.clone();
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;

    // The code dir's first component is the only other entry (where the fixture lives).
    let first = code
        .canonicalize()
        .unwrap()
        .components()
        .nth(1)
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let snippet = format!(
        "import os, pwd\n\
         print(sorted(os.listdir('/')))\n\
         print([p for p in ['/home', '/root', '/var', '/work', '/opt', '/run', '/srv', {work:?}] if os.path.exists(p) and p != '/' + {first:?}])\n\
         print(os.listdir('/' + {first:?}))\n\
         print(sorted(os.listdir('/etc')))\n\
         print(pwd.getpwuid(os.getuid()).pw_dir)\n\
         print(os.getcwd() == {code:?}, sorted(os.listdir('.')))\n\
         mounts = open('/proc/self/mountinfo').read()\n\
         print(any(p in mounts for p in [{base:?} + '/sandboxes', '/root', '/home']))",
        work = sb.work_root().display().to_string(),
        code = code.canonicalize().unwrap().display().to_string(),
        base = fx.base.path().canonicalize().unwrap().display().to_string(),
    );
    let next = code
        .canonicalize()
        .unwrap()
        .components()
        .nth(2)
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let out = run(&sb, &snippet).await;
    let lines: Vec<&str> = out.lines().collect();
    let top: Vec<String> = lines[0]
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|s| s.trim_matches('\'').to_string())
        .collect();
    let allowed = [
        "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "mnt", "proc", "sbin", "sys",
        "tmp", "usr",
    ];
    for entry in &top {
        assert!(
            allowed.contains(&entry.as_str()) || *entry == first,
            "unexpected {entry} in /: {top:?}"
        );
    }
    assert_eq!(lines[1], "[]", "host directories visible");
    // Of the code dir's ancestors only the path down to it exists.
    assert_eq!(lines[2], format!("[{next:?}]").replace('"', "'"));
    assert!(lines[3].contains("'passwd'") && lines[3].contains("'ld.so.cache'"));
    assert!(
        !lines[3].contains("shadow") && !lines[3].contains("subuid"),
        "{}",
        lines[3]
    );
    assert_eq!(
        lines[4], "/mnt/session",
        "the agent's uid has a passwd entry"
    );
    assert_eq!(lines[5], "True ['agent.py']");
    assert_eq!(lines[6], "False", "mountinfo names host paths");
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_and_session_storage_fill_up_inside_the_sandbox_only() {
    let fx = Fixture::new();
    let mut spec = fx.agent("full");
    spec.tmp_bytes = 8 << 20;
    spec.session_bytes = 4 << 20;
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    let snippet = "import errno\n\
        for path in ['/tmp/fill', '/mnt/session/fill']:\n\
        \x20   written = 0\n\
        \x20   try:\n\
        \x20       with open(path, 'wb') as f:\n\
        \x20           for _ in range(64):\n\
        \x20               f.write(b'x' * (1 << 20)); f.flush(); written += 1\n\
        \x20       print(path, 'no error', written)\n\
        \x20   except OSError as e:\n\
        \x20       print(path, errno.errorcode[e.errno], written)";
    let out = run(&sb, snippet).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (tmp, session): (Vec<&str>, Vec<&str>) =
        (lines[0].split(' ').collect(), lines[1].split(' ').collect());
    assert_eq!(&tmp[..2], ["/tmp/fill", "ENOSPC"]);
    assert_eq!(&session[..2], ["/mnt/session/fill", "ENOSPC"]);
    // Stopped at the limit: at most 8 and 4 whole MiB went in.
    assert!(tmp[2].parse::<u32>().unwrap() <= 8);
    assert!(session[2].parse::<u32>().unwrap() <= 4);
    // Nothing of it is on the host's disk.
    let on_disk: u64 = walk(sb.work_root());
    assert!(on_disk < 1 << 20, "{on_disk} bytes in the work root");
    sb.destroy().await.unwrap();
}

fn walk(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_get_distinct_uids_and_cannot_signal_each_other() {
    let fx = Fixture::new();
    // Process isolation shares the host's PID namespace, so only the uid stands between the two.
    let mut a = fx.agent("a");
    a.isolation = Isolation::Process;
    a.network = Network::Isolated;
    let mut b = fx.agent("b");
    b.isolation = Isolation::Process;
    b.network = Network::Isolated;
    let (a, b) = tokio::try_join!(Sandbox::start(a), Sandbox::start(b)).unwrap();
    tokio::join!(ready(&a), ready(&b));
    let (ha, hb) = (hello(&a).await, hello(&b).await);
    let (ua, ub) = (ha["uid"].as_u64().unwrap(), hb["uid"].as_u64().unwrap());
    assert_ne!(ua, ub);
    assert!(ua >= u64::from(DEFAULT_FIRST_UID) && ub >= u64::from(DEFAULT_FIRST_UID));
    let kill = format!(
        "import errno, os, signal\n\
         for sig in [0, signal.SIGKILL]:\n\
         \x20   try:\n        os.kill({pid}, sig)\n        print('sent')\n\
         \x20   except OSError as e:\n        print(errno.errorcode[e.errno])",
        pid = hb["pid"]
    );
    assert_eq!(run(&a, &kill).await.trim(), "EPERM\nEPERM");
    assert_eq!(hello(&b).await["name"], "b");
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
}
