//! `berth-pgtest`: a throwaway PostgreSQL cluster for scripts (the end-to-end tests' shared store).
//!
//! Starts a cluster ([`berth_pgtest::PgCluster`]), creates one database, prints its URL on one
//! line of stdout and runs until its stdin ends; then the cluster stops and its directory goes.
//! From bash: `coproc PG { berth-pgtest; }; read -r url <&"${PG[0]}"`: the cluster lives as long as
//! the script (its end closes the pipe, however it ends).

use std::io::Write;

fn main() -> std::process::ExitCode {
    let cluster = match berth_pgtest::PgCluster::start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-pgtest: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = match cluster.create_database() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("berth-pgtest: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{url}").and_then(|()| out.flush()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    drop(out);
    // Whatever arrives is ignored; the end of the input is the signal to stop.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    drop(cluster);
    std::process::ExitCode::SUCCESS
}
