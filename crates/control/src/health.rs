//! Per-version health: invocations, errors, latency and new sessions for every
//! (runtime, endpoint, version), aggregated in memory on the hot path and flushed to the store in
//! time buckets by the controller.
//!
//! Recording is a short critical section on one mutex: nested map lookups (no allocation once a
//! series exists) and a few additions. Nothing on the invocation path touches the store.

use crate::{Control, internal};
use berth_api::ApiError;
use berth_store::HealthRow;
use berth_types::{EpochMillis, iso8601, now_millis};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds (inclusive, ms) of the latency buckets; one more bucket counts everything above.
/// Roughly 1-2-3-5 steps: fine where agents answer (tens of ms to seconds), coarse beyond.
pub const LATENCY_BOUNDS_MS: [u64; 32] = [
    1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000,
    3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000, 900_000,
    3_600_000,
];

/// Number of latency buckets, the overflow bucket included.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// How one invocation ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent answered with a status below 500 (its 4xx are the caller's problem).
    Ok,
    /// The agent answered 5xx, or its response failed mid-stream.
    AgentError,
    /// Berth could not reach the agent (RuntimeClientError, 424).
    RuntimeClient,
    /// The agent did not start or answer in time.
    Timeout,
}

impl Outcome {
    /// The outcome of an agent response with HTTP `status`.
    pub fn of_status(status: u16) -> Self {
        if status >= 500 {
            Outcome::AgentError
        } else {
            Outcome::Ok
        }
    }

    /// Whether this counts as an error.
    pub fn is_error(self) -> bool {
        self != Outcome::Ok
    }
}

fn latency_bucket(ms: u64) -> usize {
    LATENCY_BOUNDS_MS.partition_point(|&b| b < ms)
}

#[derive(Debug, Clone)]
struct Acc {
    invocations: u64,
    errors_5xx: u64,
    errors_424: u64,
    timeouts: u64,
    new_sessions: u64,
    latency_sum_ms: u64,
    counts: [u64; LATENCY_BUCKETS],
}

impl Default for Acc {
    fn default() -> Self {
        Self {
            invocations: 0,
            errors_5xx: 0,
            errors_424: 0,
            timeouts: 0,
            new_sessions: 0,
            latency_sum_ms: 0,
            counts: [0; LATENCY_BUCKETS],
        }
    }
}

impl Acc {
    fn invocation(&mut self, outcome: Outcome, ms: u64) {
        self.invocations += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::AgentError => self.errors_5xx += 1,
            Outcome::RuntimeClient => self.errors_424 += 1,
            Outcome::Timeout => self.timeouts += 1,
        }
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(ms);
        self.counts[latency_bucket(ms)] += 1;
    }

    fn add_row(&mut self, r: &HealthRow) {
        self.invocations += r.invocations;
        self.errors_5xx += r.errors_5xx;
        self.errors_424 += r.errors_424;
        self.timeouts += r.timeouts;
        self.new_sessions += r.new_sessions;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(r.latency_sum_ms);
        for (a, b) in self.counts.iter_mut().zip(&r.latency_counts) {
            *a += b;
        }
    }

    fn row(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        bucket_start: EpochMillis,
    ) -> HealthRow {
        HealthRow {
            runtime_id: runtime_id.to_owned(),
            endpoint: endpoint.to_owned(),
            version,
            bucket_start,
            invocations: self.invocations,
            errors_5xx: self.errors_5xx,
            errors_424: self.errors_424,
            timeouts: self.timeouts,
            new_sessions: self.new_sessions,
            latency_sum_ms: self.latency_sum_ms,
            latency_counts: self.counts.to_vec(),
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    /// Since the process started, for Prometheus counters.
    total: Acc,
    /// Not yet flushed, per bucket start (rarely more than one: a flush is far more frequent
    /// than a bucket boundary).
    pending: Vec<(EpochMillis, Acc)>,
}

impl Series {
    fn pending_at(&mut self, bucket: EpochMillis) -> &mut Acc {
        let i = match self.pending.iter().position(|(b, _)| *b == bucket) {
            Some(i) => i,
            None => {
                self.pending.push((bucket, Acc::default()));
                self.pending.len() - 1
            }
        };
        &mut self.pending[i].1
    }
}

type Versions = HashMap<u32, Series>;
type Endpoints = HashMap<String, Versions>;

/// The in-memory health recorder. Shared by the data plane (recording) and the controller
/// (flushing).
#[derive(Debug)]
pub struct Health {
    bucket_ms: i64,
    series: Mutex<HashMap<String, Endpoints>>,
    /// Counts Prometheus shows that neither the store nor the rollout analysis uses, per
    /// (runtime, endpoint, version); rare events, so a plain map.
    refusals: Mutex<HashMap<(String, String, u32), Refusals>>,
}

/// Per-version counts of calls that ended before or beside the agent's work: AgentCore's
/// Throttles and UserErrors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// New sessions refused by a quota or the new-session rate (ThrottlingException,
    /// ServiceQuotaExceededException).
    pub throttles: u64,
    /// Invocations the agent answered with a 4xx (the caller's request was at fault).
    pub user_errors: u64,
}

/// What [`Health::refused`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// See [`Refusals::throttles`].
    Throttled,
    /// See [`Refusals::user_errors`].
    UserError,
}

impl Health {
    /// A recorder cutting time into buckets of `bucket_ms` (at least 1).
    pub fn new(bucket_ms: i64) -> Self {
        Self {
            bucket_ms: bucket_ms.max(1),
            series: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
        }
    }

    /// Width of a health bucket in ms.
    pub fn bucket_ms(&self) -> i64 {
        self.bucket_ms
    }

    /// The start of the bucket holding `t`.
    pub fn bucket_of(&self, t: EpochMillis) -> EpochMillis {
        t.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Endpoints>> {
        // Only additions happen under this lock; a panic inside would leave counts at worst
        // partly added, which is no reason to stop recording.
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_series(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        f: impl FnOnce(&mut Series),
    ) {
        let mut map = self.lock();
        // get_mut first so the common case allocates nothing.
        let eps = match map.get_mut(runtime_id) {
            Some(e) => e,
            None => map.entry(runtime_id.to_owned()).or_default(),
        };
        let versions = match eps.get_mut(endpoint) {
            Some(v) => v,
            None => eps.entry(endpoint.to_owned()).or_default(),
        };
        f(versions.entry(version).or_default());
    }

    /// Records one invocation now.
    pub fn record(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        outcome: Outcome,
        latency: Duration,
    ) {
        self.record_at(
            runtime_id,
            endpoint,
            version,
            outcome,
            latency,
            now_millis(),
        );
    }

    /// Records one invocation at `at` (tests drive time explicitly).
    pub fn record_at(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        outcome: Outcome,
        latency: Duration,
        at: EpochMillis,
    ) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let bucket = self.bucket_of(at);
        self.with_series(runtime_id, endpoint, version, |s| {
            s.total.invocation(outcome, ms);
            s.pending_at(bucket).invocation(outcome, ms);
        });
    }

    /// Records a session routed to `version` for the first time, at `at`.
    pub fn new_session_at(&self, runtime_id: &str, endpoint: &str, version: u32, at: EpochMillis) {
        let bucket = self.bucket_of(at);
        self.with_series(runtime_id, endpoint, version, |s| {
            s.total.new_sessions += 1;
            s.pending_at(bucket).new_sessions += 1;
        });
    }

    /// Counts a throttled new session or an agent's 4xx answer of a version (in memory only).
    pub fn refused(&self, runtime_id: &str, endpoint: &str, version: u32, what: Refusal) {
        // Additions only, as in `lock`.
        let mut map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let r = map
            .entry((runtime_id.to_owned(), endpoint.to_owned(), version))
            .or_default();
        match what {
            Refusal::Throttled => r.throttles += 1,
            Refusal::UserError => r.user_errors += 1,
        }
    }

    /// [`Refusals`] since the process started per (runtime, endpoint, version), sorted.
    pub fn refusal_totals(&self) -> Vec<((String, String, u32), Refusals)> {
        let map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Takes everything not yet flushed, as store rows.
    pub fn take_pending(&self) -> Vec<HealthRow> {
        let mut out = Vec::new();
        let mut map = self.lock();
        for (rt, eps) in map.iter_mut() {
            for (ep, versions) in eps.iter_mut() {
                for (v, s) in versions.iter_mut() {
                    for (bucket, acc) in s.pending.drain(..) {
                        out.push(acc.row(rt, ep, *v, bucket));
                    }
                }
            }
        }
        out
    }

    /// Puts rows back after a failed flush so the next flush writes them.
    pub fn restore(&self, rows: Vec<HealthRow>) {
        for r in rows {
            self.with_series(&r.runtime_id, &r.endpoint, r.version, |s| {
                s.pending_at(r.bucket_start).add_row(&r);
            });
        }
    }

    /// Totals since the process started for every series, sorted, for Prometheus
    /// (`bucket_start` is 0).
    pub fn totals(&self) -> Vec<HealthRow> {
        let map = self.lock();
        let mut out: Vec<HealthRow> = map
            .iter()
            .flat_map(|(rt, eps)| {
                eps.iter().flat_map(move |(ep, versions)| {
                    versions
                        .iter()
                        .map(move |(v, s)| s.total.row(rt, ep, *v, 0))
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.runtime_id, &a.endpoint, a.version).cmp(&(&b.runtime_id, &b.endpoint, b.version))
        });
        out
    }
}

/// Health of one version over a window, as the native API and the rollout analysis see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Invocations answered.
    pub invocations: u64,
    /// All errors: agent 5xx, 424 and timeouts.
    pub errors: u64,
    /// Agent 5xx.
    pub errors_5xx: u64,
    /// RuntimeClientError (424) other than timeouts.
    pub errors_424: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Sessions newly routed to the version.
    pub new_sessions: u64,
    /// errors / invocations (0 without invocations).
    pub error_rate: f64,
    /// Median latency in ms (bucket-interpolated); absent without invocations.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency in ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency in ms.
    pub p99_ms: Option<f64>,
    /// Mean latency in ms.
    pub mean_ms: Option<f64>,
}

impl Summary {
    /// Sums buckets into one summary.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a HealthRow>) -> Self {
        let mut acc = Acc::default();
        for r in rows {
            acc.add_row(r);
        }
        let errors = acc.errors_5xx + acc.errors_424 + acc.timeouts;
        let n = acc.invocations;
        Summary {
            invocations: n,
            errors,
            errors_5xx: acc.errors_5xx,
            errors_424: acc.errors_424,
            timeouts: acc.timeouts,
            new_sessions: acc.new_sessions,
            error_rate: if n == 0 {
                0.0
            } else {
                errors as f64 / n as f64
            },
            p50_ms: percentile(&acc.counts, 0.50),
            p95_ms: percentile(&acc.counts, 0.95),
            p99_ms: percentile(&acc.counts, 0.99),
            mean_ms: (n > 0).then(|| acc.latency_sum_ms as f64 / n as f64),
        }
    }
}

/// Health of an endpoint's versions over a window (`GET .../health`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    /// The runtime.
    pub runtime_id: String,
    /// The endpoint.
    pub endpoint: String,
    /// Start of the window (rounded down to a bucket), ISO 8601.
    pub from: String,
    /// End of the window, ISO 8601.
    pub to: String,
    /// Bucket length in ms.
    pub bucket_ms: i64,
    /// One entry per version with data, by version.
    pub versions: Vec<VersionHealth>,
}

/// One version's health in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionHealth {
    /// The version.
    pub version: u32,
    /// Over the whole window.
    pub summary: Summary,
    /// Per stored bucket (only when the series was asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<BucketHealth>>,
}

/// One stored bucket of a version's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketHealth {
    /// Bucket start, ISO 8601.
    pub start: String,
    /// The bucket's numbers.
    pub summary: Summary,
}

impl Control {
    /// Health of every version of an endpoint over `[from, to)`: one summary per version and,
    /// with `series`, the stored buckets. Data reaches the store within one controller tick.
    pub async fn endpoint_health(
        &self,
        runtime_id: &str,
        endpoint: &str,
        from: EpochMillis,
        to: EpochMillis,
        series: bool,
    ) -> Result<EndpointHealth, ApiError> {
        let st = self.endpoint_state(runtime_id, endpoint).await?;
        let from = self.inner.health.bucket_of(from);
        let rows = self
            .inner
            .store
            .health(&st.runtime.id, &st.endpoint.name, from, to)
            .await
            .map_err(internal)?;
        let mut versions: Vec<u32> = rows.iter().map(|r| r.version).collect();
        versions.dedup();
        let items = versions
            .iter()
            .map(|&version| {
                let mine: Vec<&HealthRow> = rows.iter().filter(|r| r.version == version).collect();
                VersionHealth {
                    version,
                    summary: Summary::of(mine.iter().copied()),
                    buckets: series.then(|| {
                        mine.iter()
                            .map(|r| BucketHealth {
                                start: iso8601(r.bucket_start),
                                summary: Summary::of([*r]),
                            })
                            .collect()
                    }),
                }
            })
            .collect();
        Ok(EndpointHealth {
            runtime_id: st.runtime.id,
            endpoint: st.endpoint.name,
            from: iso8601(from),
            to: iso8601(to),
            bucket_ms: self.inner.health.bucket_ms(),
            versions: items,
        })
    }
}

/// The `q` quantile (0..=1) of a latency histogram in ms, interpolated linearly inside its
/// bucket; `None` for an empty histogram.
pub fn percentile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the wanted observation, 1-based (nearest-rank definition).
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if seen + c >= rank {
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] } as f64;
            let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                // Overflow bucket: all we know is "more than the last bound".
                return Some(lower);
            };
            let within = (rank - seen) as f64 / c as f64;
            return Some(lower + (upper as f64 - lower) * within);
        }
        seen += c;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 1);
        assert_eq!(latency_bucket(4_000_000), LATENCY_BUCKETS - 1);
        let mut counts = [0u64; LATENCY_BUCKETS];
        // 98 fast (<= 10 ms), 2 slow (1.5 s .. 2 s).
        counts[latency_bucket(10)] = 98;
        counts[latency_bucket(1_800)] = 2;
        let p50 = percentile(&counts, 0.5).unwrap();
        assert!((8.0..=10.0).contains(&p50), "{p50}");
        let p99 = percentile(&counts, 0.99).unwrap();
        assert!((1_500.0..=2_000.0).contains(&p99), "{p99}");
        assert_eq!(percentile(&[0; 3], 0.5), None);
    }

    #[test]
    fn recorder_totals_survive_flushes_and_pending_splits_by_bucket() {
        let h = Health::new(1_000);
        h.record_at("rt", "prod", 1, Outcome::Ok, Duration::from_millis(5), 500);
        h.record_at(
            "rt",
            "prod",
            1,
            Outcome::AgentError,
            Duration::from_millis(5),
            1_500,
        );
        h.record_at(
            "rt",
            "prod",
            2,
            Outcome::Timeout,
            Duration::from_millis(5),
            1_600,
        );
        h.new_session_at("rt", "prod", 2, 1_600);
        let mut rows = h.take_pending();
        rows.sort_by_key(|r| (r.version, r.bucket_start));
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].version, rows[0].bucket_start, rows[0].invocations),
            (1, 0, 1)
        );
        assert_eq!((rows[1].bucket_start, rows[1].errors_5xx), (1_000, 1));
        assert_eq!((rows[2].timeouts, rows[2].new_sessions), (1, 1));
        assert!(h.take_pending().is_empty());
        h.restore(rows.clone());
        assert_eq!(h.take_pending().len(), 3);
        let totals = h.totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].invocations, 2);
        let s = Summary::of(&rows);
        assert_eq!((s.invocations, s.errors), (3, 2));
        assert!((s.error_rate - 2.0 / 3.0).abs() < 1e-9);
    }
}
