//! Safe extraction of a code package (zip) into a fresh directory. Synchronous: run it on the
//! blocking pool.
//!
//! Refused: absolute names, `..` components, duplicate entries, symlinks whose target is absolute or
//! could leave the package, encrypted entries, more entries or more bytes than the limits. Sizes are
//! counted while inflating, not trusted from the headers.

use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::BuildError;

/// Bomb protection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Total uncompressed bytes over all entries.
    pub max_bytes: u64,
    /// Number of entries (files, directories, links).
    pub max_entries: usize,
}

/// The longest symlink target accepted.
const MAX_LINK_TARGET: u64 = 4096;

/// Extracts `zip` into `dest`, which must exist and be empty. Leaves files writable (the caller
/// makes the tree read-only once the whole build step succeeded).
pub(crate) fn unpack(zip: &[u8], dest: &Path, limits: Limits) -> Result<(), BuildError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))
        .map_err(|e| BuildError::InvalidZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(BuildError::TooLarge(format!(
            "{} entries, the limit is {}",
            archive.len(),
            limits.max_entries
        )));
    }

    let mut written: u64 = 0;
    let mut links: Vec<(String, PathBuf, String)> = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| BuildError::InvalidZip(e.to_string()))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let Some(rel) = safe_relative(&name)? else {
            // "./" or "" name nothing: skip rather than fail, some archivers emit them.
            continue;
        };
        if entry.encrypted() {
            return Err(BuildError::UnsafeEntry {
                entry: name,
                reason: "encrypted entries are not supported".into(),
            });
        }
        // Declared sizes are checked early for a cheap rejection; real bytes are counted below.
        if entry.size() > limits.max_bytes.saturating_sub(written) {
            return Err(too_many_bytes(limits));
        }
        let path = dest.join(&rel);
        if entry.is_symlink() {
            let mut target = String::new();
            entry
                .by_ref()
                .take(MAX_LINK_TARGET + 1)
                .read_to_string(&mut target)
                .map_err(|e| BuildError::InvalidZip(format!("reading link {name:?}: {e}")))?;
            if target.len() as u64 > MAX_LINK_TARGET {
                return Err(BuildError::UnsafeEntry {
                    entry: name,
                    reason: "symlink target is too long".into(),
                });
            }
            check_link_target(&rel, &target).map_err(|reason| BuildError::UnsafeEntry {
                entry: name.clone(),
                reason,
            })?;
            links.push((name, rel, target));
            continue;
        }
        if entry.is_dir() {
            fs::create_dir_all(&path).map_err(|e| unpack_io(&name, e))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| unpack_io(&name, e))?;
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mut out = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BuildError::UnsafeEntry {
                    entry: name,
                    reason: "duplicate entry".into(),
                });
            }
            Err(e) => return Err(unpack_io(&name, e)),
        };
        let budget = limits.max_bytes - written;
        let copied = io::copy(&mut entry.by_ref().take(budget + 1), &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                BuildError::InvalidZip(format!("entry {name:?}: {e}"))
            } else {
                unpack_io(&name, e)
            }
        })?;
        if copied > budget {
            return Err(too_many_bytes(limits));
        }
        written += copied;
        out.flush().map_err(|e| unpack_io(&name, e))?;
    }

    // Links last: no file is ever written through a link created from the archive.
    for (name, rel, target) in links {
        let path = dest.join(&rel);
        ensure_real_parents(dest, &rel).map_err(|reason| BuildError::UnsafeEntry {
            entry: name.clone(),
            reason,
        })?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| unpack_io(&name, e))?;
        }
        match std::os::unix::fs::symlink(&target, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BuildError::UnsafeEntry {
                    entry: name,
                    reason: "duplicate entry".into(),
                });
            }
            Err(e) => return Err(unpack_io(&name, e)),
        }
    }
    Ok(())
}

fn too_many_bytes(limits: Limits) -> BuildError {
    BuildError::TooLarge(format!("more than {} bytes uncompressed", limits.max_bytes))
}

fn unpack_io(name: &str, e: io::Error) -> BuildError {
    BuildError::io(format!("unpacking {name:?}"), e)
}

/// The entry's path relative to the package root, or `None` for a name that denotes the root.
/// Backslashes count as separators (archives made on Windows use them).
pub(crate) fn safe_relative(name: &str) -> Result<Option<PathBuf>, BuildError> {
    let refuse = |reason: &str| {
        Err(BuildError::UnsafeEntry {
            entry: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.contains('\0') {
        return refuse("the name contains a NUL byte");
    }
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    let mut rel = PathBuf::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return refuse("the path escapes the package (\"..\")"),
            _ => rel.push(part),
        }
    }
    // A defence in depth against anything `Path` parses differently from the split above.
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return refuse("the path is not a plain relative path");
    }
    Ok(if rel.as_os_str().is_empty() {
        None
    } else {
        Some(rel)
    })
}

/// A link target is accepted when it is relative, has all its `..` components first, and those do
/// not climb above the package root from the link's directory. Since every link of the package is
/// checked the same way and links are only created in real directories, resolving any path inside
/// the package cannot leave it: after a leading run of `..` from a real directory only downward
/// steps follow, each possibly through another such link.
fn check_link_target(link: &Path, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("symlink target is empty".into());
    }
    if target.contains('\0') {
        return Err("symlink target contains a NUL byte".into());
    }
    if target.starts_with('/') {
        return Err(format!(
            "symlink points outside the package (absolute target {target:?})"
        ));
    }
    let depth = link.components().count().saturating_sub(1);
    let mut ups = 0usize;
    let mut seen_normal = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if seen_normal => {
                return Err(format!(
                    "symlink target {target:?} has \"..\" after a directory name"
                ));
            }
            ".." => ups += 1,
            _ => seen_normal = true,
        }
    }
    if ups > depth {
        return Err(format!(
            "symlink points outside the package (target {target:?})"
        ));
    }
    Ok(())
}

/// Every existing ancestor of `rel` below `dest` must be a real directory, so a link is never
/// created through another link.
fn ensure_real_parents(dest: &Path, rel: &Path) -> Result<(), String> {
    let mut current = dest.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for part in parents {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "its parent {} is a symlink",
                    current.strip_prefix(dest).unwrap_or(&current).display()
                ));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(format!(
                    "its parent {} is not a directory",
                    current.strip_prefix(dest).unwrap_or(&current).display()
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot inspect {}: {e}", current.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_names() {
        assert_eq!(
            safe_relative("a/b.py").unwrap(),
            Some(PathBuf::from("a/b.py"))
        );
        assert_eq!(
            safe_relative("./a//b.py").unwrap(),
            Some(PathBuf::from("a/b.py"))
        );
        assert_eq!(
            safe_relative("a\\b.py").unwrap(),
            Some(PathBuf::from("a/b.py"))
        );
        assert_eq!(safe_relative("./").unwrap(), None);
        assert!(safe_relative("../x").is_err());
        assert!(safe_relative("a/../../x").is_err());
        assert!(safe_relative("a/../x").is_err());
        assert!(safe_relative("..\\x").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("\\etc\\passwd").is_err());
    }

    #[test]
    fn link_targets() {
        assert!(check_link_target(Path::new("a/b/l"), "../c").is_ok());
        assert!(check_link_target(Path::new("a/b/l"), "../../c").is_ok());
        assert!(check_link_target(Path::new("a/b/l"), "../../../c").is_err());
        assert!(check_link_target(Path::new("l"), "x/y").is_ok());
        assert!(check_link_target(Path::new("l"), "x/../../y").is_err());
        assert!(check_link_target(Path::new("a/l"), "x/../y").is_err());
        assert!(check_link_target(Path::new("l"), "/etc/passwd").is_err());
        assert!(check_link_target(Path::new("l"), "").is_err());
    }
}
