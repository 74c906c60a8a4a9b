//! The puller against a real registry: Debian's `docker-registry` (the CNCF distribution server)
//! with htpasswd basic auth on a loopback port, images written here as OCI layouts and pushed with
//! `skopeo copy`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_oci::pull::{Error, Puller, host_platform};
use berth_oci::reference::{Credentials, Digest, HostConfig, Reference, Registries};
use berth_oci::unpack::LayerCache;
use serde_json::json;

const USER: &str = "berth";
const PASSWORD: &str = "s3cret-pw";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn have(binary: &str) -> bool {
    Path::new(binary).exists()
}

/// Skips (with a message) when the registry tools are not installed.
fn tools_present() -> bool {
    for b in [
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
        "/usr/bin/htpasswd",
    ] {
        if !have(b) {
            eprintln!("skipping: {b} is not installed (scripts/setup-debian.sh installs it)");
            return false;
        }
    }
    true
}

/// A `docker-registry serve` child on a loopback port; killed and reaped on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("run htpasswd");
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
        let port = free_port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: berth-test\n    path: {htpasswd}\n",
            storage = dir.path().join("storage").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut registry = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI layout's `tag` to `repo:tag` with skopeo (`--all` copies an index's images).
    fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool) {
        self.push_with(layout, tag, repo, if all { &["--all"] } else { &[] });
    }

    fn push_with(&self, layout: &Path, tag: &str, repo: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--insecure-policy").arg("copy").args(extra);
        let out = cmd
            .args(["--quiet", "--dest-tls-verify=false", "--dest-creds"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{repo}:{tag}", self.port))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The file the registry keeps a blob's bytes in.
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn registries(&self, password: &str) -> Registries {
        Registries {
            builtin: Some(HostConfig {
                url: Some(self.url()),
                credentials: Credentials::Basic {
                    username: USER.to_string(),
                    password: password.to_string(),
                },
                allow_http: false,
            }),
            hosts: Default::default(),
        }
    }
}

/// An OCI image layout written by hand.
struct Layout {
    dir: tempfile::TempDir,
    index: Vec<serde_json::Value>,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("blobs");
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        Self {
            dir,
            index: Vec::new(),
        }
    }

    fn blob(&self, bytes: &[u8]) -> Digest {
        let d = Digest::of(bytes);
        std::fs::write(self.dir.path().join("blobs/sha256").join(d.hex()), bytes).expect("blob");
        d
    }

    fn tag(&mut self, tag: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let d = self.blob(bytes);
        self.index.push(json!({
            "mediaType": media_type,
            "digest": d.to_string(),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        let index = json!({"schemaVersion": 2, "manifests": self.index});
        std::fs::write(self.dir.path().join("index.json"), index.to_string()).expect("index");
        d
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn layer_tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
        }
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// Writes an image of gzip layers (each a list of files) and returns the manifest's bytes.
fn image(layout: &Layout, layers: &[Vec<u8>], arch: &str) -> Vec<u8> {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let gz = gzip(tar);
        let d = layout.blob(&gz);
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(),
            "size": gz.len(),
        }));
        diff_ids.push(Digest::of(tar).to_string());
    }
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/run.sh"],
            "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "MODE=test"],
            "WorkingDir": "/app",
            "User": "1000:1000",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.example": "agent"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let c = layout.blob(config.as_bytes());
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": c.to_string(),
            "size": config.len(),
        },
        "layers": descs,
    })
    .to_string()
    .into_bytes()
}

fn agent_layers(marker: &str) -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[
            ("bin/", b"", 0o755),
            ("bin/run.sh", b"#!/bin/sh\nexec sleep 1\n", 0o4755),
            ("app/", b"", 0o755),
            ("app/old.txt", b"old", 0o644),
        ]),
        layer_tar(&[
            ("app/", b"", 0o755),
            ("app/.wh.old.txt", b"", 0o644),
            ("app/hello.txt", marker.as_bytes(), 0o644),
        ]),
    ]
}

fn reference(repo_tag: &str) -> Reference {
    Reference::parse(&format!("{ECR}/{repo_tag}")).expect("reference")
}

fn cache(dir: &Path) -> LayerCache {
    LayerCache::open(dir.join("images")).expect("open cache")
}

fn staging_is_empty(cache: &LayerCache) -> bool {
    std::fs::read_dir(cache.root().join("tmp"))
        .expect("tmp")
        .next()
        .is_none()
}

#[tokio::test]
async fn pulls_a_pushed_image_with_basic_auth() {
    if !tools_present() {
        return;
    }
    let registry = Registry::start();
    let mut layout = Layout::new();
    let manifest = image(
        &layout,
        &agent_layers("hello v1"),
        &host_platform().architecture,
    );
    let manifest_digest = layout.tag("v1", MANIFEST, &manifest);
    registry.push(layout.path(), "v1", "team/agent", false);

    let data = tempfile::tempdir().expect("tempdir");
    let puller = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    let r = reference("team/agent:v1");
    let digest = puller.resolve(&r).await.expect("resolve");
    assert_eq!(digest, manifest_digest, "the pushed manifest's digest");

    let img = puller.pull(&r.pinned(digest.clone())).await.expect("pull");
    assert_eq!(img.digest, digest);
    assert_eq!(img.manifest_digest, digest);
    assert_eq!(img.platform.os, "linux");
    assert_eq!(img.platform.architecture, host_platform().architecture);
    assert_eq!(img.config.entrypoint, ["/bin/run.sh"]);
    assert_eq!(img.config.cmd, ["--port", "8080"]);
    assert_eq!(img.config.env[1], "MODE=test");
    assert_eq!(img.config.working_dir.as_deref(), Some("/app"));
    assert_eq!(img.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(img.config.exposed_ports, ["8080/tcp"]);
    assert_eq!(img.config.labels["org.example"], "agent");
    let dirs = img.layer_dirs();
    assert_eq!(dirs.len(), 2);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dirs[0].join("bin/run.sh"))
            .expect("run.sh")
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755, "setuid cleared");
    assert_eq!(
        std::fs::read(dirs[1].join("app/hello.txt")).expect("hello"),
        b"hello v1"
    );
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(
            &std::fs::symlink_metadata(dirs[1].join("app/old.txt"))
                .expect("whiteout")
                .file_type()
        ),
        "the upper layer's whiteout"
    );
    assert_eq!(img.size, img.layers.iter().map(|l| l.size).sum::<u64>());
    assert!(staging_is_empty(puller.cache()));

    // A tag pull resolves to the same digest; the record survives a restart.
    let again = puller.pull(&r).await.expect("pull by tag");
    assert_eq!(again, img);
    let reopened = cache(data.path());
    assert_eq!(reopened.image(&digest).expect("read"), Some(img.clone()));

    // A second image sharing the first layer reuses it; prune keeps what kept images use.
    let mut layout2 = Layout::new();
    let mut layers2 = agent_layers("hello v1");
    layers2[1] = layer_tar(&[("app/", b"", 0o755), ("app/v2.txt", b"v2", 0o644)]);
    let m2 = image(&layout2, &layers2, &host_platform().architecture);
    let d2 = layout2.tag("v2", MANIFEST, &m2);
    registry.push(layout2.path(), "v2", "team/agent", false);
    let img2 = puller
        .pull(&reference("team/agent:v2"))
        .await
        .expect("pull v2");
    assert_eq!(img2.digest, d2);
    assert_eq!(img2.layer_dirs()[0], dirs[0], "shared bottom layer");

    let pruned = puller
        .cache()
        .prune(std::slice::from_ref(&d2))
        .await
        .expect("prune");
    assert_eq!(pruned.images, vec![digest.clone()]);
    assert_eq!(pruned.layers, vec![img.layers[1].diff_id.clone()]);
    assert!(dirs[0].is_dir() && !dirs[1].exists());
    assert_eq!(puller.cache().image(&digest).expect("read"), None);
    assert!(puller.cache().image(&d2).expect("read").is_some());
    let pruned = puller.cache().prune(&[]).await.expect("prune all");
    assert_eq!(pruned.layers.len(), 2);
    assert!(
        std::fs::read_dir(puller.cache().root().join("layers/sha256"))
            .expect("layers")
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn wrong_password_is_denied_and_missing_tag_is_not_found() {
    if !tools_present() {
        return;
    }
    let registry = Registry::start();
    let mut layout = Layout::new();
    let manifest = image(&layout, &agent_layers("x"), &host_platform().architecture);
    layout.tag("v1", MANIFEST, &manifest);
    registry.push(layout.path(), "v1", "team/agent", false);
    let data = tempfile::tempdir().expect("tempdir");

    let wrong = Puller::new(registry.registries("wrong"), cache(data.path()));
    let e = wrong
        .resolve(&reference("team/agent:v1"))
        .await
        .expect_err("denied");
    assert!(matches!(e, Error::Denied { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("access denied by registry 127.0.0.1:"),
        "{e}"
    );

    let right = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    for missing in ["team/agent:nope", "team/nothing:v1"] {
        let e = right
            .resolve(&reference(missing))
            .await
            .expect_err("missing");
        assert!(matches!(e, Error::NotFound { .. }), "{missing}: {e:?}");
        assert!(e.to_string().contains(missing), "{e}");
    }
    let absent = Digest::of(b"no such manifest");
    let e = right
        .pull(&reference("team/agent:v1").pinned(absent))
        .await
        .expect_err("missing digest");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    // Bound but not listening: the port stays ours (no other test's registry can take it) and
    // connections to it are refused.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let registries = Registries {
        builtin: Some(HostConfig {
            url: Some(format!("http://127.0.0.1:{port}")),
            ..HostConfig::default()
        }),
        hosts: Default::default(),
    };
    let data = tempfile::tempdir().expect("tempdir");
    let puller = Puller::new(registries, cache(data.path()));
    let e = puller
        .resolve(&reference("team/agent:v1"))
        .await
        .expect_err("unreachable");
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("unreachable"), "{e}");
}

#[tokio::test]
async fn an_index_without_the_host_platform_is_unsupported() {
    if !tools_present() {
        return;
    }
    let registry = Registry::start();
    let mut layout = Layout::new();
    let other = if host_platform().architecture == "s390x" {
        "riscv64"
    } else {
        "s390x"
    };
    let manifest = image(&layout, &agent_layers("other arch"), other);
    let m = layout.blob(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": m.to_string(),
            "size": manifest.len(),
            "platform": {"architecture": other, "os": "linux"},
        }],
    })
    .to_string();
    let index_digest = layout.tag("multi", INDEX, index.as_bytes());
    registry.push(layout.path(), "multi", "team/agent", true);

    let data = tempfile::tempdir().expect("tempdir");
    let puller = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    let r = reference("team/agent:multi");
    let digest = puller.resolve(&r).await.expect("resolve");
    assert_eq!(digest, index_digest, "the version pins the index");
    let e = puller
        .pull(&r.pinned(digest.clone()))
        .await
        .expect_err("platform");
    match &e {
        Error::UnsupportedPlatform {
            wanted, offered, ..
        } => {
            assert_eq!(wanted, &host_platform().to_string());
            assert_eq!(offered, &[format!("linux/{other}")]);
        }
        other => panic!("expected UnsupportedPlatform, got {other:?}"),
    }
    assert!(e.to_string().contains(&format!("linux/{other}")), "{e}");

    // Asked for that platform, the same index pulls its image.
    let puller = puller.with_platform(berth_oci::pull::Platform {
        os: "linux".into(),
        architecture: other.into(),
        variant: None,
    });
    let img = puller.pull(&r.pinned(digest.clone())).await.expect("pull");
    assert_eq!((img.digest, img.manifest_digest), (digest, m.clone()));

    // The platform manifest pulled directly is refused on this host by its config's platform.
    let host = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    let e = host
        .pull(&r.pinned(m))
        .await
        .expect_err("single-platform image of another arch");
    assert!(matches!(e, Error::UnsupportedPlatform { .. }), "{e:?}");
}

#[tokio::test]
async fn a_tampered_layer_is_a_digest_mismatch_and_leaves_nothing() {
    if !tools_present() {
        return;
    }
    let registry = Registry::start();
    let mut layout = Layout::new();
    let manifest = image(
        &layout,
        &agent_layers("tamper me"),
        &host_platform().architecture,
    );
    layout.tag("v1", MANIFEST, &manifest);
    registry.push(layout.path(), "v1", "team/agent", false);
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
    let top = Digest::parse(parsed["layers"][1]["digest"].as_str().expect("digest")).expect("d");
    // Same size, one byte changed: the registry serves it under the old digest.
    let stored = registry.blob_path(&top);
    let mut bytes = std::fs::read(&stored).expect("stored blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&stored, &bytes).expect("tamper");

    let data = tempfile::tempdir().expect("tempdir");
    let puller = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    let r = reference("team/agent:v1");
    let digest = puller.resolve(&r).await.expect("resolve");
    let e = puller
        .pull(&r.pinned(digest.clone()))
        .await
        .expect_err("tampered");
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains(&top.to_string()), "{e}");
    assert_eq!(puller.cache().image(&digest).expect("read"), None);
    assert!(staging_is_empty(puller.cache()));
    // The untampered bottom layer may stay cached (content-addressed and verified); the
    // tampered one is not there.
    let layers: Vec<String> = std::fs::read_dir(puller.cache().root().join("layers/sha256"))
        .expect("layers")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let tampered_diff_id = Digest::of(&agent_layers("tamper me")[1]);
    assert!(
        !layers.iter().any(|l| l.starts_with(tampered_diff_id.hex())),
        "{layers:?}"
    );
}

#[tokio::test]
async fn docker_schema2_images_and_concurrent_pulls() {
    if !tools_present() {
        return;
    }
    let registry = Registry::start();
    let mut layout = Layout::new();
    let manifest = image(
        &layout,
        &agent_layers("docker v2"),
        &host_platform().architecture,
    );
    layout.tag("v1", MANIFEST, &manifest);
    // skopeo converts to Docker's manifest and layer media types on the way.
    registry.push_with(layout.path(), "v1", "team/docker", &["--format", "v2s2"]);

    let data = tempfile::tempdir().expect("tempdir");
    let puller = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    let r = reference("team/docker:v1");
    let digest = puller.resolve(&r).await.expect("resolve");
    let pinned = r.pinned(digest.clone());
    let (a, b) = tokio::join!(puller.pull(&pinned), puller.pull(&pinned));
    let (a, b) = (a.expect("pull a"), b.expect("pull b"));
    assert_eq!(a, b);
    assert!(
        a.layers
            .iter()
            .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{:?}",
        a.layers
    );
    assert_eq!(
        std::fs::read(a.layer_dirs()[1].join("app/hello.txt")).expect("hello"),
        b"docker v2"
    );
    assert_eq!(a.config.entrypoint, ["/bin/run.sh"]);
    assert!(staging_is_empty(puller.cache()));
}

#[tokio::test]
async fn an_unknown_layer_media_type_is_refused_before_download() {
    if !tools_present() {
        return;
    }
    let registry = Registry::start();
    let mut layout = Layout::new();
    let manifest = image(
        &layout,
        &agent_layers("artifact"),
        &host_platform().architecture,
    );
    let mut parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
    parsed["layers"][0]["mediaType"] = json!("application/vnd.example.model.weights");
    let manifest = parsed.to_string().into_bytes();
    layout.tag("v1", MANIFEST, &manifest);
    registry.push(layout.path(), "v1", "team/artifact", false);

    let data = tempfile::tempdir().expect("tempdir");
    let puller = Puller::new(registry.registries(PASSWORD), cache(data.path()));
    let e = puller
        .pull(&reference("team/artifact:v1"))
        .await
        .expect_err("unsupported");
    match &e {
        Error::UnsupportedMediaType { media_type } => {
            assert_eq!(media_type, "application/vnd.example.model.weights");
        }
        other => panic!("expected UnsupportedMediaType, got {other:?}"),
    }
    assert!(
        std::fs::read_dir(puller.cache().root().join("layers/sha256"))
            .expect("layers")
            .next()
            .is_none()
    );
}
