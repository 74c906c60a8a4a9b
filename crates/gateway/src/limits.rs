//! Rate limits (requests per UTC minute) and token budgets (per UTC day), per runtime and per
//! actor (the invoking user id), counted in this process. Windows are fixed: a limit of 60 per
//! minute admits 60 requests from :00 to :59. Budgets are checked before a call and spent when
//! its usage is known, so a call in flight may overshoot a budget by its own tokens. At start,
//! `serve` seeds today's spend from the usage store, so a restart does not refill a budget.

use crate::config::Limits;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    RuntimeRequests(String),
    ActorRequests(String),
    RuntimeTokens(String),
    ActorTokens(String),
}

pub struct Limiter {
    cfg: Limits,
    counts: Mutex<HashMap<Key, (u64, u64)>>,
}

fn minute(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl Limiter {
    pub fn new(cfg: Limits) -> Self {
        Self {
            cfg,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn runtime_rpm(&self, runtime: &str) -> Option<u64> {
        match self.cfg.runtimes.get(runtime) {
            Some(r) => r.requests_per_minute,
            None => self.cfg.runtime_requests_per_minute,
        }
    }

    fn runtime_tpd(&self, runtime: &str) -> Option<u64> {
        match self.cfg.runtimes.get(runtime) {
            Some(r) => r.tokens_per_day,
            None => self.cfg.runtime_tokens_per_day,
        }
    }

    /// Admits one request of `runtime` for `actor`, or says which limit it is over.
    pub fn admit(&self, runtime: &str, actor: Option<&str>, now: SystemTime) -> Result<(), String> {
        let (m, d) = (minute(now), day(now));
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let used = |counts: &HashMap<Key, (u64, u64)>, k: &Key, window: u64| {
            counts
                .get(k)
                .filter(|(w, _)| *w == window)
                .map_or(0, |(_, n)| *n)
        };
        if let Some(budget) = self.runtime_tpd(runtime) {
            let k = Key::RuntimeTokens(runtime.to_owned());
            if used(&counts, &k, d) >= budget {
                return Err(format!(
                    "runtime {runtime} has used its budget of {budget} tokens today"
                ));
            }
        }
        if let (Some(budget), Some(a)) = (self.cfg.actor_tokens_per_day, actor) {
            let k = Key::ActorTokens(a.to_owned());
            if used(&counts, &k, d) >= budget {
                return Err(format!(
                    "user {a} has used their budget of {budget} tokens today"
                ));
            }
        }
        let mut take = Vec::new();
        if let Some(limit) = self.runtime_rpm(runtime) {
            let k = Key::RuntimeRequests(runtime.to_owned());
            if used(&counts, &k, m) >= limit {
                return Err(format!(
                    "runtime {runtime} is over its limit of {limit} model requests per minute"
                ));
            }
            take.push(k);
        }
        if let (Some(limit), Some(a)) = (self.cfg.actor_requests_per_minute, actor) {
            let k = Key::ActorRequests(a.to_owned());
            if used(&counts, &k, m) >= limit {
                return Err(format!(
                    "user {a} is over the limit of {limit} model requests per minute"
                ));
            }
            take.push(k);
        }
        for k in take {
            let e = counts.entry(k).or_insert((m, 0));
            if e.0 != m {
                *e = (m, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }

    /// Adds a finished call's tokens to today's spend of `runtime` and `actor`.
    pub fn spend(&self, runtime: &str, actor: Option<&str>, tokens: u64, now: SystemTime) {
        self.seed(Some(runtime), actor, tokens, now);
    }

    /// Adds tokens spent earlier today (read from the usage store at start) to `runtime`'s
    /// and/or `actor`'s spend.
    pub fn seed(&self, runtime: Option<&str>, actor: Option<&str>, tokens: u64, now: SystemTime) {
        if tokens == 0 {
            return;
        }
        let d = day(now);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut add = |k: Key| {
            let e = counts.entry(k).or_insert((d, 0));
            if e.0 != d {
                *e = (d, 0);
            }
            e.1 = e.1.saturating_add(tokens);
        };
        if let Some(runtime) = runtime.filter(|r| self.runtime_tpd(r).is_some()) {
            add(Key::RuntimeTokens(runtime.to_owned()));
        }
        if let (Some(_), Some(a)) = (self.cfg.actor_tokens_per_day, actor) {
            add(Key::ActorTokens(a.to_owned()));
        }
    }

    /// Whether any token budget is configured (`serve` seeds spend only then).
    pub fn has_budgets(&self) -> bool {
        self.cfg.runtime_tokens_per_day.is_some()
            || self.cfg.actor_tokens_per_day.is_some()
            || self
                .cfg
                .runtimes
                .values()
                .any(|r| r.tokens_per_day.is_some())
    }

    /// The start of the current budget day, in Unix milliseconds.
    pub fn day_start_ms(now: SystemTime) -> i64 {
        (day(now) * 86_400_000) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Limits};
    use std::time::Duration;

    fn limits(text: &str) -> Limits {
        Config::parse(text).unwrap().limits
    }

    #[test]
    fn requests_per_minute_per_runtime_and_actor() {
        let l = Limiter::new(limits(
            "[limits]\nruntime_requests_per_minute = 3\nactor_requests_per_minute = 2\n",
        ));
        let t = UNIX_EPOCH + Duration::from_secs(600);
        assert!(l.admit("r", Some("alice"), t).is_ok());
        assert!(l.admit("r", Some("alice"), t).is_ok());
        let e = l.admit("r", Some("alice"), t).unwrap_err();
        assert!(e.contains("user alice"), "{e}");
        assert!(l.admit("r", Some("bob"), t).is_ok());
        let e = l.admit("r", Some("carol"), t).unwrap_err();
        assert!(e.contains("runtime r"), "{e}");
        // The next minute starts afresh.
        assert!(
            l.admit("r", Some("alice"), t + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn token_budgets_per_day_with_runtime_overrides() {
        let l = Limiter::new(limits(
            "[limits]\nruntime_tokens_per_day = 100\n[limits.runtimes.big]\ntokens_per_day = 1000\n",
        ));
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 5);
        l.spend("small", None, 100, t);
        assert!(l.admit("small", None, t).is_err());
        l.spend("big", None, 500, t);
        assert!(l.admit("big", None, t).is_ok());
        assert!(
            l.admit("small", None, t + Duration::from_secs(86_400))
                .is_ok()
        );
        assert!(l.has_budgets());
    }
}
