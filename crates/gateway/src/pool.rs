//! Credential pools: each upstream's credentials (Berth secrets) with their health.
//!
//! A credential that answered 429 or "overloaded" cools down for the upstream's `Retry-After`
//! (else `cooldown_secs`); one that answered 401/403 (revoked, wrong) for `auth_cooldown_secs`.
//! Picking takes the healthy credential with the fewest requests in flight, the least recently
//! used among equals, so load spreads and a cooled credential's share moves to the others at
//! once. When every credential of a request's chain is cooling, the request waits for the first
//! to come back (or for a secret to change), bounded by the queue timeout: a pause, not an error.
//!
//! Health is kept per secret *version*: replacing a secret's value (`berth secrets put`) gives
//! a fresh, healthy credential; deleting it takes it out of the pool at the next reload, while
//! requests already using it finish with the value they hold.

use crate::config;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One secret's value as the pool holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    pub name: String,
    pub version: u64,
    pub value: String,
}

struct Cred {
    name: String,
    version: u64,
    value: Arc<str>,
    cool_until: Option<Instant>,
    in_flight: usize,
    last_used: u64,
}

struct State {
    creds: Vec<Cred>,
    uses: u64,
}

/// One upstream and its pool.
pub struct Upstream {
    pub cfg: config::Upstream,
    state: Mutex<State>,
}

/// Every upstream's pool, and the signal a waiting request wakes on.
pub struct Pools {
    pub upstreams: Vec<Arc<Upstream>>,
    changed: Notify,
}

/// A credential taken for one attempt; gives its in-flight slot back when dropped.
pub struct Lease {
    pub upstream: Arc<Upstream>,
    pub name: String,
    pub version: u64,
    pub value: Arc<str>,
    pub model: Option<String>,
    pools: Arc<Pools>,
}

/// What a pick found.
pub enum Pick {
    Lease(Lease),
    /// Every credential of the chain is cooling; the first comes back at this instant.
    CoolingUntil(Instant),
    /// The chain has no credential at all (no secret of its names exists yet).
    Empty,
    /// Every healthy credential already failed this request.
    Exhausted,
}

/// One step of a request's route: an upstream, and the model asked of it (`None`: the
/// agent's).
#[derive(Clone)]
pub struct Step {
    pub upstream: Arc<Upstream>,
    pub model: Option<String>,
}

impl Upstream {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The names and health of this upstream's credentials, for the native API.
    pub fn health(&self, now: Instant) -> Vec<(String, u64, Option<Duration>, usize)> {
        self.lock()
            .creds
            .iter()
            .map(|c| {
                let left = c
                    .cool_until
                    .and_then(|t| t.checked_duration_since(now))
                    .filter(|d| !d.is_zero());
                (c.name.clone(), c.version, left, c.in_flight)
            })
            .collect()
    }

    /// Replaces the credential list, keeping the health of credentials whose secret version is
    /// unchanged.
    pub fn replace(&self, values: Vec<SecretValue>) {
        let mut s = self.lock();
        let mut old = std::mem::take(&mut s.creds);
        s.creds = values
            .into_iter()
            .map(|v| {
                match old
                    .iter()
                    .position(|c| c.name == v.name && c.version == v.version)
                {
                    Some(i) => old.swap_remove(i),
                    None => Cred {
                        name: v.name,
                        version: v.version,
                        value: v.value.into(),
                        cool_until: None,
                        in_flight: 0,
                        last_used: 0,
                    },
                }
            })
            .collect();
    }
}

impl Pools {
    pub fn new(cfg: &config::Config) -> Arc<Self> {
        Arc::new(Self {
            upstreams: cfg
                .upstreams
                .iter()
                .map(|u| {
                    Arc::new(Upstream {
                        cfg: u.clone(),
                        state: Mutex::new(State {
                            creds: Vec::new(),
                            uses: 0,
                        }),
                    })
                })
                .collect(),
            changed: Notify::new(),
        })
    }

    /// Wakes every waiting request (a secret changed, a credential came back).
    pub fn wake(&self) {
        self.changed.notify_waiters();
    }

    /// A future that completes at the next [`Pools::wake`]; create it before checking state.
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The route of a request for `model` through `protocol`: the first upstream that serves
    /// the model, then its fallbacks (each once).
    pub fn route(&self, protocol: crate::Protocol, model: &str) -> Vec<Step> {
        let Some(first) = self
            .upstreams
            .iter()
            .find(|u| u.cfg.protocol == protocol && u.cfg.serves(model))
        else {
            return Vec::new();
        };
        let mut steps = vec![Step {
            upstream: first.clone(),
            model: None,
        }];
        for f in &first.cfg.fallbacks {
            if let Some(u) = self.upstreams.iter().find(|u| u.cfg.name == f.upstream) {
                steps.push(Step {
                    upstream: u.clone(),
                    model: f.model.clone(),
                });
            }
        }
        steps
    }

    /// Takes the best credential of the first step that has a healthy one, skipping the
    /// (upstream, credential) pairs in `avoid` (those that failed this request already).
    pub fn pick(
        self: &Arc<Self>,
        steps: &[Step],
        avoid: &[(String, String)],
        now: Instant,
    ) -> Pick {
        let mut soonest: Option<Instant> = None;
        let mut any = false;
        for step in steps {
            let u = &step.upstream;
            let mut s = u.lock();
            s.uses += 1;
            let uses = s.uses;
            for c in s.creds.iter_mut() {
                any = true;
                if c.cool_until.is_some_and(|t| t <= now) {
                    c.cool_until = None;
                }
                if let Some(t) = c.cool_until {
                    soonest = Some(soonest.map_or(t, |s| s.min(t)));
                }
            }
            // Fewest in flight, then least recently used.
            let chosen = s
                .creds
                .iter()
                .enumerate()
                .filter(|(_, c)| c.cool_until.is_none())
                .filter(|(_, c)| {
                    !avoid
                        .iter()
                        .any(|(up, name)| *up == u.cfg.name && *name == c.name)
                })
                .min_by_key(|(_, c)| (c.in_flight, c.last_used))
                .map(|(i, _)| i);
            if let Some(i) = chosen {
                let c = &mut s.creds[i];
                c.in_flight += 1;
                c.last_used = uses;
                return Pick::Lease(Lease {
                    upstream: u.clone(),
                    name: c.name.clone(),
                    version: c.version,
                    value: c.value.clone(),
                    model: step.model.clone(),
                    pools: self.clone(),
                });
            }
        }
        match soonest {
            Some(t) => Pick::CoolingUntil(t),
            None if any => Pick::Exhausted,
            None => Pick::Empty,
        }
    }
}

impl Lease {
    /// This credential failed in a way that says "not now" (rate limited, overloaded, revoked):
    /// it rests for `rest`.
    pub fn cool(&self, rest: Duration) {
        let mut s = self.upstream.lock();
        if let Some(c) = s
            .creds
            .iter_mut()
            .find(|c| c.name == self.name && c.version == self.version)
        {
            let until = Instant::now() + rest;
            c.cool_until = Some(c.cool_until.map_or(until, |t| t.max(until)));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut s = self.upstream.lock();
            if let Some(c) = s
                .creds
                .iter_mut()
                .find(|c| c.name == self.name && c.version == self.version)
            {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
        self.pools.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Arc<Pools> {
        let cfg = config::Config::parse(
            r#"
            [[upstreams]]
            name = "a"
            protocol = "anthropic"
            url = "http://127.0.0.1:9"
            secret_prefix = "a/"
            fallbacks = [{ upstream = "b", model = "small" }]
            [[upstreams]]
            name = "b"
            protocol = "anthropic"
            url = "http://127.0.0.1:9"
            secrets = ["b1"]
            "#,
        )
        .unwrap();
        let p = Pools::new(&cfg);
        let v = |n: &str, ver| SecretValue {
            name: n.into(),
            version: ver,
            value: format!("{n}-v{ver}"),
        };
        p.upstreams[0].replace(vec![v("a/1", 1), v("a/2", 1)]);
        p.upstreams[1].replace(vec![v("b1", 1)]);
        p
    }

    fn lease(p: Pick) -> Lease {
        match p {
            Pick::Lease(l) => l,
            _ => panic!("no lease"),
        }
    }

    #[test]
    fn load_spreads_and_a_cooled_credential_is_skipped_until_it_returns() {
        let p = pools();
        let steps = p.route(crate::Protocol::Anthropic, "claude");
        assert_eq!(steps.len(), 2);
        let now = Instant::now();
        let l1 = lease(p.pick(&steps, &[], now));
        let l2 = lease(p.pick(&steps, &[], now));
        assert_ne!(l1.name, l2.name, "fewest in flight first");
        l1.cool(Duration::from_secs(60));
        let cooled = l1.name.clone();
        drop((l1, l2));
        for _ in 0..5 {
            let l = lease(p.pick(&steps, &[], now));
            assert_ne!(l.name, cooled);
        }
        // Past its cooldown it serves again.
        let later = now + Duration::from_secs(61);
        let names: Vec<String> = (0..2)
            .map(|_| lease(p.pick(&steps, &[], later)).name.clone())
            .collect();
        assert!(names.contains(&cooled), "{names:?}");
    }

    #[test]
    fn a_chain_falls_back_then_waits_when_all_cool() {
        let p = pools();
        let steps = p.route(crate::Protocol::Anthropic, "claude");
        let now = Instant::now();
        for _ in 0..2 {
            lease(p.pick(&steps, &[], now)).cool(Duration::from_secs(30));
        }
        let fb = lease(p.pick(&steps, &[], now));
        assert_eq!(
            (fb.upstream.cfg.name.as_str(), fb.model.as_deref()),
            ("b", Some("small"))
        );
        fb.cool(Duration::from_secs(10));
        match p.pick(&steps, &[], now) {
            Pick::CoolingUntil(t) => assert!(t > now + Duration::from_secs(9)),
            _ => panic!("expected a wait"),
        }
    }

    #[test]
    fn a_replaced_secret_is_healthy_and_a_deleted_one_is_gone() {
        let p = pools();
        let steps = p.route(crate::Protocol::Anthropic, "claude");
        let now = Instant::now();
        let l = lease(p.pick(&steps, &[], now));
        l.cool(Duration::from_secs(300));
        let cooled = l.name.clone();
        drop(l);
        let other = if cooled == "a/1" { "a/2" } else { "a/1" };
        p.upstreams[0].replace(vec![
            SecretValue {
                name: cooled.clone(),
                version: 2,
                value: "new".into(),
            },
            SecretValue {
                name: other.into(),
                version: 1,
                value: "x".into(),
            },
        ]);
        let h = p.upstreams[0].health(now);
        assert!(h.iter().all(|(_, _, cool, _)| cool.is_none()), "{h:?}");
        p.upstreams[0].replace(vec![]);
        let l = lease(p.pick(&steps, &[], now));
        assert_eq!(l.upstream.cfg.name, "b");
    }
}
