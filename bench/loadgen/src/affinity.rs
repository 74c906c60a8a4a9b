//! `affinity` (B7): many sessions, each invoked several times, interleaved with every other
//! session's calls, open loop, through an endpoint that splits new sessions between versions.
//! Every answer names the version that served it (the fast agent's opt-in `tag`); a session's
//! follow-up answered by another version than its first is an affinity violation.
//!
//! The schedule: `--active` sessions are in flight at once. Slots are released `1/rate` apart
//! (open loop, `timerfd`); slot `j` goes to lane `j % active` of round `j / active`, and each
//! lane runs one session for `--invocations` rounds before the next session takes it. So a
//! session's calls are `active/rate` seconds apart with the calls of `active - 1` other
//! sessions between them, and new sessions arrive at `rate/invocations` per second.
//!
//! Every `--reroute-every`-th session is stopped (`StopRuntimeSession`) right after its first
//! answer, by the worker that received it and before the session's next call is sent (a call
//! due while the stop is in flight waits for it, inside its latency): its follow-ups find no
//! live sandbox and are routed again, through the session's durable assignment, to a new
//! sandbox. The others keep their sandbox. Every session is stopped after its last answer by a
//! separate pool of connections (outside any timing), so the number of live sandboxes stays
//! near `--active`.
//!
//! The generator runs on one thread: at a few hundred calls per second it is far from its
//! limits, and every latency is still counted from the slot's intended start.
//!
//! With `--split TAG=PERCENT,...` (tags in version order, as the endpoint's weights) each
//! session's expected version is computed from the hash of its id exactly as Berth routes it
//! (`berth_control::traffic::session_bucket`): a session first answered by another version is
//! *misrouted*.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::client::{Connection, Template, new_session_id, receive};
use crate::rate::stop_path;
use crate::stats::{Latency, Summary};
use crate::timer::PreciseTimer;

/// Settings of one run.
pub struct AffinityConfig {
    /// Sessions.
    pub sessions: u64,
    /// Invocations per session.
    pub invocations: u32,
    /// Invocations per second offered.
    pub rate: f64,
    /// Sessions in flight at once (interleaved).
    pub active: u64,
    /// Connections (one worker each).
    pub connections: usize,
    /// Every n-th session is stopped after its first answer and routed again (0: none).
    pub reroute_every: u64,
    /// An invocation not answered this long after its intended start is an error.
    pub timeout: Duration,
    /// JSON field of the answer naming the version.
    pub tag_field: String,
    /// Expected split: (tag, percent) in version order.
    pub split: Vec<(String, u32)>,
}

/// Parses `TAG=PERCENT,TAG=PERCENT` (percentages summing to 100).
pub fn parse_split(s: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (tag, pct) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--split {part:?}: expected TAG=PERCENT"))?;
        let pct: u32 = pct
            .parse()
            .with_context(|| format!("--split {part:?}: the percentage is not a whole number"))?;
        out.push((tag.to_owned(), pct));
    }
    let total: u32 = out.iter().map(|(_, p)| p).sum();
    if !out.is_empty() && total != 100 {
        bail!("--split percentages sum to {total}, not 100");
    }
    Ok(out)
}

/// The tag Berth's weights send a session to: its hash bucket against the cumulative weights.
fn expected_tag<'a>(split: &'a [(String, u32)], session_id: &str) -> Option<&'a str> {
    let bucket = berth_control::traffic::session_bucket(session_id);
    let per_percent = berth_control::traffic::BUCKETS / 100;
    let mut upper = 0;
    for (tag, pct) in split {
        upper += pct * per_percent;
        if bucket < upper {
            return Some(tag);
        }
    }
    None
}

/// One version's part of the run.
#[derive(Debug, Default, Serialize)]
pub struct VersionShare {
    /// Sessions whose first answer came from this version.
    pub sessions: u64,
    /// Their share of the sessions that were answered, percent.
    pub share_percent: f64,
    /// Expected share (`--split`), percent.
    pub expected_percent: Option<u32>,
    /// Invocations this version answered.
    pub invocations: u64,
}

/// Result of a run; latencies in microseconds.
#[derive(Debug, Default, Serialize)]
pub struct AffinityReport {
    /// Sessions scheduled.
    pub sessions: u64,
    /// Invocations per session.
    pub invocations_per_session: u32,
    /// Sessions in flight at once.
    pub active_sessions: u64,
    /// Invocations per second offered.
    pub offered_rate: f64,
    /// Answered invocations per second, first slot to last answer.
    pub achieved_rate: f64,
    /// First slot to last answer, seconds.
    pub duration_s: f64,
    /// Invocations scheduled.
    pub invocations: u64,
    /// Invocations answered 200 with a tag.
    pub ok: u64,
    /// Invocations that failed: other status, transport error, timeout, no tag.
    pub errors: u64,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Per version (tag): sessions, share, invocations.
    pub versions: BTreeMap<String, VersionShare>,
    /// Sessions with at least one answer.
    pub sessions_answered: u64,
    /// Answered follow-ups served by another version than their session's first answer.
    pub violations: u64,
    /// Sessions with at least one violation.
    pub sessions_with_violations: u64,
    /// A few violating sessions, with their answers in order.
    pub violation_samples: Vec<String>,
    /// Sessions first answered by another version than their hash bucket selects (`--split`).
    pub misrouted_sessions: Option<u64>,
    /// Sessions stopped after their first answer, so their follow-ups were routed again.
    pub rerouted_sessions: u64,
    /// Sessions due for a re-route whose next call was already taken when their first answer
    /// came (the server was slower than the gap between a session's calls): left running, since
    /// stopping them would cut a call in flight.
    pub reroutes_skipped: u64,
    /// Answered follow-ups of those sessions (each one a fresh routing through the assignment).
    pub rerouted_follow_ups: u64,
    /// Violations among them.
    pub rerouted_violations: u64,
    /// Intended start to last byte of first invocations (new sessions), µs.
    pub latency_first: Summary,
    /// Intended start to last byte of follow-ups, µs (those of rerouted sessions start a new
    /// sandbox, the others reuse theirs).
    pub latency_follow_up: Summary,
    /// Re-route stops that failed (the session was not stopped; its follow-ups reused its
    /// sandbox). Not counted in `errors`, which are calls; listed in `error_samples`.
    pub reroute_stop_failed: u64,
    /// Sessions stopped after their last answer.
    pub sessions_stopped: u64,
    /// Stop calls that answered other than 200 (404: the session had already ended).
    pub sessions_stop_failed: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    intended: Instant,
    session: usize,
    invocation: u32,
}

/// What the run knows about one session.
struct SessionState {
    id: String,
    /// Invocations a worker has taken (sent or about to be).
    taken: u32,
    /// Invocations done (answered or failed).
    done: u32,
    /// The tag of each invocation's answer; `None` while pending or when it failed.
    answers: Vec<Option<String>>,
    /// Set while the session is being stopped for a re-route: its next calls wait for it.
    gate: Option<watch::Receiver<bool>>,
    /// Stopped after its first answer (its follow-ups were routed again).
    rerouted: bool,
    /// Due for a re-route, but a later call had already been taken.
    reroute_skipped: bool,
}

#[derive(Default)]
struct WorkerResult {
    ok: u64,
    errors: u64,
    status: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    first: Latency,
    follow_up: Latency,
    last_done: Option<Instant>,
    reroute_stop_failed: u64,
}

impl WorkerResult {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.sample(message);
    }

    fn sample(&mut self, message: String) {
        if self.error_samples.len() < 5 {
            self.error_samples.push(message);
        }
    }

    fn absorb(&mut self, r: WorkerResult) {
        self.ok += r.ok;
        for (k, v) in r.status {
            *self.status.entry(k).or_default() += v;
        }
        self.errors += r.errors;
        for e in r.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
        self.first.merge(&r.first);
        self.follow_up.merge(&r.follow_up);
        self.last_done = self.last_done.max(r.last_done);
        self.reroute_stop_failed += r.reroute_stop_failed;
    }
}

/// Everything the workers share.
struct Shared {
    template: Template,
    cfg: AffinityConfig,
    stop_path: String,
    sessions: Mutex<Vec<SessionState>>,
}

impl Shared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Vec<SessionState>> {
        // Held only for a few field updates, never across an await; recover from a poisoned
        // lock rather than lose the run's results.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the schedule against `template`'s URL (the body and signing come from the template;
/// the session id is set per call).
pub async fn run(template: Template, cfg: AffinityConfig) -> anyhow::Result<AffinityReport> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        bail!("--rate must be a positive number");
    }
    if cfg.sessions == 0 || cfg.invocations == 0 || cfg.active == 0 || cfg.connections == 0 {
        bail!("--sessions, --invocations, --active and --connections must be at least 1");
    }
    let stop_path = stop_path(&template.target.path_and_query).ok_or_else(|| {
        anyhow!("the url must end in /invocations (sessions are stopped next to it)")
    })?;
    let sessions = (0..cfg.sessions)
        .map(|_| SessionState {
            id: new_session_id(),
            taken: 0,
            done: 0,
            answers: vec![None; cfg.invocations as usize],
            gate: None,
            rerouted: false,
            reroute_skipped: false,
        })
        .collect();
    let active = cfg.active.min(cfg.sessions);
    let cohorts = cfg.sessions.div_ceil(active);
    let total_slots = cohorts * active * u64::from(cfg.invocations);
    let shared = Arc::new(Shared {
        template,
        cfg,
        stop_path,
        sessions: Mutex::new(sessions),
    });

    let (stop_tx, stop_rx) = mpsc::unbounded_channel::<String>();
    let stop_rx = Arc::new(tokio::sync::Mutex::new(stop_rx));
    let stoppers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(stopper(shared.clone(), stop_rx.clone())))
        .collect();

    let (slot_tx, slot_rx) = mpsc::unbounded_channel::<Slot>();
    let slot_rx = Arc::new(tokio::sync::Mutex::new(slot_rx));
    let mut workers = Vec::with_capacity(shared.cfg.connections);
    for _ in 0..shared.cfg.connections {
        let conn = Connection::open(shared.template.target.addr).await?;
        workers.push(tokio::spawn(worker(
            shared.clone(),
            conn,
            slot_rx.clone(),
            stop_tx.clone(),
        )));
    }
    drop(stop_tx);

    let timer = PreciseTimer::new().context("creating a timerfd")?;
    let start = Instant::now() + Duration::from_millis(20);
    for j in 0..total_slots {
        let (lane, round) = (j % active, j / active);
        let (cohort, invocation) = (
            round / u64::from(shared.cfg.invocations),
            round % u64::from(shared.cfg.invocations),
        );
        let session = cohort * active + lane;
        if session >= shared.cfg.sessions {
            // The last cohort is not full: its empty lanes leave gaps in the schedule.
            continue;
        }
        let intended = start + Duration::from_secs_f64(j as f64 / shared.cfg.rate);
        timer
            .sleep_until(intended)
            .await
            .context("waiting on the timerfd")?;
        let slot = Slot {
            intended,
            session: session as usize,
            invocation: invocation as u32,
        };
        if slot_tx.send(slot).is_err() {
            bail!("every worker stopped");
        }
    }
    drop(slot_tx);
    let mut total = WorkerResult::default();
    for w in workers {
        total.absorb(w.await.context("a worker panicked")??);
    }
    let (mut stopped, mut stop_failed) = (0, 0);
    for s in stoppers {
        let (a, b) = s.await.context("a stopper panicked")?;
        stopped += a;
        stop_failed += b;
    }
    let elapsed = total
        .last_done
        .map_or(0.0, |d| d.saturating_duration_since(start).as_secs_f64());
    let mut report = AffinityReport {
        sessions: shared.cfg.sessions,
        invocations_per_session: shared.cfg.invocations,
        active_sessions: active,
        offered_rate: shared.cfg.rate,
        achieved_rate: if elapsed > 0.0 {
            total.ok as f64 / elapsed
        } else {
            0.0
        },
        duration_s: elapsed,
        invocations: shared.cfg.sessions * u64::from(shared.cfg.invocations),
        ok: total.ok,
        errors: total.errors,
        status: total.status,
        error_samples: total.error_samples,
        latency_first: total.first.summary(),
        latency_follow_up: total.follow_up.summary(),
        reroute_stop_failed: total.reroute_stop_failed,
        sessions_stopped: stopped,
        sessions_stop_failed: stop_failed,
        ..AffinityReport::default()
    };
    analyse(&shared.sessions(), &shared.cfg.split, &mut report);
    Ok(report)
}

/// Shares, violations and misrouted sessions from every session's answers.
fn analyse(sessions: &[SessionState], split: &[(String, u32)], report: &mut AffinityReport) {
    let mut misrouted = 0;
    for s in sessions {
        // The session's version is that of its first answered call (normally call 0).
        let Some((first_index, first)) = s
            .answers
            .iter()
            .enumerate()
            .find_map(|(i, a)| a.as_ref().map(|t| (i, t)))
        else {
            continue;
        };
        report.sessions_answered += 1;
        report.versions.entry(first.clone()).or_default().sessions += 1;
        let mut violated = false;
        for (i, tag) in s.answers.iter().enumerate() {
            let Some(tag) = tag else { continue };
            report.versions.entry(tag.clone()).or_default().invocations += 1;
            if s.rerouted && i > 0 {
                report.rerouted_follow_ups += 1;
            }
            if i != first_index && tag != first {
                report.violations += 1;
                violated = true;
                if s.rerouted {
                    report.rerouted_violations += 1;
                }
            }
        }
        if violated {
            report.sessions_with_violations += 1;
            if report.violation_samples.len() < 5 {
                let seq: Vec<&str> = s
                    .answers
                    .iter()
                    .map(|a| a.as_deref().unwrap_or("-"))
                    .collect();
                report
                    .violation_samples
                    .push(format!("{}: {}", s.id, seq.join(" ")));
            }
        }
        if s.rerouted {
            report.rerouted_sessions += 1;
        }
        if s.reroute_skipped {
            report.reroutes_skipped += 1;
        }
        if !split.is_empty() && expected_tag(split, &s.id) != Some(first.as_str()) {
            misrouted += 1;
        }
    }
    for (tag, pct) in split {
        report
            .versions
            .entry(tag.clone())
            .or_default()
            .expected_percent = Some(*pct);
    }
    let answered = report.sessions_answered.max(1) as f64;
    for v in report.versions.values_mut() {
        v.share_percent = (v.sessions as f64 * 10_000.0 / answered).round() / 100.0;
    }
    if !split.is_empty() {
        report.misrouted_sessions = Some(misrouted);
    }
}

/// Sends the slots it takes; after a session's first answer it may stop the session for a
/// re-route, and after its last it queues the session's stop.
async fn worker(
    shared: Arc<Shared>,
    conn: Connection,
    slots: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Slot>>>,
    stops: mpsc::UnboundedSender<String>,
) -> anyhow::Result<WorkerResult> {
    let cfg = &shared.cfg;
    let mut out = WorkerResult::default();
    let mut conn = Some(conn);
    loop {
        let slot = slots.lock().await.recv().await;
        let Some(slot) = slot else { break };
        let (id, gate) = {
            let mut sessions = shared.sessions();
            let s = &mut sessions[slot.session];
            s.taken += 1;
            (s.id.clone(), s.gate.clone())
        };
        // A re-route stop of this session is in flight: the call must find it stopped.
        if let Some(mut gate) = gate {
            let _ = gate.wait_for(|stopped| *stopped).await;
        }
        let tag = if Instant::now().saturating_duration_since(slot.intended) > cfg.timeout {
            Err(format!(
                "slot taken more than {:?} late: the server cannot keep up",
                cfg.timeout
            ))
        } else {
            let deadline = slot.intended + cfg.timeout;
            let call = invoke(&shared, &mut conn, &id);
            match tokio::time::timeout_at(deadline.into(), call).await {
                Ok(Ok((status, body))) => {
                    *out.status.entry(status.to_string()).or_default() += 1;
                    out.last_done = out.last_done.max(Some(Instant::now()));
                    tag_of(status, &body, &cfg.tag_field)
                }
                Ok(Err(e)) => {
                    conn = None;
                    Err(format!("{e:#}"))
                }
                Err(_) => {
                    // The connection still carries the late answer: start a clean one.
                    conn = None;
                    Err(format!("no complete answer within {:?}", cfg.timeout))
                }
            }
        };
        match &tag {
            Ok(_) => {
                out.ok += 1;
                let took = Instant::now().saturating_duration_since(slot.intended);
                if slot.invocation == 0 {
                    out.first.record(took);
                } else {
                    out.follow_up.record(took);
                }
            }
            Err(e) => out.error(format!("session {id} call {}: {e}", slot.invocation)),
        }
        // Record the answer; decide on a re-route (only if no later call of the session was
        // taken yet, so a stop never cuts a call in flight) and on the final stop.
        let (reroute, last) = {
            let mut sessions = shared.sessions();
            let s = &mut sessions[slot.session];
            s.answers[slot.invocation as usize] = tag.ok();
            s.done += 1;
            let due = slot.invocation == 0
                && s.answers[0].is_some()
                && cfg.reroute_every > 0
                && cfg.invocations > 1
                && (slot.session as u64).is_multiple_of(cfg.reroute_every);
            if due && s.taken > 1 {
                s.reroute_skipped = true;
            }
            let reroute = (due && s.taken == 1).then(|| {
                let (tx, rx) = watch::channel(false);
                s.gate = Some(rx);
                tx
            });
            (reroute, s.done == cfg.invocations)
        };
        if let Some(opened) = reroute {
            let stopped = stop(&shared, &mut conn, &id).await;
            {
                let mut sessions = shared.sessions();
                let s = &mut sessions[slot.session];
                s.rerouted = matches!(stopped, Ok(200));
                s.gate = None;
            }
            let _ = opened.send(true);
            match stopped {
                Ok(200) => {}
                Ok(status) => {
                    out.reroute_stop_failed += 1;
                    out.sample(format!("session {id}: re-route stop answered {status}"));
                }
                Err(e) => {
                    conn = None;
                    out.reroute_stop_failed += 1;
                    out.sample(format!("session {id}: re-route stop failed: {e:#}"));
                }
            }
        }
        if last {
            // The stoppers outlive the workers; a closed queue only means they failed.
            let _ = stops.send(id);
        }
    }
    Ok(out)
}

/// One invocation of session `id`; reconnects when there is no connection.
async fn invoke(
    shared: &Shared,
    conn: &mut Option<Connection>,
    id: &str,
) -> anyhow::Result<(u16, Bytes)> {
    let t = &shared.template;
    if conn.is_none() {
        *conn = Some(Connection::open(t.target.addr).await?);
    }
    let c = conn.as_mut().context("connection")?;
    let built = t.build_for(
        Method::POST,
        &t.target.path_and_query,
        Some(id.to_owned()),
        t.body.clone(),
    )?;
    let r = receive(c.send(built.request).await?).await?;
    Ok((r.status, r.body))
}

/// `StopRuntimeSession` of session `id`; its HTTP status.
async fn stop(shared: &Shared, conn: &mut Option<Connection>, id: &str) -> anyhow::Result<u16> {
    let t = &shared.template;
    if conn.is_none() {
        *conn = Some(Connection::open(t.target.addr).await?);
    }
    let c = conn.as_mut().context("connection")?;
    let built = t.build_for(
        Method::POST,
        &shared.stop_path,
        Some(id.to_owned()),
        Bytes::new(),
    )?;
    Ok(receive(c.send(built.request).await?).await?.status)
}

/// Stops finished sessions from the queue; (stopped, failed).
async fn stopper(
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
) -> (u64, u64) {
    let (mut stopped, mut failed) = (0, 0);
    let mut conn = None;
    loop {
        let next = queue.lock().await.recv().await;
        let Some(id) = next else { break };
        match stop(&shared, &mut conn, &id).await {
            Ok(200) => stopped += 1,
            Ok(_) => failed += 1,
            Err(_) => {
                failed += 1;
                conn = None;
            }
        }
    }
    (stopped, failed)
}

/// The version tag of a 200 answer, or why there is none.
fn tag_of(status: u16, body: &[u8], field: &str) -> Result<String, String> {
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("status {status}: {text}"));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not json: {e}"))?;
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the answer has no {field:?} string: is the agent tagged?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, answers: &[Option<&str>], rerouted: bool) -> SessionState {
        SessionState {
            id: id.into(),
            taken: answers.len() as u32,
            done: answers.len() as u32,
            answers: answers.iter().map(|a| a.map(str::to_owned)).collect(),
            gate: None,
            rerouted,
            reroute_skipped: false,
        }
    }

    #[test]
    fn split_parses_and_must_sum_to_100() {
        assert_eq!(
            parse_split("v1=90,v2=10").expect("split"),
            vec![("v1".to_owned(), 90), ("v2".to_owned(), 10)]
        );
        assert!(parse_split("v1=90,v2=20").is_err());
        assert!(parse_split("v1").is_err());
        assert!(parse_split("").expect("empty").is_empty());
    }

    #[test]
    fn expected_tag_follows_the_bucket() {
        let split = parse_split("v1=90,v2=10").expect("split");
        for i in 0..200 {
            let id = format!("session-{i:04}-0123456789abcdefghijklmnopqrstuv");
            let bucket = berth_control::traffic::session_bucket(&id);
            let want = if bucket < 9000 { "v1" } else { "v2" };
            assert_eq!(expected_tag(&split, &id), Some(want));
        }
    }

    #[test]
    fn violations_are_follow_ups_on_another_version() {
        let sessions = vec![
            session("a", &[Some("v1"), Some("v1"), Some("v1")], false),
            session("b", &[Some("v2"), Some("v1"), Some("v2")], true),
            session("c", &[None, Some("v2"), Some("v1")], false),
            session("d", &[None, None, None], false),
        ];
        let mut r = AffinityReport::default();
        analyse(&sessions, &[], &mut r);
        assert_eq!(r.sessions_answered, 3);
        assert_eq!(r.violations, 2);
        assert_eq!(r.sessions_with_violations, 2);
        assert_eq!(r.rerouted_sessions, 1);
        assert_eq!(r.rerouted_follow_ups, 2);
        assert_eq!(r.rerouted_violations, 1);
        assert_eq!(r.versions["v1"].sessions, 1);
        assert_eq!(r.versions["v2"].sessions, 2);
        assert_eq!(r.versions["v1"].invocations, 5);
        assert!(r.misrouted_sessions.is_none());
    }

    #[test]
    fn tags_come_from_200_json_answers_only() {
        assert_eq!(tag_of(200, br#"{"tag":"v2"}"#, "tag"), Ok("v2".into()));
        assert!(tag_of(200, br#"{"ok":true}"#, "tag").is_err());
        assert!(tag_of(500, br#"{"tag":"v2"}"#, "tag").is_err());
        assert!(tag_of(200, b"nope", "tag").is_err());
    }
}
