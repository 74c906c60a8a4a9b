//! Start-up latency, printed for the record (`cargo test --release -p berth-runtime --test
//! sandbox_timing -- --nocapture`). Nothing here asserts on time.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::time::{Duration, Instant};

use berth_runtime::sandbox::{Isolation, Network, Sandbox};
use sandbox_support::{Fixture, ready};

const SERVER: &str = "import http.server, os\n\
    http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.BaseHTTPRequestHandler).serve_forever()";

fn summary(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:6.2} ms  median {:6.2} ms  max {:6.2} ms",
        ms(xs[0]),
        ms(xs[xs.len() / 2]),
        ms(xs[xs.len() - 1])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_latency() {
    let fx = Fixture::new();
    const RUNS: usize = 7;
    for (label, isolation, network) in [
        (
            "namespaces, isolated",
            Isolation::Namespaces,
            Network::Isolated,
        ),
        (
            "namespaces, public  ",
            Isolation::Namespaces,
            Network::Public,
        ),
        ("process             ", Isolation::Process, Network::Public),
    ] {
        let (mut started, mut accepting, mut destroyed) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..RUNS {
            let mut spec = fx.command(&format!("timing{i}"), &["-c", SERVER]);
            spec.isolation = isolation;
            spec.network = network;
            let t0 = Instant::now();
            let sb = Sandbox::start(spec).await.unwrap();
            started.push(t0.elapsed());
            ready(&sb).await;
            accepting.push(t0.elapsed());
            let t1 = Instant::now();
            sb.destroy().await.unwrap();
            destroyed.push(t1.elapsed());
        }
        println!("{label}  start():            {}", summary(started));
        println!("{label}  start() to accept:  {}", summary(accepting));
        println!("{label}  destroy():          {}", summary(destroyed));
    }
}
