//! Container images as versions: the seam between a version's `containerUri` and what a session
//! backend runs. [`Images`] resolves a reference to the digest the version pins and makes the
//! image's files available; `berth_oci` implements it (pull, verify, unpack into the layer cache).
//! The namespace backend stacks the layers into the sandbox's root; a container or Kubernetes
//! backend would hand the pinned reference to its own runtime instead.

use std::path::PathBuf;

use async_trait::async_trait;

mod oci;
pub use oci::OciImages;

/// An image ready to run: the digest a version pins, and what its configuration says to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image manifest's digest (`sha256:...`) for this host's platform.
    pub digest: String,
    /// The unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The image's entrypoint followed by its command.
    pub argv: Vec<String>,
    /// The image's environment, in order.
    pub env: Vec<(String, String)>,
    /// The working directory inside the image (`/` when the image names none).
    pub working_dir: PathBuf,
    /// The user the image names (`USER`), resolved against the image's `/etc/passwd` and
    /// `/etc/group` to (uid, gid); `None` for root. The agent still runs as a uid of its own; the
    /// image user's files are shown as its own.
    pub user: Option<(u32, u32)>,
}

/// The files of an image version, as session backends get them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// The pinned manifest digest.
    pub digest: String,
    /// Unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The image user (uid, gid), `None` for root.
    pub user: Option<(u32, u32)>,
}

/// Resolves an image's `User` (`name`, `uid`, `name:group`, `uid:gid`, empty for root) against
/// the image's `/etc/passwd` and `/etc/group` as its layers (bottom first) leave them, the way a
/// container runtime does: a name must exist; a bare uid takes its passwd entry's group, else 0.
pub fn resolve_user(layers: &[PathBuf], user: &str) -> Result<Option<(u32, u32)>, ImageError> {
    let user = user.trim();
    if user.is_empty() {
        return Ok(None);
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = image_file(layers, "etc/passwd");
    let entry = |name_or_id: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let (uid, gid) = (
                f.get(2)?.parse::<u32>().ok()?,
                f.get(3)?.parse::<u32>().ok()?,
            );
            (f[0] == name_or_id || uid.to_string() == name_or_id).then_some((uid, gid))
        })
    };
    let (uid, primary) = match (u.parse::<u32>(), entry(u)) {
        (_, Some(found)) => found,
        (Ok(uid), None) => (uid, 0),
        (Err(_), None) => {
            return Err(ImageError(format!(
                "the image's user {u:?} is not in its /etc/passwd"
            )));
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => image_file(layers, "etc/group")
                .lines()
                .find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (f[0] == g).then(|| f.get(2)?.parse::<u32>().ok())?
                })
                .ok_or_else(|| {
                    ImageError(format!("the image's group {g:?} is not in its /etc/group"))
                })?,
        },
    };
    Ok(Some((uid, gid)))
}

/// A regular file of the image as its layers leave it (the topmost layer holding it; a
/// whiteout or anything but a regular file there ends the search), or empty.
fn image_file(layers: &[PathBuf], path: &str) -> String {
    for layer in layers.iter().rev() {
        match std::fs::symlink_metadata(layer.join(path)) {
            Ok(m) if m.is_file() => {
                return std::fs::read_to_string(layer.join(path)).unwrap_or_default();
            }
            Ok(_) => return String::new(),
            Err(_) => continue,
        }
    }
    String::new()
}

/// Why an image cannot be had; the text becomes the version's `failureReason`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImageError(pub String);

/// An image in the cache, for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedImage {
    /// The digest versions pin.
    pub digest: String,
    /// The reference it was pulled by.
    pub reference: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Uncompressed bytes of its layers.
    pub size_bytes: u64,
    /// How many layers it has.
    pub layers: usize,
}

/// What a prune removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    /// Digests of the images forgotten.
    pub images: Vec<String>,
    /// Layers removed (by uncompressed digest).
    pub layers: Vec<String>,
}

/// Where images come from.
#[async_trait]
pub trait Images: Send + Sync {
    /// The images in the cache.
    async fn cached(&self) -> Result<Vec<CachedImage>, ImageError>;

    /// Removes every cached image not in `keep` (digests), and the layers no kept image uses.
    async fn prune(&self, keep: &[String]) -> Result<Pruned, ImageError>;

    /// Resolves `uri` (a tag or a digest) to the image for this host and makes its files
    /// available: what a new version pins.
    async fn pull(&self, uri: &str) -> Result<PulledImage, ImageError>;

    /// The image a version pinned: from the cache, else pulled again by `digest` (never by tag,
    /// so a moved tag cannot change a version).
    async fn pinned(&self, uri: &str, digest: &str) -> Result<PulledImage, ImageError>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layers(dir: &std::path::Path) -> Vec<PathBuf> {
        let base = dir.join("base");
        let top = dir.join("top");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::write(base.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(
            top.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbedrock_agentcore:x:1000:1001::/home/b:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(top.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        vec![base, top]
    }

    #[test]
    fn users_resolve_as_a_container_runtime_resolves_them() {
        let dir = tempfile::tempdir().unwrap();
        let l = layers(dir.path());
        assert_eq!(resolve_user(&l, "").unwrap(), None);
        assert_eq!(
            resolve_user(&l, "bedrock_agentcore").unwrap(),
            Some((1000, 1001))
        );
        assert_eq!(resolve_user(&l, "1000").unwrap(), Some((1000, 1001)));
        assert_eq!(resolve_user(&l, "4242").unwrap(), Some((4242, 0)));
        assert_eq!(
            resolve_user(&l, "bedrock_agentcore:staff").unwrap(),
            Some((1000, 50))
        );
        assert_eq!(resolve_user(&l, "1000:7").unwrap(), Some((1000, 7)));
        assert!(
            resolve_user(&l, "nobody_here")
                .unwrap_err()
                .0
                .contains("/etc/passwd")
        );
        assert!(
            resolve_user(&l, "1000:nogroup")
                .unwrap_err()
                .0
                .contains("/etc/group")
        );
        // The top layer's passwd is the image's; the base's is hidden.
        assert!(resolve_user(&l[..1], "bedrock_agentcore").is_err());
    }
}
