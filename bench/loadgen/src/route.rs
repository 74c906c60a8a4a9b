//! `route-cost` (B7): what choosing a new session's version costs, measured in process.
//!
//! - `decide`: [`berth_control::decide`], the pure decision (rules in order, then the weights by
//!   the session id's hash bucket), on realistic policies: a 90/10 split; ten rules none of which
//!   match, so every rule is checked before the weights; ten rules whose last (a header rule)
//!   matches; no policy (100% to the live version). Each call gets another session id and the
//!   request shape the server builds (user id, actor, a header lookup over a real `HeaderMap`).
//!   Two timings of the same calls:
//!   - *per call*: every call between two `Instant::now()` reads, so the figure includes one
//!     clock read (reported on its own as `clock`); an upper bound on the call alone, and what
//!     the goal is judged on;
//!   - *batched*: batches of `--batch` calls timed as one, divided by the batch size; the clock
//!     cost vanishes, but so do single slow calls inside a batch (their time is averaged).
//! - `route`: [`berth_control::Control::route`] for new sessions, against a real SQLite store
//!   (WAL, `synchronous=FULL`) in a fresh directory: the store reads, the decision and the
//!   durable assignment write (one fsynced transaction per new session). Then the same sessions
//!   routed again, which finds their assignment (reads only): the path of a returning session
//!   whose sandbox has ended.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::control::RuntimeSpec;
use berth_control::traffic::{DecidedBy, Match, Rule, SetTraffic, Split};
use berth_control::{Control, Decision, Deployer, Options, RouteRequest, RoutingPolicy, decide};
use berth_store::Write;
use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use berth_types::{Partition, Status, now_millis};
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::{SESSION_HEADER, new_session_id};
use crate::stats::{Latency, Summary};

/// Settings of one `route-cost` run.
pub struct RouteCostConfig {
    /// Timed `decide` calls per case (per-call timing; the batched timing makes as many calls).
    pub samples: u64,
    /// Calls per batch in the batched timing.
    pub batch: u64,
    /// New sessions routed through `Control::route` (then routed again).
    pub route_samples: u64,
    /// Where the temporary SQLite store is created (its disk decides the fsync cost).
    pub dir: PathBuf,
}

/// Result of a run: `decide` in nanoseconds, `Control::route` in microseconds.
#[derive(Debug, Serialize)]
pub struct RouteCostReport {
    /// `debug` or `release`: a debug build's figures are not the product's.
    pub build: &'static str,
    /// Cost of one `Instant::now()` read, measured as the gap between two consecutive reads:
    /// included once in every per-call `decide` sample.
    pub clock: NsSummary,
    /// One entry per policy.
    pub decide: Vec<DecideCase>,
    /// `Control::route` of new sessions (store reads, decision, durable assignment), µs.
    pub route_new: Summary,
    /// `Control::route` of the same sessions again (their assignment is found), µs.
    pub route_assigned: Summary,
    /// Share of the new sessions the 90/10 split sent to version 1, in percent.
    pub route_v1_percent: f64,
    /// What the store was.
    pub route_store: String,
}

/// `decide` timings on one policy.
#[derive(Debug, Serialize)]
pub struct DecideCase {
    /// Short name.
    pub name: &'static str,
    /// The policy and the request.
    pub description: &'static str,
    /// Rules on the policy.
    pub rules: usize,
    /// What decided (checked on every call: a case that does not decide as described fails
    /// the run rather than time another path).
    pub decided_by: &'static str,
    /// Each call timed on its own, one clock read included.
    pub per_call: NsSummary,
    /// Per-call mean of each batch of calls.
    pub batched: NsSummary,
}

/// A distribution in nanoseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NsSummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// A histogram of nanoseconds, 1 ns to 10 s, three significant digits.
struct Nanos(Histogram<u64>);

impl Nanos {
    fn new() -> Self {
        // Constant bounds HdrHistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5), so
        // construction cannot fail.
        #[allow(clippy::expect_used)]
        let h = Histogram::new_with_bounds(1, 10_000_000_000, 3)
            .expect("constant, valid histogram bounds");
        Self(h)
    }

    fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, 10_000_000_000));
    }

    fn summary(&self) -> NsSummary {
        let h = &self.0;
        if h.is_empty() {
            return NsSummary::default();
        }
        NsSummary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Session ids cycled through by the `decide` cases (a power of two, so the index is a mask).
const IDS: usize = 4096;
/// The access key id that "signed" the requests (the harness's benchmark key).
const ACTOR: &str = "AKIABERTHBENCHMARKS0";
const USER: &str = "user-0042@example.com";
const CUSTOM: &str = "x-amzn-bedrock-agentcore-runtime-custom-tier";

/// The headers an invocation reaching `Control::route` carries (SigV4-signed boto3 call with a
/// session, a user id and two allow-listed custom headers), for the rules' header lookup.
fn request_headers(session_id: &str) -> anyhow::Result<HeaderMap> {
    let mut h = HeaderMap::new();
    let pairs: [(&str, &str); 12] = [
        ("host", "127.0.0.1:8750"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        (
            "user-agent",
            "Boto3/1.40.0 md/Botocore#1.40.0 ua/2.1 os/linux lang/python#3.11.7",
        ),
        ("x-amz-date", "20260101T000000Z"),
        (
            "x-amz-content-sha256",
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIABERTHBENCHMARKS0/20260101/us-east-1/bedrock-agentcore/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (SESSION_HEADER, session_id),
        ("x-amzn-bedrock-agentcore-runtime-user-id", USER),
        (CUSTOM, "gold"),
        (
            "x-amzn-bedrock-agentcore-runtime-custom-region",
            "eu-west-1",
        ),
        ("content-length", "2"),
    ];
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).context("header name")?,
            HeaderValue::from_str(v).context("header value")?,
        );
    }
    Ok(h)
}

fn weights_90_10() -> Vec<Split> {
    vec![
        Split {
            version: 1,
            weight: 90,
        },
        Split {
            version: 2,
            weight: 10,
        },
    ]
}

fn rule(i: usize, matches: Match) -> Rule {
    Rule {
        id: format!("rule-{i:08}"),
        matches,
        version: 2,
    }
}

/// Ten rules of every kind that the request does not match: user ids and actors that differ,
/// a header present with another value, and headers the request does not carry.
fn ten_missing_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for i in 0..4 {
        rules.push(rule(i, Match::UserId(format!("user-{i:04}@example.com"))));
    }
    for i in 4..7 {
        rules.push(rule(i, Match::Actor(format!("AKIAOTHERCALLER{i:05}"))));
    }
    rules.push(rule(
        7,
        Match::Header {
            name: CUSTOM.into(),
            value: "platinum".into(),
        },
    ));
    for i in 8..10 {
        rules.push(rule(
            i,
            Match::Header {
                name: format!("x-amzn-bedrock-agentcore-runtime-custom-absent{i}"),
                value: "yes".into(),
            },
        ));
    }
    rules
}

struct Case {
    name: &'static str,
    description: &'static str,
    policy: RoutingPolicy,
    expect: fn(&Decision) -> bool,
    decided_by: &'static str,
}

fn cases() -> Vec<Case> {
    let mut header_hit = ten_missing_rules();
    header_hit[9] = rule(
        9,
        Match::Header {
            name: CUSTOM.into(),
            value: "gold".into(),
        },
    );
    vec![
        Case {
            name: "weights_90_10",
            description: "weights 1=90 2=10, no rules",
            policy: RoutingPolicy {
                live: 1,
                weights: weights_90_10(),
                rules: vec![],
            },
            expect: |d| matches!(d.by, DecidedBy::Weight(_)),
            decided_by: "weights",
        },
        Case {
            name: "rules_10_miss",
            description: "10 rules (4 user id, 3 actor, 3 header), none matching, then weights 1=90 2=10",
            policy: RoutingPolicy {
                live: 1,
                weights: weights_90_10(),
                rules: ten_missing_rules(),
            },
            expect: |d| matches!(d.by, DecidedBy::Weight(_)),
            decided_by: "weights, after 10 rules",
        },
        Case {
            name: "header_rule_match",
            description: "10 rules, the last (a header rule) matching; weights 1=90 2=10 not reached",
            policy: RoutingPolicy {
                live: 1,
                weights: weights_90_10(),
                rules: header_hit,
            },
            expect: |d| d.by == DecidedBy::Rule(9) && d.version == 2,
            decided_by: "rule 10 of 10 (header)",
        },
        Case {
            name: "no_policy",
            description: "no weights, no rules (100% to the live version)",
            policy: RoutingPolicy {
                live: 1,
                weights: vec![],
                rules: vec![],
            },
            expect: |d| d.version == 1,
            decided_by: "live version",
        },
    ]
}

/// The gap between two consecutive clock reads.
fn clock_cost(samples: u64) -> NsSummary {
    let mut h = Nanos::new();
    for _ in 0..samples {
        let a = Instant::now();
        let b = Instant::now();
        h.record(nanos(b - a));
    }
    h.summary()
}

fn time_case(
    case: &Case,
    ids: &[String],
    headers: &HeaderMap,
    cfg: &RouteCostConfig,
) -> anyhow::Result<DecideCase> {
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request = |i: usize| RouteRequest {
        session_id: &ids[i & (IDS - 1)],
        user_id: Some(USER),
        actor: Some(ACTOR),
        header: &lookup,
    };
    // Every id once, checked: the case must take the path it claims to time.
    for i in 0..IDS {
        let d = decide(&case.policy, &request(i));
        if !(case.expect)(&d) {
            bail!(
                "case {}: decided {d:?}, expected {}",
                case.name,
                case.decided_by
            );
        }
    }
    // Warm-up: caches, branch predictors, CPU frequency.
    for i in 0..cfg.samples.min(100_000) as usize {
        black_box(decide(black_box(&case.policy), black_box(&request(i))));
    }
    let mut per_call = Nanos::new();
    for i in 0..cfg.samples as usize {
        let req = request(i);
        let started = Instant::now();
        let d = decide(black_box(&case.policy), black_box(&req));
        let took = started.elapsed();
        black_box(d);
        per_call.record(nanos(took));
    }
    let mut batched = Nanos::new();
    let batch = cfg.batch.max(1) as usize;
    let mut i = 0usize;
    for _ in 0..(cfg.samples as usize).div_ceil(batch) {
        let started = Instant::now();
        for _ in 0..batch {
            black_box(decide(black_box(&case.policy), black_box(&request(i))));
            i += 1;
        }
        batched.record(nanos(started.elapsed()) / batch as u64);
    }
    Ok(DecideCase {
        name: case.name,
        description: case.description,
        rules: case.policy.rules.len(),
        decided_by: case.decided_by,
        per_call: per_call.summary(),
        batched: batched.summary(),
    })
}

/// Runs the `decide` cases, then the `Control::route` probe.
pub async fn run(cfg: RouteCostConfig) -> anyhow::Result<RouteCostReport> {
    if cfg.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let ids: Vec<String> = (0..IDS).map(|_| new_session_id()).collect();
    let headers = request_headers(&ids[0])?;
    let clock = clock_cost(cfg.samples.min(1_000_000));
    let mut decide_cases = Vec::new();
    for case in cases() {
        decide_cases.push(time_case(&case, &ids, &headers, &cfg)?);
    }
    let (route_new, route_assigned, route_v1_percent) = route_cost(&cfg).await?;
    Ok(RouteCostReport {
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        clock,
        decide: decide_cases,
        route_new,
        route_assigned,
        route_v1_percent,
        route_store: format!(
            "sqlite (WAL, synchronous=FULL), fresh database under {}",
            cfg.dir.display()
        ),
    })
}

/// The session layer of the probe: builds nothing (versions are written READY straight into the
/// store), so a build request is refused rather than faked.
struct NoSessions;

#[async_trait]
impl Deployer for NoSessions {
    fn check(&self, _: &RuntimeSpec) -> Result<(), ApiError> {
        Ok(())
    }
    async fn build(
        &self,
        _: &Runtime,
        _: &RuntimeVersion,
    ) -> Result<String, berth_control::deployer::Error> {
        Err(berth_control::deployer::Error::Unsupported(
            "the route-cost probe builds nothing".into(),
        ))
    }
    async fn retire(&self, _: &str, _: Option<u32>) {}
}

const RUNTIME: &str = "bench_route-0123456789";
const ENDPOINT: &str = "bench";

/// `Control::route` of `route_samples` new sessions, then of the same sessions again; µs.
async fn route_cost(cfg: &RouteCostConfig) -> anyhow::Result<(Summary, Summary, f64)> {
    let dir = tempfile::Builder::new()
        .prefix("berth-route-cost-")
        .tempdir_in(&cfg.dir)
        .with_context(|| format!("creating a temporary directory in {}", cfg.dir.display()))?;
    let store = berth_store::open(&format!(
        "sqlite://{}",
        dir.path().join("control.db").display()
    ))
    .await
    .context("opening the store")?;
    let control = Control::start_with(
        store,
        Partition {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        },
        Arc::new(NoSessions),
        CancellationToken::new(),
        Options {
            run_controller: false,
            ..Options::default()
        },
    )
    .await
    .context("starting the control plane")?;
    let now = now_millis();
    let spec = json!({
        "agentRuntimeArtifact": {"codeConfiguration": {
            "code": {"s3": {"bucket": "b", "prefix": "a.zip"}},
            "runtime": "PYTHON_3_12", "entryPoint": ["agent.py"]}},
        "roleArn": "arn:aws:iam::000000000000:role/r",
    });
    let mut writes = vec![Write::InsertRuntime(Runtime {
        id: RUNTIME.into(),
        name: "bench_route".into(),
        latest_version: 2,
        deleting: false,
        created_at: now,
        updated_at: now,
    })];
    for version in 1..=2 {
        writes.push(Write::PutVersion(RuntimeVersion {
            runtime_id: RUNTIME.into(),
            version,
            spec: spec.clone(),
            status: Status::Ready,
            failure_reason: None,
            artifact_digest: Some(format!("sha256:{version}")),
            created_at: now,
            updated_at: now,
        }));
    }
    for (name, version) in [("DEFAULT", 2), (ENDPOINT, 1)] {
        writes.push(Write::InsertEndpoint(Endpoint {
            runtime_id: RUNTIME.into(),
            name: name.into(),
            id: format!("{name}-0123456789"),
            description: None,
            live_version: Some(version),
            target_version: Some(version),
            status: Status::Ready,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        }));
    }
    control
        .store()
        .apply(writes)
        .await
        .context("writing the runtime")?;
    // The split goes through the same call the native API makes.
    control
        .set_traffic(
            RUNTIME,
            ENDPOINT,
            SetTraffic::from_json(&json!({"weights": {"1": 90, "2": 10}}))?,
        )
        .await
        .context("setting the 90/10 split")?;

    // Warm-up: the connection pool, SQLite's page cache, the statement cache.
    for _ in 0..cfg.route_samples.min(20) {
        let id = new_session_id();
        control
            .route(RUNTIME, Some(ENDPOINT), &RouteRequest::session(&id))
            .await?;
    }
    let ids: Vec<String> = (0..cfg.route_samples).map(|_| new_session_id()).collect();
    let mut fresh = Latency::new();
    let mut v1 = 0u64;
    for id in &ids {
        let started = Instant::now();
        let routed = control
            .route(RUNTIME, Some(ENDPOINT), &RouteRequest::session(id))
            .await?;
        fresh.record(started.elapsed());
        if !routed.new_session {
            bail!(
                "session {id} was not routed as a new session: {:?}",
                routed.by
            );
        }
        if routed.resolved.version.version == 1 {
            v1 += 1;
        }
    }
    let mut again = Latency::new();
    for id in &ids {
        let started = Instant::now();
        let routed = control
            .route(RUNTIME, Some(ENDPOINT), &RouteRequest::session(id))
            .await?;
        again.record(started.elapsed());
        if routed.by != DecidedBy::Assignment {
            bail!(
                "session {id} routed again was decided by {:?}, not its assignment",
                routed.by
            );
        }
    }
    let v1_percent = if ids.is_empty() {
        0.0
    } else {
        v1 as f64 * 100.0 / ids.len() as f64
    };
    Ok((fresh.summary(), again.summary(), v1_percent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_decides_as_described() {
        let ids: Vec<String> = (0..IDS).map(|_| new_session_id()).collect();
        let headers = request_headers(&ids[0]).expect("headers");
        let cfg = RouteCostConfig {
            samples: 64,
            batch: 8,
            route_samples: 0,
            dir: std::env::temp_dir(),
        };
        for case in cases() {
            let r = time_case(&case, &ids, &headers, &cfg).expect("case");
            assert_eq!(r.per_call.count, 64);
            assert_eq!(r.batched.count, 8);
        }
    }

    #[tokio::test]
    async fn route_probe_routes_new_then_assigned_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = RouteCostConfig {
            samples: 1,
            batch: 1,
            route_samples: 40,
            dir: dir.path().to_path_buf(),
        };
        let (fresh, again, v1) = route_cost(&cfg).await.expect("route probe");
        assert_eq!(fresh.count, 40);
        assert_eq!(again.count, 40);
        assert!((0.0..=100.0).contains(&v1));
    }
}
