//! Group commit in front of a [`TraceStore`]: concurrent `insert`s (export requests from many
//! sandboxes at once) share one transaction, so they share its fsync. Each caller still returns
//! only once its own data is durable.
//!
//! One writer task takes the first waiting request, then every other request already queued (up
//! to [`MAX_GROUP_ROWS`] rows), and stores them with one `insert`. If that fails, each request of
//! the group is stored on its own, so a request fails only for its own reason. A lone request is
//! stored as it is: an idle store adds no delay (the group is what accumulated while the previous
//! transaction committed). Reads go straight to the inner store.

use crate::{Error, LogRecord, Retained, Retention, Span, TraceFilter, TracePage, TraceStore};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Rows (spans and log records) one group holds at most.
pub const MAX_GROUP_ROWS: usize = 4096;

/// Requests waiting for the writer at most; callers beyond wait to enqueue.
const QUEUE: usize = 1024;

struct Job {
    spans: Vec<Span>,
    logs: Vec<LogRecord>,
    done: oneshot::Sender<Result<(), Error>>,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<dyn TraceStore>,
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer task (on the current Tokio runtime); it ends when every clone is dropped.
    pub fn new(inner: Arc<dyn TraceStore>) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(inner.clone(), rx));
        Self { inner, jobs }
    }

    /// Requests waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }
}

async fn writer(inner: Arc<dyn TraceStore>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut rows = first.spans.len() + first.logs.len();
        let mut group = vec![first];
        while rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(j) => {
                    rows += j.spans.len() + j.logs.len();
                    group.push(j);
                }
                Err(_) => break,
            }
        }
        if group.len() == 1 {
            if let Some(j) = group.pop() {
                let r = inner.insert(&j.spans, &j.logs).await;
                let _ = j.done.send(r);
            }
            continue;
        }
        let mut spans = Vec::with_capacity(rows);
        let mut logs = Vec::new();
        let mut sizes = Vec::with_capacity(group.len());
        for j in &mut group {
            sizes.push((j.spans.len(), j.logs.len()));
            spans.append(&mut j.spans);
            logs.append(&mut j.logs);
        }
        match inner.insert(&spans, &logs).await {
            Ok(()) => {
                for j in group {
                    let _ = j.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, requests = group.len(), "trace group commit failed: storing its requests one by one");
                let (mut spans, mut logs) = (spans.into_iter(), logs.into_iter());
                for (j, (ns, nl)) in group.into_iter().zip(sizes) {
                    let s: Vec<Span> = spans.by_ref().take(ns).collect();
                    let l: Vec<LogRecord> = logs.by_ref().take(nl).collect();
                    let _ = j.done.send(inner.insert(&s, &l).await);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl TraceStore for GroupCommit {
    async fn insert(&self, spans: &[Span], logs: &[LogRecord]) -> Result<(), Error> {
        if spans.is_empty() && logs.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let job = Job {
            spans: spans.to_vec(),
            logs: logs.to_vec(),
            done,
        };
        if self.jobs.send(job).await.is_err() {
            // The writer is gone (the runtime is shutting down): store directly.
            return self.inner.insert(spans, logs).await;
        }
        match wait.await {
            Ok(r) => r,
            Err(_) => self.inner.insert(spans, logs).await,
        }
    }

    async fn trace(&self, trace_id: &str, session: Option<&str>) -> Result<Vec<Span>, Error> {
        self.inner.trace(trace_id, session).await
    }

    async fn list(&self, filter: &TraceFilter) -> Result<TracePage, Error> {
        self.inner.list(filter).await
    }

    async fn session_spans(
        &self,
        runtime_id: Option<&str>,
        session_id: &str,
    ) -> Result<Vec<Span>, Error> {
        self.inner.session_spans(runtime_id, session_id).await
    }

    async fn trace_logs(&self, trace_id: &str) -> Result<Vec<LogRecord>, Error> {
        self.inner.trace_logs(trace_id).await
    }

    async fn retain(&self, policy: Retention, now_ns: i64) -> Result<Retained, Error> {
        self.inner.retain(policy, now_ns).await
    }

    async fn stored_bytes(&self) -> Result<u64, Error> {
        self.inner.stored_bytes().await
    }

    async fn usage(
        &self,
        filter: &crate::usage::UsageFilter,
    ) -> Result<Vec<crate::usage::UsageRow>, Error> {
        self.inner.usage(filter).await
    }

    async fn usage_totals(&self) -> Result<Vec<crate::usage::UsageRow>, Error> {
        self.inner.usage_totals().await
    }

    async fn session_logs(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Vec<LogRecord>, Error> {
        self.inner.session_logs(runtime_id, session_id).await
    }
}
