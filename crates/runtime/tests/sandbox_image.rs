//! A container image as a sandbox's root: the image's layers under a per-session writable layer,
//! with every other wall of the namespace sandbox unchanged.
//!
//! The layers are made here from Debian's static busybox (scripts/setup-debian.sh installs
//! `busybox-static`), with overlayfs whiteouts and an opaque directory as an unpacked image has them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sandbox_support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::sandbox::{DEFAULT_LAYER_BYTES, ImageRoot, Sandbox, SandboxSpec};
use sandbox_support::{Fixture, eventually};

const BUSYBOX: &str = "/bin/busybox";
/// The image user of the test layers (`USER 4000` in a Dockerfile).
const IMAGE_UID: u32 = 4000;

fn dir(p: &Path, mode: u32) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn file(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// An overlayfs whiteout: a 0/0 character device.
fn whiteout(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; mknod has no other preconditions.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    assert_eq!(r, 0, "mknod {}", p.display());
}

fn opaque(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {}", p.display());
}

/// Two layers: a busybox base, and a top layer that deletes a file of the base, replaces a
/// directory of it (opaque) and adds the app.
fn layers(base: &Path) -> Vec<PathBuf> {
    let bottom = base.join("layers/base");
    for d in ["bin", "etc", "app", "dir", "scratch", "tmp"] {
        dir(&bottom.join(d), 0o755);
    }
    dir(&bottom.join("scratch"), 0o1777);
    dir(&bottom.join("tmp"), 0o1777);
    std::fs::copy(BUSYBOX, bottom.join("bin/busybox")).unwrap();
    for tool in [
        "sh", "cat", "ls", "id", "echo", "test", "pwd", "touch", "mount", "grep",
    ] {
        symlink("busybox", bottom.join("bin").join(tool)).unwrap();
    }
    file(&bottom.join("etc/os-release"), "NAME=image-base\n");
    file(
        &bottom.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    );
    file(&bottom.join("gone.txt"), "deleted by the top layer\n");
    file(&bottom.join("dir/old"), "hidden by the opaque top dir\n");

    let top = base.join("layers/top");
    dir(&top, 0o755);
    whiteout(&top.join("gone.txt"));
    dir(&top.join("dir"), 0o755);
    opaque(&top.join("dir"));
    file(&top.join("dir/new"), "from the top layer\n");
    dir(&top.join("app"), 0o755);
    file(&top.join("app/hello"), "hello from the image\n");
    // The image user's home, as `useradd -m` leaves it.
    dir(&top.join("home/app"), 0o755);
    file(&top.join("home/app/.profile"), "# the user's\n");
    for p in [top.join("home/app"), top.join("home/app/.profile")] {
        std::os::unix::fs::lchown(&p, Some(IMAGE_UID), Some(IMAGE_UID)).unwrap();
    }
    vec![bottom, top]
}

fn image_spec(fx: &Fixture, name: &str, layers: Vec<PathBuf>, script: &str) -> SandboxSpec {
    let mut spec = fx.command(name, &[]);
    spec.code_dir = PathBuf::from("/app");
    spec.argv = vec!["sh".into(), "-c".into(), script.into()];
    spec.env.push(("PATH".into(), "/usr/bin:/bin".into()));
    spec.image = Some(ImageRoot {
        layers,
        layer_bytes: DEFAULT_LAYER_BYTES,
        user: None,
    });
    spec
}

/// Runs `script` in a sandbox over `layers` to its end; returns what it printed.
async fn run(fx: &Fixture, name: &str, layers: Vec<PathBuf>, script: &str) -> String {
    run_spec(image_spec(fx, name, layers, script)).await
}

async fn run_spec(spec: SandboxSpec) -> String {
    let sb = Sandbox::start(spec).await.unwrap();
    let info = sb.exited().await;
    let log = sb.log_path().to_path_buf();
    // The pump finishes draining the pipes on its own once every writer is gone.
    eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("out END"))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    sb.destroy().await.unwrap();
    assert_eq!(info.code, Some(0), "{info}\n{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("out "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_the_root_with_its_layers_merged_and_a_writable_layer_of_its_own() {
    let fx = Fixture::new();
    let layers = layers(fx.base.path());
    let script = "pwd; cat /etc/os-release; cat hello; \
        test -e /gone.txt && echo gone-present || echo gone-absent; \
        ls /dir; id -u; \
        echo written > /scratch/new && cat /scratch/new; \
        echo t > /tmp/t && echo tmp-ok; \
        ls /; grep -c ' / ' /proc/self/mountinfo; echo END";
    let out = run(&fx, "image", layers.clone(), script).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/app", "{out}");
    assert!(out.contains("NAME=image-base"), "{out}");
    assert!(out.contains("hello from the image"), "{out}");
    assert!(
        out.contains("gone-absent"),
        "the whiteout hides the base's file: {out}"
    );
    assert!(
        out.contains("\nnew\n"),
        "the opaque dir shows only its own: {out}"
    );
    assert!(!out.contains("old"), "{out}");
    let uid: u32 = lines
        .iter()
        .find_map(|l| l.parse().ok())
        .expect("id -u printed");
    assert_ne!(uid, 0, "the agent never runs as root");
    assert!(
        out.contains("written"),
        "the writable layer takes writes: {out}"
    );
    assert!(out.contains("tmp-ok"), "{out}");
    // Nothing of the host: the root lists the image's entries and the sandbox's mounts only.
    for host_only in ["root", "work", "var", "usr"] {
        assert!(
            !out.lines().any(|l| l == host_only),
            "{host_only} is in the root: {out}"
        );
    }
    // The session's writes never reach the shared layers.
    for l in &layers {
        assert!(!l.join("scratch/new").exists());
    }
    assert!(layers[0].join("gone.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_one_image_do_not_see_each_others_writes() {
    let fx = Fixture::new();
    let layers = layers(fx.base.path());
    let first = run(
        &fx,
        "first",
        layers.clone(),
        "echo mine > /scratch/mine; echo END",
    )
    .await;
    assert!(first.contains("END"));
    let second = run(
        &fx,
        "second",
        layers,
        "test -e /scratch/mine && echo seen || echo unseen; echo END",
    )
    .await;
    assert!(second.contains("unseen"), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_an_image_plants_at_mount_points_do_not_redirect_the_mounts() {
    let fx = Fixture::new();
    let mut layers = layers(fx.base.path());
    let evil = fx.base.path().join("layers/evil");
    dir(&evil, 0o755);
    // Where the sandbox mounts its own /tmp, /proc and /etc/hosts.
    symlink("/", evil.join("tmp")).unwrap();
    symlink(fx.base.path(), evil.join("proc")).unwrap();
    dir(&evil.join("etc"), 0o755);
    symlink("/etc/shadow", evil.join("etc/hosts")).unwrap();
    layers.push(evil);
    let out = run(
        &fx,
        "links",
        layers,
        "test -L /tmp && echo tmp-link || echo tmp-dir; test -L /proc && echo proc-link || echo proc-dir; \
         cat /etc/hosts; ls /proc/self/ >/dev/null && echo proc-ok; echo END",
    )
    .await;
    assert!(out.contains("tmp-dir"), "{out}");
    assert!(out.contains("proc-dir") && out.contains("proc-ok"), "{out}");
    assert!(out.contains("localhost"), "Berth's hosts file: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_missing_from_the_image_fails_the_start_clearly() {
    let fx = Fixture::new();
    let layers = layers(fx.base.path());
    let mut spec = image_spec(&fx, "missing", layers, "");
    spec.argv = vec!["python3".into(), "-m".into(), "agent".into()];
    let err = Sandbox::start(spec)
        .await
        .err()
        .expect("no python3 in the image");
    let text = err.to_string();
    assert!(
        text.contains("python3") || text.contains("No such file"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_users_files_are_the_agents_own_and_roots_stay_roots() {
    let fx = Fixture::new();
    let layers = layers(fx.base.path());
    let script = "id -u; stat -c '%u' /home/app /home/app/.profile /app/hello; \
        echo mine > /home/app/new && echo home-writable; \
        echo x > /app/new 2>/dev/null && echo app-writable || echo app-readonly; echo END";
    let mut spec = image_spec(&fx, "user", layers.clone(), script);
    if let Some(image) = &mut spec.image {
        image.user = Some((IMAGE_UID, IMAGE_UID));
    }
    let out = run_spec(spec).await;
    let lines: Vec<&str> = out.lines().collect();
    let agent = lines[0];
    assert_ne!(agent, "0");
    assert_ne!(agent, IMAGE_UID.to_string());
    assert_eq!(&lines[1..4], [agent, agent, "0"], "{out}");
    assert!(out.contains("home-writable"), "{out}");
    assert!(out.contains("app-readonly"), "{out}");
    // The shared layer keeps the image's owners; the write went to the session's own layer.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(layers[1].join("home/app")).unwrap().uid(),
        IMAGE_UID
    );
    assert!(!layers[1].join("home/app/new").exists());

    // Without the mapping the user's home is someone else's.
    let out = run(
        &fx,
        "nouser",
        layers,
        "echo mine > /home/app/new 2>/dev/null && echo home-writable || echo home-refused; echo END",
    )
    .await;
    assert!(out.contains("home-refused"), "{out}");
}
