//! Who is calling, and the append-only, hash-chained audit log of every mutation.
//!
//! The server's middleware runs each request inside [`Caller::scope`], so every mutation the
//! request makes (through the existing operation methods, whose signatures carry only the
//! validated input) knows its actor and request id without threading them through each call.
//! Background work without a scope acts as [`Caller::internal`]; the rollout controller acts as
//! [`Caller::controller`].

use crate::{Control, internal};
use berth_api::ApiError;
use berth_store::{AuditRecord, AuditRow, ChainCheck, Write};
use berth_types::now_millis;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;

/// The actor name of the rollout controller acting on its own.
pub const CONTROLLER_ACTOR: &str = "rollout-controller";

/// Who a mutation is done for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The signing access key id, or a service name such as `rollout-controller`.
    pub actor: String,
    /// The request id (`x-amzn-RequestId`) when a request caused the mutation.
    pub request_id: Option<String>,
}

tokio::task_local! {
    static CALLER: Caller;
}

impl Caller {
    /// A caller identified by its access key id.
    pub fn new(actor: impl Into<String>, request_id: Option<String>) -> Self {
        Self {
            actor: actor.into(),
            request_id,
        }
    }

    /// The rollout controller.
    pub fn controller() -> Self {
        Self::new(CONTROLLER_ACTOR, None)
    }

    /// Work no request or controller asked for (start-up recovery, tests).
    pub fn internal() -> Self {
        Self::new("internal", None)
    }

    /// Runs `f` with this caller as the current one.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        CALLER.scope(self, f).await
    }

    /// The caller of the running request, or [`Caller::internal`] outside any scope.
    pub fn current() -> Self {
        CALLER
            .try_with(Clone::clone)
            .unwrap_or_else(|_| Self::internal())
    }
}

/// An audit entry for the current caller.
pub(crate) fn entry(action: &str, resource: &str, before: Value, after: Value) -> Write {
    entry_as(&Caller::current(), action, resource, before, after)
}

/// An audit entry for `caller`.
pub(crate) fn entry_as(
    caller: &Caller,
    action: &str,
    resource: &str,
    before: Value,
    after: Value,
) -> Write {
    Write::AppendAudit(AuditRecord {
        at: now_millis(),
        actor: caller.actor.clone(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        before,
        after,
        request_id: caller.request_id.clone(),
    })
}

/// An audit entry as the native API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its position in the chain, from 1.
    pub seq: i64,
    /// When, ISO 8601.
    pub at: String,
    /// The signing access key id, `rollout-controller` or `berth`.
    pub actor: String,
    /// What was done (an AgentCore operation name or a Berth action).
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// The resource before, as recorded.
    pub before: Value,
    /// The resource after, as recorded.
    pub after: Value,
    /// The request that did it.
    pub request_id: Option<String>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// A page of the audit log, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Present when the page is full: ask again after this sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_seq: Option<i64>,
}

/// The outcome of recomputing the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// False when an entry was edited, removed or reordered since it was written.
    pub valid: bool,
    /// How many entries were checked.
    pub entries: u64,
    /// Where the chain breaks (`null` when valid).
    pub problem: Option<String>,
}

/// The native API view of an audit row.
pub fn entry_body(r: &AuditRow) -> Entry {
    // Rows hold JSON; one that does not parse is shown as the text it is.
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.to_owned()));
    Entry {
        seq: r.seq,
        at: berth_types::iso8601(r.at),
        actor: r.actor.clone(),
        action: r.action.clone(),
        resource: r.resource.clone(),
        before: parse(&r.before),
        after: parse(&r.after),
        request_id: r.request_id.clone(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// Largest page of audit entries returned at once.
const MAX_PAGE: u32 = 1000;

impl Control {
    /// The audit log after `after_seq`, oldest first. `resource` is an ARN (entries about it and
    /// everything under it) or a runtime id (its ARN).
    pub async fn audit_log(
        &self,
        resource: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Log, ApiError> {
        let arn = resource.map(|r| {
            if r.starts_with("arn:") {
                r.to_owned()
            } else {
                self.inner.partition.runtime_arn(r)
            }
        });
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self
            .inner
            .store
            .audit(arn.as_deref(), after_seq, limit)
            .await
            .map_err(internal)?;
        Ok(Log {
            entries: rows.iter().map(entry_body).collect(),
            next_seq: rows
                .last()
                .filter(|_| rows.len() == limit as usize)
                .map(|last| last.seq),
        })
    }

    /// Recomputes the whole hash chain: `valid` is false when an entry was edited, removed or
    /// reordered since it was written, with `problem` saying where.
    pub async fn verify_audit(&self) -> Result<Verification, ApiError> {
        let store = &self.inner.store;
        // The head first: entries appended while we walk are then simply beyond it.
        let head = store.audit_head().await.map_err(internal)?;
        let end = head.as_ref().map_or(0, |(s, _)| *s);
        let mut check = ChainCheck::default();
        let mut after = 0;
        let problem = 'walk: loop {
            let page = store.audit(None, after, MAX_PAGE).await.map_err(internal)?;
            for row in page.iter().filter(|r| r.seq <= end) {
                if let Err(p) = check.next(row) {
                    break 'walk Some(p);
                }
            }
            match page.last() {
                Some(last) if last.seq < end && page.len() == MAX_PAGE as usize => after = last.seq,
                _ => break check.finish(head.clone()).err(),
            }
        };
        Ok(Verification {
            valid: problem.is_none(),
            entries: check.checked(),
            problem,
        })
    }
}
