//! B9: what the build sandbox costs. Cold builds (fresh build root, fresh venv, pip without a
//! cache) of the same small requirements set, sandboxed and unsandboxed, alternating in one run.
//!
//! `cargo run --release -p berth-runtime --example build_sandbox_bench -- [rounds]` (root, the
//! host's Python 3.11 and its package index). Prints a Markdown table for
//! `bench/notes/B9-build-sandbox.md`. `BuilderOptions::sandbox = None` exists for this comparison
//! only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use berth_runtime::builder::{Builder, BuilderOptions};
use bytes::Bytes;

const REQUIREMENTS: &str = "six==1.16.0\nidna==3.7\ncertifi==2024.7.4\n";

fn package() -> Bytes {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    w.start_file("agent.py", opts).unwrap();
    w.write_all(b"import six, idna, certifi\n").unwrap();
    w.start_file("requirements.txt", opts).unwrap();
    w.write_all(REQUIREMENTS.as_bytes()).unwrap();
    Bytes::from(w.finish().unwrap().into_inner())
}

async fn cold_build(sandboxed: bool) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = BuilderOptions::new(tmp.path().join("builds"));
    // Both sides download everything: the sandbox has a private cache per build anyway.
    opts.pip_args = vec!["--no-cache-dir".into()];
    if !sandboxed {
        opts.sandbox = None;
    }
    let b = Builder::new(opts);
    let started = Instant::now();
    let built = b
        .build(package(), "PYTHON_3_11", &["agent.py".to_owned()])
        .await
        .expect("build");
    let took = started.elapsed();
    assert!(!built.env_reused);
    took
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("rounds"))
        .unwrap_or(3);
    // Warm the host's page cache and the interpreter probe once, on both sides, untimed.
    cold_build(false).await;
    cold_build(true).await;
    let (mut plain, mut boxed) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which side goes first so drift on the machine hits both.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for sandboxed in order {
            let t = cold_build(sandboxed).await;
            eprintln!(
                "round {round} sandboxed={sandboxed}: {:.2} s",
                t.as_secs_f64()
            );
            if sandboxed {
                boxed.push(t)
            } else {
                plain.push(t)
            }
        }
    }
    let all = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (p, s) = (median(&mut plain.clone()), median(&mut boxed.clone()));
    println!("| build | runs (s) | median (s) |");
    println!("|---|---|---|");
    println!("| unsandboxed | {} | {:.2} |", all(&plain), p.as_secs_f64());
    println!("| sandboxed | {} | {:.2} |", all(&boxed), s.as_secs_f64());
    println!();
    println!(
        "ratio sandboxed / unsandboxed (medians): {:.2}x (goal <= 1.2x)",
        s.as_secs_f64() / p.as_secs_f64()
    );
}
