//! Short-term memory: events per actor and session.
//!
//! `CreateEvent`s from all callers are funnelled into one writer task that commits whatever has
//! queued up in one transaction (group commit): with `synchronous=FULL` every event is on disk
//! before its 201, and many writers share one fsync instead of queueing for one each.

use crate::Memory;
use crate::wire::{
    internal, invalid, max_results, memory_id_of, parse_ts, req_str, service_error, str_of, token,
    untoken, untoken_pair,
};
use berth_api::ApiError;
use berth_store::memory::{EventQuery, EventRow, Inserted, MemoryRow, MetaCond};
use berth_types::{EpochMillis, epoch_seconds, now_millis, random_alnum};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;
/// Events deleted per purge statement, so the purge never holds the writer for long.
const PURGE_CHUNK: u32 = 2000;
const DAY_MS: i64 = 86_400_000;

/// Events with a timestamp before this have expired.
pub(crate) fn expiry_cutoff(m: &MemoryRow, now: EpochMillis) -> EpochMillis {
    now - i64::from(m.event_expiry_days) * DAY_MS
}

/// The wire shape of an event.
pub(crate) fn event_body(e: &EventRow, include_payload: bool) -> Value {
    let mut v = json!({
        "memoryId": e.memory_id,
        "actorId": e.actor_id,
        "sessionId": e.session_id,
        "eventId": e.event_id,
        "eventTimestamp": epoch_seconds(e.event_ts),
    });
    if include_payload {
        v["payload"] = e.payload.clone();
    }
    if let Some(b) = &e.branch_name {
        v["branch"] = json!({"name": b});
        if let Some(r) = &e.branch_root {
            v["branch"]["rootEventId"] = r.clone().into();
        }
    }
    if let Some(m) = &e.metadata {
        v["metadata"] = m.clone();
    }
    v
}

fn meta_conditions(filter: Option<&Value>) -> Result<Vec<MetaCond>, ApiError> {
    let mut out = Vec::new();
    for f in filter.and_then(Value::as_array).into_iter().flatten() {
        let key = f
            .get("left")
            .and_then(|l| str_of(l, "metadataKey"))
            .ok_or_else(|| invalid("a metadata filter needs left.metadataKey"))?
            .to_owned();
        let value = f
            .get("right")
            .and_then(|r| r.get("metadataValue"))
            .and_then(|v| str_of(v, "stringValue"));
        out.push(match (str_of(f, "operator"), value) {
            (Some("EQUALS_TO"), Some(v)) => MetaCond::Equals(key, v.to_owned()),
            (Some("EQUALS_TO"), None) => {
                return Err(invalid(
                    "the EQUALS_TO metadata filter needs right.metadataValue.stringValue",
                ));
            }
            (Some("EXISTS"), _) => MetaCond::Exists(key),
            (Some("NOT_EXISTS"), _) => MetaCond::NotExists(key),
            (op, _) => return Err(invalid(format!("unsupported metadata operator {op:?}"))),
        });
    }
    Ok(out)
}

impl Memory {
    /// A new event id: the event time in ms (19 digits, so text order is time order) and a
    /// sequence that grows with every id this process hands out, so events with the same
    /// timestamp keep the order in which they were accepted.
    fn next_event_id(&self, ts: EpochMillis) -> String {
        let now_us = (now_millis().max(0) as u64) * 1000;
        // fetch_update's closure never fails, so the Err arm cannot happen.
        let prev = self
            .inner
            .seq
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now_us.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        let seq = now_us.max(prev + 1);
        format!("{ts:019}#{seq:016x}")
    }

    /// `CreateEvent`.
    pub async fn create_event(&self, input: Value) -> Result<Value, ApiError> {
        let memory_id = memory_id_of(&input)?.to_owned();
        let m = self.usable(&memory_id).await?;
        let actor_id = req_str(&input, "actorId")?.to_owned();
        let session_id = match str_of(&input, "sessionId") {
            Some(s) => s.to_owned(),
            None => format!("session-{}", random_alnum(20)),
        };
        let ts = parse_ts(
            input.get("eventTimestamp").unwrap_or(&Value::Null),
            "eventTimestamp",
        )?;
        let payload = input.get("payload").cloned().unwrap_or_else(|| json!([]));
        let (branch_name, branch_root) = match input.get("branch") {
            Some(b) => (
                str_of(b, "name").map(str::to_owned),
                str_of(b, "rootEventId").map(str::to_owned),
            ),
            None => (None, None),
        };
        if let Some(root) = &branch_root {
            let found = self
                .inner
                .store
                .event(&memory_id, &actor_id, &session_id, root)
                .await
                .map_err(internal)?;
            if found.is_none() {
                return Err(ApiError::not_found(format!(
                    "root event {root} not found in session {session_id}"
                )));
            }
        }
        if let Some(vars) = input
            .get("extractionConfig")
            .and_then(|c| c.get("namespaceVariables"))
            .and_then(Value::as_object)
        {
            for k in vars.keys() {
                crate::resources::check_variable_name(
                    "extractionConfig.namespaceVariables.key",
                    k,
                )?;
            }
        }
        let row = EventRow {
            memory_id,
            actor_id,
            session_id,
            event_id: self.next_event_id(ts),
            event_ts: ts,
            branch_name,
            branch_root,
            payload,
            metadata: input.get("metadata").cloned(),
            client_token: str_of(&input, "clientToken")
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            created_at: now_millis(),
        };
        let (tx, rx) = oneshot::channel();
        if self.inner.events_tx.send((row.clone(), tx)).await.is_err() {
            return Err(service_error());
        }
        let stored = match rx.await {
            Ok(Ok(Inserted::New)) => row,
            Ok(Ok(Inserted::Duplicate(e))) => *e,
            Ok(Err(e)) => return Err(internal(e)),
            Err(_) => return Err(service_error()),
        };
        if expiry_cutoff(&m, now_millis()) > stored.event_ts {
            debug!(event_id = %stored.event_id, "event is already past its memory's expiry");
        }
        self.inner.extract_wake.notify_one();
        Ok(json!({"event": event_body(&stored, true)}))
    }

    /// The group-commit loop behind `CreateEvent`.
    pub(crate) async fn run_event_writer(
        &self,
        mut rx: mpsc::Receiver<(
            EventRow,
            oneshot::Sender<Result<Inserted, berth_store::Error>>,
        )>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                () = self.inner.shutdown.cancelled() => None,
            };
            let Some(first) = first else {
                // Shutting down: answer whatever already queued, then stop.
                rx.close();
                let mut rest = Vec::new();
                while let Ok(m) = rx.try_recv() {
                    rest.push(m);
                }
                if !rest.is_empty() {
                    self.commit_events(rest).await;
                }
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            self.commit_events(batch).await;
        }
    }

    async fn commit_events(
        &self,
        batch: Vec<(
            EventRow,
            oneshot::Sender<Result<Inserted, berth_store::Error>>,
        )>,
    ) {
        let (rows, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.inner.store.insert_events(&rows).await {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    // A caller that went away (client disconnected) needs no answer.
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                error!(error = %e, events = rows.len(), "event batch failed");
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(berth_store::Error::Corrupt {
                        table: "memory_events",
                        detail: msg.clone(),
                    }));
                }
            }
        }
    }

    /// `GetEvent`.
    pub async fn get_event(&self, input: Value) -> Result<Value, ApiError> {
        let memory_id = memory_id_of(&input)?;
        let m = self.usable(memory_id).await?;
        let (a, s, e) = (
            req_str(&input, "actorId")?,
            req_str(&input, "sessionId")?,
            req_str(&input, "eventId")?,
        );
        match self
            .inner
            .store
            .event(memory_id, a, s, e)
            .await
            .map_err(internal)?
        {
            Some(ev) if ev.event_ts >= expiry_cutoff(&m, now_millis()) => {
                Ok(json!({"event": event_body(&ev, true)}))
            }
            _ => Err(ApiError::not_found(format!("event {e} not found"))),
        }
    }

    /// `DeleteEvent`.
    pub async fn delete_event(&self, input: Value) -> Result<Value, ApiError> {
        let memory_id = memory_id_of(&input)?;
        self.usable(memory_id).await?;
        let (a, s, e) = (
            req_str(&input, "actorId")?,
            req_str(&input, "sessionId")?,
            req_str(&input, "eventId")?,
        );
        if self
            .inner
            .store
            .delete_event(memory_id, a, s, e)
            .await
            .map_err(internal)?
        {
            Ok(json!({"eventId": e}))
        } else {
            Err(ApiError::not_found(format!("event {e} not found")))
        }
    }

    /// `ListEvents`: newest first.
    pub async fn list_events(&self, input: Value) -> Result<Value, ApiError> {
        let memory_id = memory_id_of(&input)?.to_owned();
        let m = self.usable(&memory_id).await?;
        let limit = max_results(&input, 20);
        let include = input
            .get("includePayloads")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let filter = input.get("filter");
        let mut q = EventQuery {
            actor_id: req_str(&input, "actorId")?.to_owned(),
            session_id: req_str(&input, "sessionId")?.to_owned(),
            memory_id,
            min_ts: expiry_cutoff(&m, now_millis()),
            before: str_of(&input, "nextToken")
                .map(|t| untoken(t, 1))
                .transpose()?
                .and_then(|mut v| v.pop()),
            metadata: meta_conditions(filter.and_then(|f| f.get("eventMetadata")))?,
            limit: limit + 1,
            ..Default::default()
        };
        if let Some(b) = filter.and_then(|f| f.get("branch")) {
            let name = req_str(b, "name")?.to_owned();
            if b.get("includeParentBranches").and_then(Value::as_bool) == Some(true) {
                q.parent_upto = self.branch_root(&q, &name).await?;
            }
            q.branch = Some(name);
        }
        let mut rows = self.inner.store.list_events(&q).await.map_err(internal)?;
        let mut out = json!({});
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            if let Some(last) = rows.last() {
                out["nextToken"] = token(&[&last.event_id]).into();
            }
        }
        out["events"] = rows.iter().map(|e| event_body(e, include)).collect();
        Ok(out)
    }

    /// The event a branch forks from, read from the branch's oldest event that names it.
    async fn branch_root(&self, q: &EventQuery, name: &str) -> Result<Option<String>, ApiError> {
        let mut all = EventQuery {
            memory_id: q.memory_id.clone(),
            actor_id: q.actor_id.clone(),
            session_id: q.session_id.clone(),
            min_ts: 0,
            branch: Some(name.to_owned()),
            limit: 100,
            ..Default::default()
        };
        loop {
            let page = self.inner.store.list_events(&all).await.map_err(internal)?;
            if let Some(root) = page.iter().rev().find_map(|e| e.branch_root.clone()) {
                return Ok(Some(root));
            }
            match page.last() {
                Some(last) if page.len() == 100 => all.before = Some(last.event_id.clone()),
                _ => return Ok(None),
            }
        }
    }

    /// `ListSessions`: most recently active first.
    pub async fn list_sessions(&self, input: Value) -> Result<Value, ApiError> {
        let memory_id = memory_id_of(&input)?;
        let m = self.usable(memory_id).await?;
        let actor = req_str(&input, "actorId")?;
        let limit = max_results(&input, 20);
        let after = str_of(&input, "nextToken").map(untoken_pair).transpose()?;
        let mut rows = self
            .inner
            .store
            .list_sessions(
                memory_id,
                actor,
                expiry_cutoff(&m, now_millis()),
                after,
                limit + 1,
            )
            .await
            .map_err(internal)?;
        let mut out = json!({});
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            if let Some(last) = rows.last() {
                out["nextToken"] =
                    token(&[&last.last_event_ts.to_string(), &last.session_id]).into();
            }
        }
        out["sessionSummaries"] = rows
            .iter()
            .map(|s| {
                json!({"sessionId": s.session_id, "actorId": s.actor_id,
                       "createdAt": epoch_seconds(s.created_at)})
            })
            .collect();
        Ok(out)
    }

    /// `ListActors`: by actor id.
    pub async fn list_actors(&self, input: Value) -> Result<Value, ApiError> {
        let memory_id = memory_id_of(&input)?;
        let m = self.usable(memory_id).await?;
        let limit = max_results(&input, 20);
        let after = str_of(&input, "nextToken")
            .map(|t| untoken(t, 1))
            .transpose()?
            .and_then(|mut v| v.pop());
        let mut rows = self
            .inner
            .store
            .list_actors(
                memory_id,
                expiry_cutoff(&m, now_millis()),
                after.as_deref(),
                limit + 1,
            )
            .await
            .map_err(internal)?;
        let mut out = json!({});
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            if let Some(last) = rows.last() {
                out["nextToken"] = token(&[last]).into();
            }
        }
        out["actorSummaries"] = rows.iter().map(|a| json!({"actorId": a})).collect();
        Ok(out)
    }

    /// Deletes expired events and records every `purge_interval` until shutdown.
    pub(crate) async fn run_purge(&self) {
        let mut tick = tokio::time::interval(self.inner.opts.purge_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
            if let Err(e) = self.purge_once().await {
                warn!(error = %e, "memory expiry purge failed; retrying next round");
            }
        }
    }

    /// One purge round over every memory; returns how many events went.
    pub async fn purge_once(&self) -> Result<u64, berth_store::Error> {
        let now = now_millis();
        let mut total = 0;
        let mut after = None;
        loop {
            let page = self.inner.store.list_memories(after.clone(), 100).await?;
            for m in &page {
                loop {
                    let n = self
                        .inner
                        .store
                        .purge_expired_events(&m.id, expiry_cutoff(m, now), PURGE_CHUNK)
                        .await?;
                    total += n;
                    if n < u64::from(PURGE_CHUNK) || self.inner.shutdown.is_cancelled() {
                        break;
                    }
                }
            }
            match page.last() {
                Some(m) if page.len() == 100 => after = Some((m.created_at, m.id.clone())),
                _ => break,
            }
        }
        loop {
            let gone = self
                .inner
                .store
                .purge_expired_records(now, PURGE_CHUNK)
                .await?;
            for (memory_id, record_id) in &gone {
                self.inner.index.remove(memory_id, record_id);
            }
            if gone.len() < PURGE_CHUNK as usize {
                break;
            }
        }
        if total > 0 {
            debug!(events = total, "purged expired events");
        }
        Ok(total)
    }
}
