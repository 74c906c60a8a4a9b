//! Latency histograms (HdrHistogram, microseconds, three significant digits) and their JSON
//! summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest value recorded: one hour in microseconds. Anything longer is clamped to it (a request
/// that slow has failed the benchmark anyway).
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub struct Latency(Histogram<u64>);

impl Latency {
    /// An empty histogram covering 1 µs to one hour.
    pub fn new() -> Self {
        // The bounds and precision are constants that HdrHistogram accepts (low >= 1,
        // high >= 2 * low, sigfig <= 5), so construction cannot fail.
        #[allow(clippy::expect_used)]
        let h = Histogram::new_with_bounds(1, MAX_US, 3).expect("constant, valid histogram bounds");
        Self(h)
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        self.0.saturating_record(us);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding never fails; saturate rather than stop.
        let _ = self.0.add(&other.0);
    }

    /// Percentiles and extremes, in microseconds (all zero when empty).
    pub fn summary(&self) -> Summary {
        let h = &self.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// Summary of a latency distribution, in microseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::new();
        for us in 1..=1000 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min, 1);
        assert_eq!(s.p50, 500);
        assert_eq!(s.p99, 990);
        assert_eq!(s.max, 1000);
    }

    #[test]
    fn merge_adds_counts_and_empty_is_zero() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        assert_eq!(a.summary().count, 0);
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(20));
        a.merge(&b);
        assert_eq!(a.summary().count, 2);
        assert_eq!(a.summary().max, 20);
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10_000));
        let s = l.summary();
        assert_eq!(s.min, 1);
        assert!(s.max >= MAX_US);
    }
}
