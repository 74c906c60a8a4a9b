//! Synchronous filesystem helpers for whole trees. Callers run them on the blocking pool.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Makes an unpacked code tree immutable: directories `0555`, files `0444` (`0555` when the owner
/// could execute them). The top directory itself is left alone because it still has to be renamed
/// into place (renaming a directory needs write permission on it to update its `..` entry).
pub(crate) fn make_read_only_below(top: &Path) -> io::Result<()> {
    walk_post_order(top, &mut |path, meta| {
        if path == top {
            return Ok(());
        }
        let mode = meta.permissions().mode();
        let wanted = if meta.is_dir() || mode & 0o100 != 0 {
            0o555
        } else {
            0o444
        };
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))
    })
}

/// `chmod -R a+rX`: every file readable by all, directories and owner-executable files searchable or
/// executable by all. The sandboxed agent runs as another user than the builder.
pub(crate) fn make_world_readable(top: &Path) -> io::Result<()> {
    walk_post_order(top, &mut |path, meta| {
        let mode = meta.permissions().mode() & 0o7777;
        let mut wanted = mode | 0o444;
        if meta.is_dir() || mode & 0o100 != 0 {
            wanted |= 0o111;
        }
        if wanted != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(wanted))?;
        }
        Ok(())
    })
}

/// Hands a tree built by a build uid to root: every entry `lchown`ed to `0:0` (links included, never
/// followed), set-id and sticky bits and group/other write removed, everything readable by all and
/// directories and owner-executable files searchable or executable by all. Afterwards neither the
/// build uid nor agents can change it.
pub(crate) fn seal(top: &Path) -> io::Result<()> {
    walk_post_order_all(top, &mut |path, meta| {
        std::os::unix::fs::lchown(path, Some(0), Some(0))?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        // After chown: the kernel clears set-id bits on chown anyway; the mask makes it explicit.
        let mode = meta.permissions().mode() & 0o777 & !0o022;
        let mut wanted = mode | 0o444;
        if meta.is_dir() || mode & 0o100 != 0 {
            wanted |= 0o111;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))
    })
}

/// Removes a tree that may contain read-only directories (code trees are `0555`): without root,
/// unlinking inside a directory needs write permission on it, so directories are made writable
/// first. A missing path is not an error.
pub(crate) fn remove_tree(top: &Path) -> io::Result<()> {
    match fs::symlink_metadata(top) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_dir() => return fs::remove_file(top),
        Ok(_) => {}
    }
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    fs::remove_dir_all(top)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsynced, then
/// renamed over the target, so a reader never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Creates `dir` (and missing parents) and sets its mode, whatever the umask.
pub(crate) fn create_dir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Why another (unprivileged) user could not reach `path`, if it could not: every ancestor
/// directory must be searchable by others (`o+x`), and `path` itself must grant others the
/// permission bits in `need` (e.g. `0o5` for a directory to list, `0o1` for a binary to run).
/// `path` should be canonical (no symlinks), otherwise the check says nothing about the target.
pub(crate) fn others_access_problem(path: &Path, need: u32) -> Option<String> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        match fs::metadata(dir) {
            Ok(meta) if meta.permissions().mode() & 0o001 == 0 => {
                return Some(format!(
                    "{} is not searchable by other users (mode {:04o})",
                    dir.display(),
                    meta.permissions().mode() & 0o7777
                ));
            }
            Ok(_) => {}
            Err(e) => return Some(format!("cannot inspect {}: {e}", dir.display())),
        }
    }
    match fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & need != need => Some(format!(
            "{} does not grant other users {} (mode {:04o})",
            path.display(),
            describe_bits(need),
            meta.permissions().mode() & 0o7777
        )),
        Ok(_) => None,
        Err(e) => Some(format!("cannot inspect {}: {e}", path.display())),
    }
}

fn describe_bits(need: u32) -> &'static str {
    match need & 0o7 {
        0o1 => "execute permission",
        0o4 => "read permission",
        0o5 => "read and execute permission",
        _ => "the required permissions",
    }
}

/// Visits every entry below and including `top` (without following symlinks), children before
/// their directory, so a directory can be made read-only after its contents were changed.
fn walk_post_order(
    top: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    walk(top, false, visit)
}

/// Like [`walk_post_order`], but symlinks are visited too (never followed).
fn walk_post_order_all(
    top: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    walk(top, true, visit)
}

fn walk(
    top: &Path,
    with_links: bool,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    // (path, metadata, children already pushed)
    let mut stack: Vec<(PathBuf, fs::Metadata, bool)> =
        vec![(top.to_path_buf(), fs::symlink_metadata(top)?, false)];
    while let Some((path, meta, expanded)) = stack.pop() {
        if meta.file_type().is_symlink() {
            // chmod would follow the link; links carry no permissions of their own on Linux.
            if with_links {
                visit(&path, &meta)?;
            }
            continue;
        }
        if meta.is_dir() && !expanded {
            stack.push((path.clone(), meta, true));
            for entry in fs::read_dir(&path)? {
                let entry = entry?;
                let child_meta = fs::symlink_metadata(entry.path())?;
                stack.push((entry.path(), child_meta, false));
            }
            continue;
        }
        visit(&path, &meta)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn read_only_then_removable() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("t");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::write(top.join("a/b/f.py"), "x").unwrap();
        fs::write(top.join("run.sh"), "x").unwrap();
        fs::set_permissions(top.join("run.sh"), fs::Permissions::from_mode(0o744)).unwrap();
        make_read_only_below(&top).unwrap();
        let mode = |p: &str| fs::metadata(top.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("a"), 0o555);
        assert_eq!(mode("a/b/f.py"), 0o444);
        assert_eq!(mode("run.sh"), 0o555);
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        remove_tree(&top).unwrap();
    }

    #[test]
    fn world_readable_keeps_private_bits_widened() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("t");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("f"), "x").unwrap();
        fs::set_permissions(top.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&top, fs::Permissions::from_mode(0o700)).unwrap();
        make_world_readable(&top).unwrap();
        assert_eq!(
            fs::metadata(top.join("f")).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            fs::metadata(&top).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn others_access_reports_the_blocking_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let private = base.join("private");
        fs::create_dir(&private).unwrap();
        fs::write(private.join("python"), "x").unwrap();
        fs::set_permissions(private.join("python"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let problem = others_access_problem(&private.join("python"), 0o1).unwrap();
        assert!(problem.contains("private is not searchable"), "{problem}");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(others_access_problem(&private.join("python"), 0o1), None);
        fs::set_permissions(private.join("python"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            others_access_problem(&private.join("python"), 0o1)
                .unwrap()
                .contains("execute")
        );
    }
}
