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
use serde_json::{Value, json};
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

/// The wire shape of an audit entry.
pub fn entry_body(r: &AuditRow) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.to_owned()));
    json!({
        "seq": r.seq,
        "at": berth_types::iso8601(r.at),
        "actor": r.actor,
        "action": r.action,
        "resource": r.resource,
        "before": parse(&r.before),
        "after": parse(&r.after),
        "requestId": r.request_id,
        "prevHash": r.prev_hash,
        "hash": r.hash,
    })
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
    ) -> Result<Value, ApiError> {
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
        let mut body = json!({ "entries": rows.iter().map(entry_body).collect::<Vec<_>>() });
        if rows.len() == limit as usize
            && let Some(last) = rows.last()
        {
            body["nextSeq"] = last.seq.into();
        }
        Ok(body)
    }

    /// Recomputes the whole hash chain: `valid` is false when an entry was edited, removed or
    /// reordered since it was written, with `problem` saying where.
    pub async fn verify_audit(&self) -> Result<Value, ApiError> {
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
        Ok(json!({
            "valid": problem.is_none(),
            "entries": check.checked(),
            "problem": problem,
        }))
    }
}
