//! Berth's own spans: W3C trace context handling, the compact span the invoker records, and a
//! non-blocking sink that batches spans into the store off the request path.

use crate::{Attribution, Span, TraceStore};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Spans waiting to be written; beyond this, new ones are dropped (and counted) rather than
/// slowing invocations down.
const QUEUE: usize = 8192;
/// Spans written per transaction at most.
const BATCH: usize = 1024;
/// Longest a span waits in the queue for others to share its transaction. Longer is less CPU per
/// span: each transaction's commit (its WAL frames, their checksums and the fsync) was most of the
/// SQLite thread's CPU at 100 ms (bench B2c's profile). Shorter is a smaller burst: a batch is
/// written in one go on one of the CPUs the requests need, and at 1 s B1's p99 (500 requests/s)
/// grew by a third. [`SpanSink::flush`] writes what is queued at once (the server's shutdown).
const LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Unset,
    Ok,
    Error,
}

/// How a call's session came to be: already live, taken from the warm pool, or started for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStart {
    Live,
    Warm,
    Cold,
}

impl SessionStart {
    fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Warm => "warm",
            Self::Cold => "cold",
        }
    }
}

/// Berth's span of one call as the invoker records it: fixed-size ids, static names and the
/// session's shared attribution, so a call costs two small allocations (request id and access
/// key); the sink's writer makes it a [`Span`].
#[derive(Debug, Clone)]
pub struct CallSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// `InvokeAgentRuntime`, `InvokeAgentRuntimeCommand`, ...
    pub name: &'static str,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status: CallStatus,
    pub status_message: Cow<'static, str>,
    /// The agent's answer's status, once there is one.
    pub http_status: Option<u16>,
    /// When the answer's first body bytes passed (an event `first_byte` of the span).
    pub first_byte_ns: Option<i64>,
    /// `berth.session.start`: how the session was found or started.
    pub session_start: Option<SessionStart>,
    /// A step inside the call (kind INTERNAL) rather than the call itself (SERVER).
    pub internal: bool,
    pub request_id: String,
    /// The access key id that signed the call.
    pub access_key_id: Option<String>,
    pub attribution: Arc<Attribution>,
}

impl CallSpan {
    /// A span starting now: in the caller's trace if `traceparent` is a valid one (its span the
    /// parent), else in a new trace. Returns the flags to pass on with it.
    pub fn start(
        traceparent: Option<&[u8]>,
        name: &'static str,
        request_id: &str,
        access_key_id: Option<&str>,
        attribution: Arc<Attribution>,
    ) -> (Self, u8) {
        let (trace_id, parent, flags) = match traceparent.and_then(parse_traceparent_bytes) {
            Some((t, p, f)) => (t, Some(p), f),
            None => (trace_id(), None, 1),
        };
        let span = Self {
            trace_id,
            span_id: rand::random(),
            parent_span_id: parent,
            name,
            start_ns: crate::now_ns(),
            end_ns: 0,
            status: CallStatus::Unset,
            status_message: Cow::Borrowed(""),
            http_status: None,
            first_byte_ns: None,
            session_start: None,
            internal: false,
            request_id: request_id.to_owned(),
            access_key_id: access_key_id.map(str::to_owned),
            attribution,
        };
        (span, flags)
    }

    /// A span in the same trace with this one as its parent, starting now.
    pub fn child(&self, name: &'static str) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: rand::random(),
            parent_span_id: Some(self.span_id),
            name,
            start_ns: crate::now_ns(),
            end_ns: 0,
            status: CallStatus::Unset,
            status_message: Cow::Borrowed(""),
            http_status: None,
            first_byte_ns: None,
            session_start: None,
            internal: true,
            request_id: self.request_id.clone(),
            access_key_id: self.access_key_id.clone(),
            attribution: self.attribution.clone(),
        }
    }

    /// The `traceparent` naming this span as the parent: `00-<trace>-<span>-<flags>`.
    pub fn traceparent(&self, flags: u8) -> http::HeaderValue {
        let mut b = [0u8; 55];
        b[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut b[3..35]);
        b[35] = b'-';
        hex_into(&self.span_id, &mut b[36..52]);
        b[52] = b'-';
        hex_into(&[flags], &mut b[53..55]);
        // Only hex digits and dashes: always a valid header value.
        http::HeaderValue::from_bytes(&b).unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }

    /// The stored form.
    pub fn into_span(self) -> Span {
        let mut attributes = serde_json::Map::with_capacity(5);
        let a = &self.attribution;
        attributes.insert(
            "aws.agentcore.runtime.id".into(),
            a.runtime_id.clone().into(),
        );
        if let Some(s) = &a.session_id {
            attributes.insert("session.id".into(), s.clone().into());
        }
        attributes.insert("berth.request_id".into(), self.request_id.into());
        attributes.insert(
            "berth.access_key_id".into(),
            self.access_key_id
                .map_or(serde_json::Value::Null, Into::into),
        );
        if let Some(code) = self.http_status {
            attributes.insert("http.response.status_code".into(), code.into());
        }
        if let Some(start) = self.session_start {
            attributes.insert("berth.session.start".into(), start.as_str().into());
        }
        let events = match self.first_byte_ns {
            Some(t) => serde_json::json!([{ "name": "first_byte", "timeNs": t, "attributes": {} }]),
            None => serde_json::Value::Array(Vec::new()),
        };
        Span {
            trace_id: hex::encode(self.trace_id),
            span_id: hex::encode(self.span_id),
            parent_span_id: self.parent_span_id.map(hex::encode),
            name: self.name.to_owned(),
            kind: if self.internal { "INTERNAL" } else { "SERVER" }.to_owned(),
            start_ns: self.start_ns,
            end_ns: self.end_ns.max(self.start_ns),
            status_code: match self.status {
                CallStatus::Unset => "UNSET",
                CallStatus::Ok => "OK",
                CallStatus::Error => "ERROR",
            }
            .to_owned(),
            status_message: self.status_message.into_owned(),
            scope: "berth".to_owned(),
            attributes: attributes.into(),
            resource: serde_json::json!({ "service.name": "berth" }),
            events,
            service_name: "berth".to_owned(),
            attribution: Arc::unwrap_or_clone(self.attribution),
        }
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Where the invoker sends its spans. Cheap to clone; the writer task ends once every clone is
/// dropped and the queue is drained.
#[derive(Clone)]
pub struct SpanSink {
    inner: Arc<SinkInner>,
}

/// A queued span: the invoker's compact form, or one made whole elsewhere (the model gateway's).
enum Queued {
    Call(CallSpan),
    Full(Box<Span>),
}

impl Queued {
    fn into_span(self) -> Span {
        match self {
            Queued::Call(c) => c.into_span(),
            Queued::Full(s) => *s,
        }
    }
}

struct SinkInner {
    tx: mpsc::Sender<Queued>,
    /// Flush requests: each is answered once everything queued before it is stored.
    flush: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
    dropped: AtomicU64,
}

impl SpanSink {
    /// Starts the writer on a thread of its own (a current-thread runtime): a batch's conversion
    /// and statement building take a few hundred microseconds, and on one of the server's
    /// workers every request queued behind it waited that long (B1's p99 with spans on was
    /// twice its p99 with them off). Pass the store itself, not a `GroupCommit` in front of it,
    /// whose writer runs on the server's runtime: the sink batches already.
    pub fn start(store: Arc<dyn TraceStore>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Queued>(QUEUE);
        let (flush, flushes) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("berth-spans".into())
            .spawn(move || rt.block_on(write(store, rx, flushes)))?;
        Ok(Self {
            inner: Arc::new(SinkInner {
                tx,
                flush,
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Returns once every span queued before the call has been written (or its write failed and
    /// was logged), without waiting for the batch's linger.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.inner.flush.send(done).is_ok() {
            let _ = written.await;
        }
    }

    /// Queues a span; a full queue drops it.
    pub fn record(&self, span: CallSpan) {
        self.queue(Queued::Call(span));
    }

    /// Queues a whole span (the model gateway's `gen_ai` spans); a full queue drops it.
    pub fn record_span(&self, span: Span) {
        self.queue(Queued::Full(Box::new(span)));
    }

    fn queue(&self, span: Queued) {
        if self.inner.tx.try_send(span).is_err() {
            let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "span queue full: berth's spans dropped");
            }
        }
    }
}

/// The writer: batches spans into the store until every sender is gone and the queue is drained.
async fn write(
    store: Arc<dyn TraceStore>,
    mut rx: mpsc::Receiver<Queued>,
    mut flushes: mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushing = Vec::new();
    // The last batch was full: more are queued, so the next one does not wait.
    let mut behind = false;
    loop {
        tokio::select! {
            first = rx.recv() => match first {
                Some(s) => batch.push(s.into_span()),
                None => break,
            },
            Some(f) = flushes.recv() => flushing.push(f),
        }
        // The first span of a batch waits LINGER for company, and the writer is not woken for
        // each one that joins it: a transaction (and its fsync) per invocation cost more CPU
        // than the invocation itself (bench B2's profile).
        if flushing.is_empty() && !behind && !rx.is_closed() {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                Some(f) = flushes.recv() => flushing.push(f),
            }
        }
        // A flush writes everything queued, in as many batches as it takes.
        loop {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s.into_span()),
                    Err(_) => break,
                }
            }
            behind = batch.len() == BATCH;
            if !batch.is_empty() {
                if let Err(e) = store.insert_fresh(&batch).await {
                    tracing::warn!(error = %e, spans = batch.len(), "storing berth's spans");
                }
                batch.clear();
            }
            if !behind || flushing.is_empty() {
                break;
            }
        }
        for done in flushing.drain(..) {
            let _ = done.send(());
        }
    }
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`), if well formed (version 00, ids
/// lowercase hex and not all zero).
pub fn parse_traceparent(v: &str) -> Option<(String, String, u8)> {
    let (t, p, f) = parse_traceparent_bytes(v.as_bytes())?;
    Some((hex::encode(t), hex::encode(p), f))
}

/// [`parse_traceparent`] into the ids' bytes.
pub fn parse_traceparent_bytes(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = v.trim_ascii();
    if v.len() != 55 || &v[..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let lower_hex = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let (trace, parent, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    if !lower_hex(trace) || !lower_hex(parent) || !flags.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    let mut f = [0u8; 1];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(parent, &mut p).ok()?;
    hex::decode_to_slice(flags, &mut f).ok()?;
    if t == [0; 16] || p == [0; 8] {
        return None;
    }
    Some((t, p, f[0]))
}

/// A new trace id the way X-Ray (and ADOT's `xray` id generator) makes them, the epoch second in
/// the first four bytes, then the fraction of that second in 1/65536ths in two more and ten
/// random bytes. Besides being what AgentCore's tools expect, time order keeps the trace store's
/// trace-id indexes appending: with random ids every insert dirtied another index page, and
/// those pages were most of what a batch wrote.
fn trace_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    let now = crate::now_ns();
    let secs = u32::try_from(now / 1_000_000_000).unwrap_or(u32::MAX);
    let frac = u16::try_from((now % 1_000_000_000) * 65_536 / 1_000_000_000).unwrap_or(u16::MAX);
    id[..4].copy_from_slice(&secs.to_be_bytes());
    id[4..6].copy_from_slice(&frac.to_be_bytes());
    id
}

/// A fresh trace id (32 hex digits; see [`trace_id`]).
pub fn new_trace_id() -> String {
    hex::encode(trace_id())
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
        // X-Ray's form: the epoch second first; then the fraction, so ids sort by time.
        let secs = crate::now_ns() / 1_000_000_000;
        let id = new_trace_id();
        let stamped = i64::from_str_radix(&id[..8], 16).unwrap();
        assert!((stamped - secs).abs() <= 1, "{id} vs {secs}");
        let (a, b) = (trace_id(), {
            std::thread::sleep(std::time::Duration::from_millis(2));
            trace_id()
        });
        assert!(a[..6] < b[..6]);
        let who = Arc::new(Attribution {
            runtime_id: "rt".into(),
            version: 1,
            endpoint: "DEFAULT".into(),
            session_id: Some("s".into()),
            actor: None,
        });
        let (span, flags) = CallSpan::start(
            Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            "InvokeAgentRuntime",
            "req",
            Some("AKID"),
            who,
        );
        let tp = span.traceparent(flags);
        let (t, p, f) = parse_traceparent(tp.to_str().unwrap()).unwrap();
        assert_eq!(t, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(p, hex::encode(span.span_id));
        assert_eq!(f, 1);
        let stored = span.into_span();
        assert_eq!(stored.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(stored.attributes["session.id"], "s");
        assert_eq!(stored.attributes["berth.access_key_id"], "AKID");
        assert_eq!(new_span_id().len(), 16);
    }
}
