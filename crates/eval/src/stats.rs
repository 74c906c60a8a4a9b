//! Statistics of scores: mean, sample variance, the t-based 95% confidence interval of a mean,
//! differences of means and Welch's t-test. Experiments, drift and rollout signals all use these.
//!
//! The Student t distribution comes from `statrs`; nothing here hand-writes a special function.
//!
//! Degenerate cases, defined once here and nowhere else:
//! - no values: [`Summary::mean`] is `None` (and so is everything built on it);
//! - one value: the mean is that value; variance and interval are `None` (a sample variance needs
//!   two values);
//! - zero variance (every value equal): the variance is `0` and the interval is `[mean, mean]`;
//! - [`welch`] needs two values on each side, else `None`. When both sides have zero variance the
//!   test statistic is not defined by the formula (0/0): equal means give `t = 0`, `p = 1`,
//!   different means give `t = ±∞`, `p = 0`; `df` is then `n₁ + n₂ − 2` (the pooled degrees of
//!   freedom, which the Welch–Satterthwaite formula cannot give).
//! - [`relative_change`] is `None` when the baseline mean is `0`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The two-sided confidence level of [`Summary::ci95`].
pub const CONFIDENCE: f64 = 0.95;

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// What one sample of values says about its mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// The arithmetic mean; `None` without values.
    pub mean: Option<f64>,
    /// The sample variance (divided by `n − 1`); `None` below two values.
    pub variance: Option<f64>,
    /// The t-based 95% confidence interval of the mean; `None` below two values.
    pub ci95: Option<Interval>,
}

impl Summary {
    /// Summarises `values` (non-finite values are the caller's to leave out; see the module docs
    /// for small samples).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Self {
                n,
                mean: None,
                variance: None,
                ci95: None,
            };
        }
        let mean = mean(values);
        if n < 2 {
            return Self {
                n,
                mean: Some(mean),
                variance: None,
                ci95: None,
            };
        }
        let variance = sample_variance(values, mean);
        let ci95 = Some(mean_interval(mean, variance, n));
        Self {
            n,
            mean: Some(mean),
            variance: Some(variance),
            ci95,
        }
    }

    /// The sample standard deviation.
    pub fn std_dev(&self) -> Option<f64> {
        self.variance.map(f64::sqrt)
    }
}

/// Two-pass mean: the sum divided by the count (callers guarantee a non-empty slice).
fn mean(values: &[f64]) -> f64 {
    debug_assert!(!values.is_empty());
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sum of squared deviations from `mean` over `n − 1` (two-pass, stable for scores).
fn sample_variance(values: &[f64], mean: f64) -> f64 {
    debug_assert!(values.len() >= 2);
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    ss / (values.len() - 1) as f64
}

/// The Student t distribution with `df` degrees of freedom (`df > 0`, finite).
fn student(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

/// `mean ± t(0.975, n − 1) · s / √n`; `[mean, mean]` for zero variance.
fn mean_interval(mean: f64, variance: f64, n: usize) -> Interval {
    if variance == 0.0 {
        return Interval {
            lower: mean,
            upper: mean,
        };
    }
    let df = (n - 1) as f64;
    let q = student(df)
        .map(|t| t.inverse_cdf(0.5 + CONFIDENCE / 2.0))
        // df ≥ 1 always builds a distribution; NaN would make the failure visible.
        .unwrap_or(f64::NAN);
    let half = q * (variance / n as f64).sqrt();
    Interval {
        lower: mean - half,
        upper: mean + half,
    }
}

/// `treatment − baseline`.
pub fn absolute_change(treatment: &Summary, baseline: &Summary) -> Option<f64> {
    Some(treatment.mean? - baseline.mean?)
}

/// `(treatment − baseline) / |baseline|`, a fraction (`0.1` is ten percent better); `None` for a
/// zero baseline mean.
pub fn relative_change(treatment: &Summary, baseline: &Summary) -> Option<f64> {
    let b = baseline.mean?;
    if b == 0.0 {
        return None;
    }
    Some((treatment.mean? - b) / b.abs())
}

/// Welch's unequal-variances t-test of `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welch {
    /// `(mean_a − mean_b) / √(s²_a/n_a + s²_b/n_b)`.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Welch's t-test of two summaries (see the module docs for the degenerate cases).
pub fn welch(a: &Summary, b: &Summary) -> Option<Welch> {
    let (ma, va) = (a.mean?, a.variance?);
    let (mb, vb) = (b.mean?, b.variance?);
    let (na, nb) = (a.n as f64, b.n as f64);
    let (ea, eb) = (va / na, vb / nb);
    let se2 = ea + eb;
    if se2 == 0.0 {
        let df = na + nb - 2.0;
        return Some(if ma == mb {
            Welch {
                t: 0.0,
                df,
                p_value: 1.0,
            }
        } else {
            Welch {
                t: if ma > mb {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                },
                df,
                p_value: 0.0,
            }
        });
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (ea * ea / (na - 1.0) + eb * eb / (nb - 1.0));
    let p_value = student(df).map(|d| (2.0 * d.sf(t.abs())).min(1.0))?;
    Some(Welch { t, df, p_value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn empty_and_single_samples() {
        let s = Summary::of(&[]);
        assert_eq!((s.n, s.mean, s.variance, s.ci95), (0, None, None, None));
        let s = Summary::of(&[0.7]);
        assert_eq!(
            (s.n, s.mean, s.variance, s.ci95),
            (1, Some(0.7), None, None)
        );
        assert!(welch(&s, &Summary::of(&[0.1, 0.2])).is_none());
    }

    #[test]
    fn zero_variance_gives_a_point_interval() {
        let s = Summary::of(&[0.5, 0.5, 0.5]);
        assert_eq!(s.variance, Some(0.0));
        assert_eq!(
            s.ci95,
            Some(Interval {
                lower: 0.5,
                upper: 0.5
            })
        );
        let same = welch(&s, &Summary::of(&[0.5, 0.5])).unwrap();
        assert_eq!((same.t, same.df, same.p_value), (0.0, 3.0, 1.0));
        let diff = welch(&Summary::of(&[0.2, 0.2]), &s).unwrap();
        assert_eq!((diff.t, diff.p_value), (f64::NEG_INFINITY, 0.0));
    }

    /// Values worked by hand: mean 2.5, variance 5/3, t(0.975, 3) = 3.182446305284263.
    #[test]
    fn mean_variance_and_interval() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, Some(2.5));
        assert!(close(s.variance.unwrap(), 5.0 / 3.0, 1e-12));
        let half = 3.182446305284263 * (5.0f64 / 3.0 / 4.0).sqrt();
        let ci = s.ci95.unwrap();
        assert!(close(ci.lower, 2.5 - half, 1e-9), "{ci:?}");
        assert!(close(ci.upper, 2.5 + half, 1e-9), "{ci:?}");
    }

    /// Welch's formulas worked by hand for two samples, and the p-value's known symmetry and
    /// bounds (scipy's own numbers are compared in tests/conformance/test_experiment.py).
    #[test]
    fn welch_statistic_and_df() {
        let a = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        let b = Summary::of(&[2.0, 4.0, 6.0]);
        let w = welch(&a, &b).unwrap();
        let (ea, eb): (f64, f64) = (5.0 / 3.0 / 4.0, 4.0 / 3.0);
        assert!(close(w.t, (2.5 - 4.0) / (ea + eb).sqrt(), 1e-12));
        let df = (ea + eb).powi(2) / (ea * ea / 3.0 + eb * eb / 2.0);
        assert!(close(w.df, df, 1e-12));
        assert!(w.p_value > 0.0 && w.p_value < 1.0);
        let back = welch(&b, &a).unwrap();
        assert_eq!(back.t, -w.t);
        assert!(close(back.p_value, w.p_value, 1e-12));
        // Identical samples: t = 0, p = 1.
        assert!(close(welch(&a, &a).unwrap().p_value, 1.0, 1e-12));
    }

    #[test]
    fn changes() {
        let a = Summary::of(&[0.6, 0.8]);
        let b = Summary::of(&[0.4, 0.6]);
        assert!(close(absolute_change(&a, &b).unwrap(), 0.2, 1e-12));
        assert!(close(relative_change(&a, &b).unwrap(), 0.4, 1e-12));
        assert_eq!(relative_change(&a, &Summary::of(&[0.0, 0.0])), None);
        assert_eq!(absolute_change(&a, &Summary::of(&[])), None);
    }
}
