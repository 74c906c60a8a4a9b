//! Helpers shared by the builder tests: zips made in memory, builders over temp dirs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write};
use std::path::Path;

use berth_runtime::builder::{Builder, BuilderOptions};
use bytes::Bytes;
use zip::write::SimpleFileOptions;

/// One entry of a test zip.
pub enum Entry<'a> {
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
}

/// A zip holding the given files (and links).
pub fn zip(entries: &[Entry<'_>]) -> Bytes {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for e in entries {
        match e {
            Entry::File(name, body) => {
                w.start_file(*name, SimpleFileOptions::default().unix_permissions(0o644))
                    .unwrap();
                w.write_all(body.as_bytes()).unwrap();
            }
            Entry::Link(name, target) => {
                w.add_symlink(*name, *target, SimpleFileOptions::default())
                    .unwrap();
            }
        }
    }
    Bytes::from(w.finish().unwrap().into_inner())
}

/// A zip of plain files.
pub fn files(files: &[(&str, &str)]) -> Bytes {
    zip(&files
        .iter()
        .map(|(n, b)| Entry::File(n, b))
        .collect::<Vec<_>>())
}

/// A builder over `<dir>/builds` with the host's interpreters and pip configuration.
pub fn builder(dir: &Path) -> Builder {
    Builder::new(BuilderOptions::new(dir.join("builds")))
}

pub fn ep(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Runs the built agent command line with the built environment, returning its stdout.
pub fn run_agent(built: &berth_runtime::builder::Built) -> String {
    let out = std::process::Command::new(&built.argv[0])
        .args(&built.argv[1..])
        .env_clear()
        .envs(built.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&built.code_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Names in a directory (empty if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}
