//! Short-term memory: events per actor and session.
//!
//! `CreateEvent`s from all callers are funnelled into one writer task that commits whatever has
//! queued up in one transaction (group commit): with `synchronous=FULL` every event is on disk
//! before its 201, and many writers share one fsync instead of queueing for one each.

use crate::Memory;
use crate::wire::{
    internal, invalid, max_results, memory_id_of, parse_ts, service_error, stored, str_of,
    to_stored, token, untoken, untoken_pair,
};
use berth_api::ApiError;
use berth_api::memory::{
    ActorSummary, Branch, CreateEventRequest, DeleteEventRequest, DeleteEventResponse, Event,
    EventResponse, GetEventRequest, ListActorsRequest, ListActorsResponse, ListEventsRequest,
    ListEventsResponse, ListSessionsRequest, ListSessionsResponse, MetadataFilter, SessionSummary,
};
use berth_store::memory::{EventQuery, EventRow, Inserted, MemoryRow, MetaCond};
use berth_types::{EpochMillis, now_millis, random_alnum};
use serde_json::Value;
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
pub(crate) fn event_body(e: &EventRow, include_payload: bool) -> Result<Event, ApiError> {
    let payload = if include_payload {
        Some(stored("event payload", e.payload.clone())?)
    } else {
        None
    };
    let metadata = match &e.metadata {
        Some(m) => Some(stored("event metadata", m.clone())?),
        None => None,
    };
    Ok(Event {
        memory_id: e.memory_id.clone(),
        actor_id: e.actor_id.clone(),
        session_id: e.session_id.clone(),
        event_id: e.event_id.clone(),
        event_timestamp: e.event_ts,
        payload,
        branch: e.branch_name.as_ref().map(|name| Branch {
            name: name.clone(),
            root_event_id: e.branch_root.clone(),
        }),
        metadata,
    })
}

fn meta_conditions(filter: &[MetadataFilter]) -> Result<Vec<MetaCond>, ApiError> {
    let mut out = Vec::new();
    for f in filter {
        let key = f
            .left
            .metadata_key
            .clone()
            .ok_or_else(|| invalid("a metadata filter needs left.metadataKey"))?;
        let value = f
            .right
            .as_ref()
            .and_then(|r| r.metadata_value.as_ref())
            .and_then(|v| str_of(v, "stringValue"));
        out.push(match (f.operator.as_str(), value) {
            ("EQUALS_TO", Some(v)) => MetaCond::Equals(key, v.to_owned()),
            ("EQUALS_TO", None) => {
                return Err(invalid(
                    "the EQUALS_TO metadata filter needs right.metadataValue.stringValue",
                ));
            }
            ("EXISTS", _) => MetaCond::Exists(key),
            ("NOT_EXISTS", _) => MetaCond::NotExists(key),
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
    pub async fn create_event(&self, input: CreateEventRequest) -> Result<EventResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        let m = self.usable(&memory_id).await?;
        let actor_id = input.actor_id;
        let session_id = match input.session_id {
            Some(s) => s,
            None => format!("session-{}", random_alnum(20)),
        };
        let ts = parse_ts(&input.event_timestamp, "eventTimestamp")?;
        let (branch_name, branch_root) = match input.branch {
            Some(b) => (Some(b.name), b.root_event_id),
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
            .extraction_config
            .as_ref()
            .and_then(|c| c.namespace_variables.as_ref())
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
            payload: to_stored("event payload", &input.payload)?,
            metadata: input.metadata.map(Value::Object),
            client_token: input.client_token.filter(|t| !t.is_empty()),
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
        Ok(EventResponse {
            event: event_body(&stored, true)?,
        })
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
    pub async fn get_event(&self, input: GetEventRequest) -> Result<EventResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id);
        let m = self.usable(memory_id).await?;
        let e = &input.event_id;
        match self
            .inner
            .store
            .event(memory_id, &input.actor_id, &input.session_id, e)
            .await
            .map_err(internal)?
        {
            Some(ev) if ev.event_ts >= expiry_cutoff(&m, now_millis()) => Ok(EventResponse {
                event: event_body(&ev, true)?,
            }),
            _ => Err(ApiError::not_found(format!("event {e} not found"))),
        }
    }

    /// `DeleteEvent`.
    pub async fn delete_event(
        &self,
        input: DeleteEventRequest,
    ) -> Result<DeleteEventResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id);
        self.usable(memory_id).await?;
        let e = &input.event_id;
        if self
            .inner
            .store
            .delete_event(memory_id, &input.actor_id, &input.session_id, e)
            .await
            .map_err(internal)?
        {
            Ok(DeleteEventResponse {
                event_id: e.clone(),
            })
        } else {
            Err(ApiError::not_found(format!("event {e} not found")))
        }
    }

    /// `ListEvents`: newest first.
    pub async fn list_events(
        &self,
        input: ListEventsRequest,
    ) -> Result<ListEventsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        let m = self.usable(&memory_id).await?;
        let limit = max_results(input.max_results, 20);
        let include = input.include_payloads.unwrap_or(true);
        let (branch, event_metadata) = match input.filter {
            Some(f) => (f.branch, f.event_metadata),
            None => (None, None),
        };
        let mut q = EventQuery {
            actor_id: input.actor_id,
            session_id: input.session_id,
            memory_id,
            min_ts: expiry_cutoff(&m, now_millis()),
            before: input
                .next_token
                .as_deref()
                .map(|t| untoken(t, 1))
                .transpose()?
                .and_then(|mut v| v.pop()),
            metadata: meta_conditions(event_metadata.as_deref().unwrap_or(&[]))?,
            limit: limit + 1,
            ..Default::default()
        };
        if let Some(b) = branch {
            if b.include_parent_branches == Some(true) {
                q.parent_upto = self.branch_root(&q, &b.name).await?;
            }
            q.branch = Some(b.name);
        }
        let mut rows = self.inner.store.list_events(&q).await.map_err(internal)?;
        let mut next_token = None;
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            next_token = rows.last().map(|last| token(&[&last.event_id]));
        }
        Ok(ListEventsResponse {
            next_token,
            events: rows
                .iter()
                .map(|e| event_body(e, include))
                .collect::<Result<_, _>>()?,
        })
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
    pub async fn list_sessions(
        &self,
        input: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id);
        let m = self.usable(memory_id).await?;
        let limit = max_results(input.max_results, 20);
        let after = input.next_token.as_deref().map(untoken_pair).transpose()?;
        let mut rows = self
            .inner
            .store
            .list_sessions(
                memory_id,
                &input.actor_id,
                expiry_cutoff(&m, now_millis()),
                after,
                limit + 1,
            )
            .await
            .map_err(internal)?;
        let mut next_token = None;
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            next_token = rows
                .last()
                .map(|last| token(&[&last.last_event_ts.to_string(), &last.session_id]));
        }
        Ok(ListSessionsResponse {
            next_token,
            session_summaries: rows
                .into_iter()
                .map(|s| SessionSummary {
                    session_id: s.session_id,
                    actor_id: s.actor_id,
                    created_at: s.created_at,
                })
                .collect(),
        })
    }

    /// `ListActors`: by actor id.
    pub async fn list_actors(
        &self,
        input: ListActorsRequest,
    ) -> Result<ListActorsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id);
        let m = self.usable(memory_id).await?;
        let limit = max_results(input.max_results, 20);
        let after = input
            .next_token
            .as_deref()
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
        let mut next_token = None;
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            next_token = rows.last().map(|last| token(&[last]));
        }
        Ok(ListActorsResponse {
            next_token,
            actor_summaries: rows
                .into_iter()
                .map(|actor_id| ActorSummary { actor_id })
                .collect(),
        })
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
