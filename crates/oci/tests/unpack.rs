//! The layer unpacker against hostile and well-formed layers built here, byte by byte where the
//! `tar` crate's builder would refuse to write them.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_oci::pull::Error;
use berth_oci::reference::Digest;
use berth_oci::unpack::{Compression, LayerCache, Limits};
use tar::{EntryType, Header};

/// One entry, its name and link name written raw into a GNU header.
struct E<'a> {
    path: &'a str,
    kind: EntryType,
    link: &'a str,
    data: &'a [u8],
    mode: u32,
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        path,
        kind: EntryType::Regular,
        link: "",
        data,
        mode: 0o644,
    }
}

fn dir(path: &str) -> E<'_> {
    E {
        path,
        kind: EntryType::Directory,
        link: "",
        data: b"",
        mode: 0o755,
    }
}

fn symlink<'a>(path: &'a str, target: &'a str) -> E<'a> {
    E {
        path,
        kind: EntryType::Symlink,
        link: target,
        data: b"",
        mode: 0o777,
    }
}

fn hardlink<'a>(path: &'a str, target: &'a str) -> E<'a> {
    E {
        path,
        kind: EntryType::Link,
        link: target,
        data: b"",
        mode: 0o644,
    }
}

fn header(e: &E<'_>) -> Header {
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().expect("a gnu header");
        gnu.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.mode);
    h.set_size(e.data.len() as u64);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        b.append(&header(e), e.data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn sha(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

struct Fixture {
    _dir: tempfile::TempDir,
    cache: LayerCache,
}

fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = LayerCache::open_with(dir.path().join("images"), limits).expect("open cache");
    Fixture { _dir: dir, cache }
}

async fn unpack(
    f: &Fixture,
    blob: &[u8],
    compression: Compression,
    diff_id: &Digest,
) -> Result<u64, Error> {
    let guard = f.cache.lock_layer(diff_id).await;
    f.cache.unpack_layer(&guard, blob, compression, u64::MAX)
}

/// Unpacks a plain tar and returns the error it must fail with, after checking the cache is as
/// it was: no staging left, no layer.
async fn refused(f: &Fixture, tar: &[u8]) -> Error {
    let err = unpack(f, tar, Compression::None, &sha(tar))
        .await
        .expect_err("the layer must be refused");
    assert_unchanged(f);
    err
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_unchanged(f: &Fixture) {
    let root = f.cache.root();
    assert_eq!(
        names(&root.join("tmp")),
        Vec::<String>::new(),
        "staging left behind"
    );
    assert_eq!(
        names(&root.join("layers/sha256")),
        Vec::<String>::new(),
        "a layer was cached"
    );
}

fn unsafe_entry(e: &Error) -> bool {
    matches!(e, Error::UnsafeEntry { .. })
}

#[tokio::test]
async fn dotdot_path_is_refused() {
    let f = fixture(Limits::default());
    let e = refused(&f, &tar_of(&[file("../x", b"escaped")])).await;
    assert!(unsafe_entry(&e), "{e}");
    assert!(e.to_string().contains(".."), "{e}");
    let e = refused(&f, &tar_of(&[dir("a/"), file("a/../../x", b"escaped")])).await;
    assert!(unsafe_entry(&e), "{e}");
}

#[tokio::test]
async fn absolute_path_is_refused() {
    let f = fixture(Limits::default());
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("abs");
    let e = refused(&f, &tar_of(&[file(target.to_str().expect("utf-8"), b"x")])).await;
    assert!(unsafe_entry(&e), "{e}");
    assert!(e.to_string().contains("absolute"), "{e}");
    assert!(!target.exists());
}

#[tokio::test]
async fn symlink_to_root_then_a_file_under_it_is_refused() {
    let f = fixture(Limits::default());
    let outside = tempfile::tempdir().expect("tempdir");
    let rel = outside
        .path()
        .strip_prefix("/")
        .expect("absolute tempdir")
        .join("pwned");
    let evil = format!("evil/{}", rel.display());
    let e = refused(&f, &tar_of(&[symlink("evil", "/"), file(&evil, b"x")])).await;
    assert!(unsafe_entry(&e), "{e}");
    assert!(e.to_string().contains("symlink"), "{e}");
    assert!(!outside.path().join("pwned").exists());

    // The same through a relative symlink climbing out of the layer.
    let up = format!("up/{}", rel.display());
    let e = refused(
        &f,
        &tar_of(&[
            symlink("up", "../../../../../../../../../.."),
            file(&up, b"x"),
        ]),
    )
    .await;
    assert!(unsafe_entry(&e), "{e}");
    assert!(!outside.path().join("pwned").exists());
}

#[tokio::test]
async fn symlink_chain_escaping_is_refused() {
    let f = fixture(Limits::default());
    let e = refused(
        &f,
        &tar_of(&[
            dir("d/"),
            symlink("d/l", "../../../.."),
            symlink("a", "b"),
            symlink("b", "d/l"),
            file("a/x", b"x"),
        ]),
    )
    .await;
    assert!(unsafe_entry(&e), "{e}");
    // A directory entry through a symlink is refused the same way.
    let e = refused(&f, &tar_of(&[symlink("s", "/tmp"), dir("s/sub/")])).await;
    assert!(unsafe_entry(&e), "{e}");
}

#[tokio::test]
async fn hard_links_out_of_the_layer_are_refused() {
    let f = fixture(Limits::default());
    for tar in [
        tar_of(&[hardlink("h", "../../../../etc/passwd")]),
        tar_of(&[hardlink("h", "/etc/passwd")]),
        tar_of(&[symlink("s", "/etc"), hardlink("h", "s/passwd")]),
        tar_of(&[hardlink("h", "not-an-earlier-entry")]),
    ] {
        let e = refused(&f, &tar).await;
        assert!(unsafe_entry(&e), "{e}");
    }
}

#[tokio::test]
async fn sparse_entry_claiming_10_gb_is_too_large_without_writing_it() {
    let f = fixture(Limits::default());
    let real: u64 = 10 << 30;
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().expect("a gnu header");
        gnu.name[..6].copy_from_slice(b"sparse");
        let octal = |v: u64| format!("{v:012o}").into_bytes();
        gnu.realsize.copy_from_slice(&octal(real));
        gnu.sparse[0].offset.copy_from_slice(&octal(real - 512));
        gnu.sparse[0].numbytes.copy_from_slice(&octal(512));
    }
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(512);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[7u8; 512][..]).expect("append");
    let tar = b.into_inner().expect("finish");
    let e = refused(&f, &tar).await;
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

#[tokio::test]
async fn gzip_bomb_past_the_limit_is_too_large() {
    let limits = Limits {
        max_layer_bytes: 1 << 20,
        ..Limits::default()
    };
    let f = fixture(limits);
    // A 64 MiB file of zeros: the header's claim trips the limit.
    let zeros = vec![0u8; 64 << 20];
    let tar = tar_of(&[file("zeros", &zeros)]);
    let bomb = gzip(&tar);
    assert!(bomb.len() < 1 << 20, "the bomb is small compressed");
    let e = unpack(&f, &bomb, Compression::Gzip, &sha(&tar))
        .await
        .expect_err("bomb");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert_unchanged(&f);

    // Small entries but 64 MiB of padding after the archive: the bytes actually read trip it.
    let mut padded = tar_of(&[file("small", b"hello")]);
    padded.extend_from_slice(&zeros);
    let e = unpack(&f, &gzip(&padded), Compression::Gzip, &sha(&padded))
        .await
        .expect_err("padded bomb");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert_unchanged(&f);
}

#[tokio::test]
async fn entry_count_limit() {
    let f = fixture(Limits {
        max_entries: 3,
        ..Limits::default()
    });
    let tar = tar_of(&[
        file("a", b"1"),
        file("b", b"2"),
        file("c", b"3"),
        file("d", b"4"),
    ]);
    let e = refused(&f, &tar).await;
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("entry count"), "{e}");
}

#[tokio::test]
async fn corrupt_gzip_is_corrupt() {
    let f = fixture(Limits::default());
    let tar = tar_of(&[file("a", &[b'x'; 100_000])]);
    let good = gzip(&tar);
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let truncated = &good[..good.len() - 20];
    for blob in [&flipped[..], truncated, b"not gzip at all"] {
        let e = unpack(&f, blob, Compression::Gzip, &sha(&tar))
            .await
            .expect_err("corrupt");
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert_unchanged(&f);
    }
}

#[tokio::test]
async fn wrong_diff_id_is_a_digest_mismatch() {
    let f = fixture(Limits::default());
    let tar = tar_of(&[file("a", b"content")]);
    let e = unpack(&f, &tar, Compression::None, &sha(b"something else"))
        .await
        .expect_err("mismatch");
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert_unchanged(&f);
}

#[tokio::test]
async fn whiteouts_and_opaque_directories_become_overlay_markers() {
    let f = fixture(Limits::default());
    let tar = tar_of(&[
        dir("etc/"),
        file("etc/.wh.passwd", b""),
        dir("var/"),
        file("var/.wh..wh..opq", b""),
        file("var/new", b"n"),
        file(".wh.gone-dir", b""),
    ]);
    let diff_id = sha(&tar);
    unpack(&f, &tar, Compression::None, &diff_id)
        .await
        .expect("unpack");
    let layer = f.cache.layer_dir(&diff_id);
    for whiteout in [layer.join("etc/passwd"), layer.join("gone-dir")] {
        let meta = std::fs::symlink_metadata(&whiteout).expect("whiteout exists");
        assert!(meta.file_type().is_char_device(), "{}", whiteout.display());
        assert_eq!(meta.rdev(), 0);
    }
    assert!(!layer.join("etc/.wh.passwd").exists());
    assert!(!layer.join("var/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(layer.join("var/new")).expect("new"), b"n");
    let mut value = [0u8; 8];
    let n = rustix::fs::getxattr(layer.join("var"), "user.overlay.opaque", &mut value)
        .expect("user.overlay.opaque");
    assert_eq!(&value[..n], b"y");
    if rustix::process::geteuid().is_root() {
        let n = rustix::fs::getxattr(layer.join("var"), "trusted.overlay.opaque", &mut value)
            .expect("trusted.overlay.opaque");
        assert_eq!(&value[..n], b"y");
    }
    assert!(rustix::fs::getxattr(layer.join("etc"), "user.overlay.opaque", &mut value).is_err());
}

#[tokio::test]
async fn a_well_formed_layer_unpacks_with_modes_links_and_no_devices() {
    let f = fixture(Limits::default());
    let mut suid = file("bin/su", b"#!/bin/sh\n");
    suid.mode = 0o4755;
    let mut sgid = file("bin/sg", b"x");
    sgid.mode = 0o2750;
    let mut private = dir("private/");
    private.mode = 0o700;
    let mut readonly = dir("ro/");
    readonly.mode = 0o555;
    let fifo = E {
        path: "fifo",
        kind: EntryType::Fifo,
        link: "",
        data: b"",
        mode: 0o644,
    };
    let dev = E {
        path: "dev-null",
        kind: EntryType::Char,
        link: "",
        data: b"",
        mode: 0o666,
    };
    let tar = tar_of(&[
        dir("./"),
        dir("bin/"),
        suid,
        sgid,
        private,
        readonly,
        file("ro/inside", b"r"),
        file("./usr/lib/deep/file", b"implicit parents"),
        symlink("bin/python", "/usr/bin/python3"),
        hardlink("bin/su-again", "bin/su"),
        fifo,
        dev,
        file("dup", b"first"),
        file("dup", b"second"),
    ]);
    let mut padded = tar.clone();
    padded.extend_from_slice(&[0u8; 4096]);
    let diff_id = sha(&padded);
    let size = unpack(&f, &gzip(&padded), Compression::Gzip, &diff_id)
        .await
        .expect("unpack");
    assert_eq!(size, padded.len() as u64);
    let layer = f.cache.layer_dir(&diff_id);
    let mode = |p: &str| {
        std::fs::symlink_metadata(layer.join(p))
            .expect(p)
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/su"), 0o755, "setuid cleared");
    assert_eq!(mode("bin/sg"), 0o750, "setgid cleared");
    assert_eq!(mode("private"), 0o700);
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(
        std::fs::read(layer.join("ro/inside")).expect("ro/inside"),
        b"r"
    );
    assert_eq!(
        std::fs::read(layer.join("usr/lib/deep/file")).expect("deep"),
        b"implicit parents"
    );
    assert_eq!(
        std::fs::read_link(layer.join("bin/python")).expect("symlink"),
        Path::new("/usr/bin/python3")
    );
    let a = std::fs::metadata(layer.join("bin/su")).expect("su");
    let b = std::fs::metadata(layer.join("bin/su-again")).expect("su-again");
    assert_eq!(a.ino(), b.ino(), "a hard link within the layer");
    assert_eq!(a.mtime(), 1_700_000_000);
    assert!(!layer.join("fifo").exists() && !layer.join("dev-null").exists());
    assert_eq!(std::fs::read(layer.join("dup")).expect("dup"), b"second");
    if rustix::process::geteuid().is_root() {
        assert_eq!((a.uid(), a.gid()), (1234, 5678), "ownership kept as root");
        let link = std::fs::symlink_metadata(layer.join("bin/python")).expect("link");
        assert_eq!((link.uid(), link.gid()), (1234, 5678));
    }
    assert_eq!(f.cache.layer_size(&diff_id), Some(size));
    assert_eq!(names(&f.cache.root().join("tmp")), Vec::<String>::new());

    // Unpacked once: a second unpack of the same diff_id finds it, whatever the blob.
    let again = unpack(&f, b"ignored", Compression::None, &diff_id)
        .await
        .expect("cached");
    assert_eq!(again, size);
}

#[tokio::test]
async fn zstd_layers_unpack() {
    let f = fixture(Limits::default());
    let tar = tar_of(&[file("z", b"zstd content")]);
    let blob = zstd::encode_all(&tar[..], 3).expect("zstd");
    let diff_id = sha(&tar);
    unpack(&f, &blob, Compression::Zstd, &diff_id)
        .await
        .expect("unpack");
    assert_eq!(
        std::fs::read(f.cache.layer_dir(&diff_id).join("z")).expect("z"),
        b"zstd content"
    );
}

#[tokio::test]
async fn concurrent_unpacks_of_one_layer_share_the_result() {
    let f = fixture(Limits::default());
    let tar = tar_of(&[file("shared", b"once")]);
    let diff_id = sha(&tar);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cache = f.cache.clone();
        let tar = tar.clone();
        let diff_id = diff_id.clone();
        tasks.push(tokio::spawn(async move {
            let guard = cache.lock_layer(&diff_id).await;
            tokio::task::spawn_blocking(move || {
                cache.unpack_layer(&guard, &tar[..], Compression::None, u64::MAX)
            })
            .await
            .expect("join")
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("unpack"), tar.len() as u64);
    }
    assert_eq!(
        names(&f.cache.root().join("layers/sha256")).len(),
        2,
        "one layer, one size sidecar"
    );
    assert_eq!(names(&f.cache.root().join("tmp")), Vec::<String>::new());
}

#[test]
fn reopening_empties_staging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("images");
    let cache = LayerCache::open(&root).expect("open");
    let stale = cache.root().join("tmp/layer-stale");
    std::fs::create_dir_all(stale.join("ro")).expect("stale");
    std::fs::set_permissions(stale.join("ro"), std::fs::Permissions::from_mode(0o555))
        .expect("chmod");
    drop(cache);
    let cache = LayerCache::open(&root).expect("reopen");
    assert_eq!(names(&cache.root().join("tmp")), Vec::<String>::new());
}

fn pax_record(key: &str, value: &str) -> String {
    // "<len> key=value\n" where len counts itself.
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

#[tokio::test]
async fn long_names_and_pax_paths_unpack_and_are_checked() {
    let f = fixture(Limits::default());
    let long = format!("{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    b.append_data(&mut h, &long, &b"long"[..])
        .expect("gnu long name");
    let pax = pax_record("path", &format!("{}/pax-file", "p".repeat(120)));
    let mut x = Header::new_ustar();
    x.set_entry_type(EntryType::XHeader);
    x.set_size(pax.len() as u64);
    x.set_cksum();
    b.append(&x, pax.as_bytes()).expect("pax header");
    b.append(&header(&file("short-name", b"pax")), &b"pax"[..])
        .expect("pax entry");
    let tar = b.into_inner().expect("tar");
    let diff_id = sha(&tar);
    unpack(&f, &tar, Compression::None, &diff_id)
        .await
        .expect("unpack");
    let layer = f.cache.layer_dir(&diff_id);
    assert_eq!(std::fs::read(layer.join(&long)).expect("long"), b"long");
    let pax_path = format!("{}/pax-file", "p".repeat(120));
    assert_eq!(
        std::fs::read(layer.join(pax_path)).expect("pax path"),
        b"pax"
    );
    assert!(!layer.join("short-name").exists(), "the pax path wins");

    // A PAX path is checked like any other.
    let f = fixture(Limits::default());
    let pax = pax_record("path", "../../escaped");
    let mut b = tar::Builder::new(Vec::new());
    let mut x = Header::new_ustar();
    x.set_entry_type(EntryType::XHeader);
    x.set_size(pax.len() as u64);
    x.set_cksum();
    b.append(&x, pax.as_bytes()).expect("pax header");
    b.append(&header(&file("innocent", b"x")), &b"x"[..])
        .expect("entry");
    let e = refused(&f, &b.into_inner().expect("tar")).await;
    assert!(unsafe_entry(&e), "{e}");
}

#[tokio::test]
async fn a_huge_pax_header_is_too_large_before_it_is_buffered() {
    let f = fixture(Limits::default());
    let claimed = 64usize << 20;
    let mut x = Header::new_ustar();
    x.set_entry_type(EntryType::XHeader);
    x.set_size(claimed as u64);
    x.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&x, &vec![b'a'; claimed][..]).expect("pax header");
    b.append(&header(&file("after", b"x")), &b"x"[..])
        .expect("entry");
    let tar = b.into_inner().expect("tar");
    let e = unpack(&f, &gzip(&tar), Compression::Gzip, &sha(&tar))
        .await
        .expect_err("huge pax");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("metadata"), "{e}");
    assert_unchanged(&f);
}

#[tokio::test]
async fn a_file_replacing_a_symlink_does_not_write_through_it() {
    let f = fixture(Limits::default());
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("target");
    let tar = tar_of(&[
        symlink("f", target.to_str().expect("utf-8")),
        file("f", b"inside"),
        symlink("g", target.to_str().expect("utf-8")),
        dir("g/"),
    ]);
    let diff_id = sha(&tar);
    unpack(&f, &tar, Compression::None, &diff_id)
        .await
        .expect("unpack");
    let layer = f.cache.layer_dir(&diff_id);
    assert!(!target.exists());
    assert_eq!(std::fs::read(layer.join("f")).expect("f"), b"inside");
    assert!(
        std::fs::symlink_metadata(layer.join("g"))
            .expect("g")
            .is_dir()
    );
}

#[tokio::test]
async fn the_image_budget_limits_a_layer() {
    let f = fixture(Limits {
        max_image_bytes: 64 << 10,
        ..Limits::default()
    });
    let tar = tar_of(&[file("big", &[1u8; 32 << 10])]);
    let diff_id = sha(&tar);
    let guard = f.cache.lock_layer(&diff_id).await;
    // The image's other layers already used all but 8 KiB of its budget.
    let e = f
        .cache
        .unpack_layer(&guard, &tar[..], Compression::None, 8 << 10)
        .expect_err("over the image budget");
    assert!(
        matches!(e, Error::TooLarge { limit, .. } if limit == 64 << 10),
        "{e}"
    );
    assert!(e.to_string().contains("image"), "{e}");
    assert_unchanged(&f);
    let size = f
        .cache
        .unpack_layer(&guard, &tar[..], Compression::None, 64 << 10)
        .expect("within budget");
    assert_eq!(size, tar.len() as u64);
}

const UNPRIVILEGED_DIR: &str = "BERTH_OCI_TEST_UNPRIVILEGED_DIR";

/// What an unprivileged Berth (user namespaces, no root) gets: whiteouts still made (Linux >=
/// 5.8), `user.overlay.opaque` set, ownership ignored, and read-only directories still removable
/// by prune. As root the test re-runs itself as `nobody` through `setpriv`.
#[tokio::test]
async fn unpacks_as_an_unprivileged_user() {
    if let Some(dir) = std::env::var_os(UNPRIVILEGED_DIR) {
        return unprivileged_body(Path::new(&dir)).await;
    }
    if !rustix::process::geteuid().is_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        return unprivileged_body(dir.path()).await;
    }
    let setpriv = Path::new("/usr/bin/setpriv");
    assert!(
        setpriv.exists(),
        "util-linux's setpriv is part of every Debian system"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    rustix::fs::chown(
        dir.path(),
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .expect("chown the test dir to nobody");
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "unpacks_as_an_unprivileged_user",
            "--test-threads=1",
        ])
        .env(UNPRIVILEGED_DIR, dir.path())
        .output()
        .expect("run the test as nobody");
    assert!(
        out.status.success(),
        "as nobody:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

async fn unprivileged_body(root: &Path) {
    assert!(!rustix::process::geteuid().is_root());
    let cache = LayerCache::open(root.join("images")).expect("open cache");
    let f = Fixture {
        _dir: tempfile::tempdir().expect("tempdir"),
        cache,
    };
    let readonly = dir_entry_mode("ro/", 0o555);
    let tar = tar_of(&[
        readonly,
        file("ro/inside", b"r"),
        file("etc/.wh.passwd", b""),
        dir("var/"),
        file("var/.wh..wh..opq", b""),
        {
            let mut s = file("su", b"x");
            s.mode = 0o4755;
            s
        },
    ]);
    let diff_id = sha(&tar);
    unpack(&f, &tar, Compression::None, &diff_id)
        .await
        .expect("unpack as nobody");
    let layer = f.cache.layer_dir(&diff_id);
    let whiteout = std::fs::symlink_metadata(layer.join("etc/passwd")).expect("whiteout");
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    let mut value = [0u8; 8];
    let n = rustix::fs::getxattr(layer.join("var"), "user.overlay.opaque", &mut value)
        .expect("user.overlay.opaque");
    assert_eq!(&value[..n], b"y");
    let su = std::fs::metadata(layer.join("su")).expect("su");
    assert_eq!(su.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        su.uid(),
        rustix::process::geteuid().as_raw(),
        "ownership ignored"
    );
    assert_eq!(
        std::fs::metadata(layer.join("ro"))
            .expect("ro")
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
    let pruned = f.cache.prune(&[]).await.expect("prune as nobody");
    assert_eq!(pruned.layers, vec![diff_id]);
    assert_eq!(
        names(&f.cache.root().join("layers/sha256")),
        Vec::<String>::new()
    );
}

fn dir_entry_mode(path: &str, mode: u32) -> E<'_> {
    let mut d = dir(path);
    d.mode = mode;
    d
}
