//! `berth serve` flags of online evaluation and drift alerts, and their `[evaluation]` table in
//! the config file (same names, `_` for `-`).

use crate::serve::{invalid, positive};
use berth_eval::alerts::DriftOptions;
use berth_eval::drift::DriftPolicy;
use berth_eval::online::OnlineOptions;
use serde::Deserialize;
use std::time::Duration;

/// Online evaluation and drift settings. Each is also read from `BERTH_<NAME>`.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalLoopArgs {
    /// How often online evaluation configs and drift are looked at, in ms [default: 10000].
    #[arg(long, env = "BERTH_EVAL_TICK_MS", value_name = "MS")]
    pub eval_tick_ms: Option<u64>,
    /// How long one minute of an online config's `sessionTimeoutMinutes` is, in ms (tests
    /// compress it) [default: 60000].
    #[arg(long, env = "BERTH_EVAL_MINUTE_MS", value_name = "MS")]
    pub eval_minute_ms: Option<u64>,
    /// Drift: the mean score of the version an endpoint serves must fall by more than this
    /// from its baseline to alert [default: 0.2].
    #[arg(long, env = "BERTH_DRIFT_MIN_DROP", value_name = "SCORE")]
    pub drift_min_drop: Option<f64>,
    /// Drift: scores in the baseline (a version's first) and in the recent window (its latest)
    /// [default: 20].
    #[arg(long, env = "BERTH_DRIFT_MIN_COUNT", value_name = "N")]
    pub drift_min_count: Option<usize>,
    /// Drift: also require Welch's p-value below this [default: none].
    #[arg(long, env = "BERTH_DRIFT_ALPHA", value_name = "P")]
    pub drift_alpha: Option<f64>,
    /// Drift: roll the endpoint back to its previous version when it drifts [default: false].
    #[arg(long, env = "BERTH_DRIFT_AUTO_ROLLBACK", value_name = "BOOL")]
    pub drift_auto_rollback: Option<bool>,
    /// Drift: URL each alert is POSTed to as JSON [default: none].
    #[arg(long, env = "BERTH_DRIFT_WEBHOOK", value_name = "URL")]
    pub drift_webhook: Option<String>,
}

impl EvalLoopArgs {
    /// Flags (over their variables) over the config file's `[evaluation]` table.
    pub fn over(self, file: EvalLoopArgs) -> EvalLoopArgs {
        EvalLoopArgs {
            eval_tick_ms: self.eval_tick_ms.or(file.eval_tick_ms),
            eval_minute_ms: self.eval_minute_ms.or(file.eval_minute_ms),
            drift_min_drop: self.drift_min_drop.or(file.drift_min_drop),
            drift_min_count: self.drift_min_count.or(file.drift_min_count),
            drift_alpha: self.drift_alpha.or(file.drift_alpha),
            drift_auto_rollback: self.drift_auto_rollback.or(file.drift_auto_rollback),
            drift_webhook: self.drift_webhook.or(file.drift_webhook),
        }
    }

    /// Layered values over the defaults.
    pub fn resolve(self) -> anyhow::Result<(OnlineOptions, DriftOptions)> {
        let tick = Duration::from_millis(positive(
            "eval_tick_ms",
            self.eval_tick_ms.unwrap_or(10_000),
        )?);
        let online = OnlineOptions {
            tick,
            minute_ms: positive("eval_minute_ms", self.eval_minute_ms.unwrap_or(60_000))?,
            ..OnlineOptions::default()
        };
        let min_drop = self.drift_min_drop.unwrap_or(0.2);
        if !(min_drop.is_finite() && min_drop >= 0.0) {
            return Err(invalid("drift_min_drop", "must be a number of at least 0"));
        }
        if let Some(a) = self.drift_alpha
            && !(a > 0.0 && a < 1.0)
        {
            return Err(invalid("drift_alpha", "must be between 0 and 1"));
        }
        let min_count = positive("drift_min_count", self.drift_min_count.unwrap_or(20))?;
        if self.drift_alpha.is_some() && min_count < 2 {
            return Err(invalid(
                "drift_min_count",
                "must be at least 2 with drift_alpha (a t-test needs two values a side)",
            ));
        }
        if let Some(u) = &self.drift_webhook
            && reqwest::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(invalid(
                "drift_webhook",
                format!("{u:?} is not an http(s) URL"),
            ));
        }
        let drift = DriftOptions {
            policy: DriftPolicy {
                min_drop,
                min_count,
                alpha: self.drift_alpha,
                ..DriftPolicy::default()
            },
            auto_rollback: self.drift_auto_rollback.unwrap_or(false),
            webhook: self.drift_webhook,
            tick,
        };
        Ok((online, drift))
    }
}
