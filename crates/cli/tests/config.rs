//! `berth serve`'s configuration layering end to end: the real binary, a config file, `BERTH_*`
//! variables set on the child only (the test's own environment is untouched) and flags. Each
//! start is made to fail validation, and which key the error names shows which layer won; the
//! server never starts.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// Runs `berth serve` with `args` and exactly `vars` as its environment; returns its stderr.
fn serve(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .args(args)
        .env_clear()
        .env("BERTH_DATA_DIR", dir.join("data"))
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "berth serve started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or(stderr)
}

#[test]
fn file_then_env_then_flag_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "ping_interval_ms = 0\ntraffic_tick_ms = 0\n").unwrap();
    let config = config.to_str().unwrap();

    // The file alone: its first bad key is named.
    let e = serve(dir.path(), &["--config", config], &[]);
    assert_eq!(
        error_line(&e),
        "error: invalid value for ping-interval-ms (BERTH_PING_INTERVAL_MS): must be at least 1",
        "{e}"
    );
    // A variable lays over the file: ping is fixed, so the file's next bad key shows.
    let e = serve(
        dir.path(),
        &["--config", config],
        &[("BERTH_PING_INTERVAL_MS", "5")],
    );
    assert_eq!(
        error_line(&e),
        "error: invalid value for traffic-tick-ms (BERTH_TRAFFIC_TICK_MS): must be at least 1",
        "{e}"
    );
    // The config file itself can come from its variable.
    let e = serve(
        dir.path(),
        &[],
        &[("BERTH_CONFIG", config), ("BERTH_PING_INTERVAL_MS", "5")],
    );
    assert!(error_line(&e).contains("traffic-tick-ms"), "{e}");
    // A flag lays over the variable.
    let e = serve(
        dir.path(),
        &["--config", config, "--ping-interval-ms", "0"],
        &[("BERTH_PING_INTERVAL_MS", "5")],
    );
    assert!(error_line(&e).contains("ping-interval-ms"), "{e}");
    // A variable that does not parse is named by clap with its flag.
    let e = serve(dir.path(), &[], &[("BERTH_MAX_SESSIONS", "many")]);
    assert!(e.contains("--max-sessions") && e.contains("many"), "{e}");
    // An unknown key in the file is named.
    std::fs::write(dir.path().join("typo.toml"), "max_sesions = 3\n").unwrap();
    let e = serve(
        dir.path(),
        &["--config", dir.path().join("typo.toml").to_str().unwrap()],
        &[],
    );
    assert!(e.contains("max_sesions"), "{e}");
}
