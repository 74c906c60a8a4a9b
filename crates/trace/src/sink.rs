//! Berth's own spans: W3C trace context handling and a non-blocking sink that batches spans
//! into the store off the request path.

use crate::{Span, TraceStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Spans waiting to be written; beyond this, new ones are dropped (and counted) rather than
/// slowing invocations down.
const QUEUE: usize = 8192;
/// Spans written per transaction at most.
const BATCH: usize = 512;
/// Longest a span waits in the queue for others to share its transaction.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// Where the invoker sends its spans. Cheap to clone; the writer task ends once every clone is
/// dropped and the queue is drained.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Span>,
    dropped: Arc<AtomicU64>,
}

impl SpanSink {
    /// Starts the writer task (on the current Tokio runtime).
    pub fn start(store: Arc<dyn TraceStore>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Span>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                // The first span of a batch waits LINGER for company, and the writer is not woken
                // for each one that joins it: a transaction (and its fsync) per invocation cost
                // more CPU than the invocation itself (bench B2's profile).
                if !rx.is_closed() {
                    tokio::time::sleep(LINGER).await;
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.insert(&batch, &[]).await {
                    tracing::warn!(error = %e, spans = batch.len(), "storing berth's spans");
                }
                batch.clear();
            }
        });
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a span; a full queue drops it.
    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "span queue full: berth's spans dropped");
            }
        }
    }
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`), if well formed (version 00, ids
/// lowercase hex and not all zero).
pub fn parse_traceparent(v: &str) -> Option<(String, String, u8)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    };
    if version != "00" || !hex(trace, 32) || !hex(parent, 16) || flags.len() != 2 {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_owned(), parent.to_owned(), flags))
}

/// A fresh random trace id (32 hex digits).
pub fn new_trace_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A fresh random span id (16 hex digits).
pub fn new_span_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_and_refuses_malformed() {
        let (t, p, f) =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(t, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(p, "b7ad6b7169203331");
        assert_eq!(f, 1);
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        assert_eq!(new_trace_id().len(), 32);
        assert_eq!(new_span_id().len(), 16);
    }
}
