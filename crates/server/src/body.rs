//! Request bodies read under a per-operation size limit and a budget of in-flight body bytes.
//!
//! AgentCore clients send no payload hash, so the signature check needs the whole body in memory.
//! What bounds the server's memory is therefore not the buffering but how much of it may exist at
//! once: every body reserves its bytes from one or more [`Budget`]s (the server's, and a
//! sandbox's own when it arrives through a sandbox listener) before they are read, and a request
//! that does not fit is refused at once instead of queued, so a flood of large bodies costs the
//! server a refusal each, never memory.

use axum::body::Body;
use axum::http::{HeaderMap, Method};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A pool of body bytes that may be buffered at once. Cheap to clone; clones share the pool.
#[derive(Clone, Debug)]
pub struct Budget {
    bytes: Arc<Semaphore>,
}

impl Budget {
    /// A pool of `capacity` bytes (at most `u32::MAX` per request can be reserved).
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// Bytes reserved from every budget a request draws on; returned when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Takes `n` more bytes from each of `budgets`, all or none.
    fn grow(&mut self, budgets: &[Budget], n: usize) -> Result<(), Error> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| Error::Throttled)?;
        let mut taken = Vec::with_capacity(budgets.len());
        for b in budgets {
            // Dropping `taken` on failure gives back what the earlier budgets lent.
            taken.push(
                b.bytes
                    .clone()
                    .try_acquire_many_owned(n)
                    .map_err(|_| Error::Throttled)?,
            );
        }
        if self.permits.is_empty() {
            self.permits = taken;
        } else {
            for (held, more) in self.permits.iter_mut().zip(taken) {
                held.merge(more);
            }
        }
        Ok(())
    }

    /// Bytes held (from each budget).
    pub fn bytes(&self) -> usize {
        self.permits.first().map_or(0, |p| p.num_permits())
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is (or announced itself as) larger than the operation allows.
    #[error("the request body exceeds the {limit}-byte limit")]
    TooLarge {
        /// The operation's limit.
        limit: usize,
    },
    /// Accepting the body would exceed a budget of in-flight body bytes.
    #[error("too many request bytes in flight")]
    Throttled,
    /// No part of the body arrived within the read timeout.
    #[error("the request body stalled for longer than {0:?}")]
    Stalled(Duration),
    /// The connection failed or the framing was invalid.
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// Size limits per kind of operation.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Operations that carry payloads: InvokeAgentRuntime, and the S3 uploads (PutObject,
    /// UploadPart).
    pub large: usize,
    /// Every other operation (JSON documents and small XML).
    pub small: usize,
}

impl Limits {
    /// The limit for one request, decided from its headers: `s3` is the credential scope's
    /// service, which is how Berth tells the artifact store from the AgentCore planes.
    pub fn for_request(&self, s3: bool, method: &Method, path: &str, headers: &HeaderMap) -> usize {
        let large = if s3 {
            // PutObject and UploadPart: a PUT to an object key that is not a server-side copy.
            let key = path
                .trim_start_matches('/')
                .split_once('/')
                .is_some_and(|(_, key)| !key.is_empty());
            method == Method::PUT && key && !headers.contains_key("x-amz-copy-source")
        } else {
            // InvokeAgentRuntime: POST /runtimes/{id}/invocations.
            let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            method == Method::POST && matches!(segs.as_slice(), ["runtimes", _, "invocations"])
        };
        if large { self.large } else { self.small }
    }
}

/// Reads `body` whole, at most `limit` bytes, reserving them from every one of `budgets` first.
///
/// With a `Content-Length` (`declared`), an oversize body is refused and the whole length is
/// reserved before one byte is read; without one, bytes are reserved frame by frame. Each frame
/// must arrive within `stall`.
pub async fn read(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    budgets: &[Budget],
    stall: Duration,
) -> Result<(Bytes, Reservation), Error> {
    let mut reservation = Reservation::default();
    let mut buf = match declared {
        Some(n) => {
            let n = usize::try_from(n).map_err(|_| Error::TooLarge { limit })?;
            if n > limit {
                return Err(Error::TooLarge { limit });
            }
            reservation.grow(budgets, n)?;
            BytesMut::with_capacity(n)
        }
        None => BytesMut::new(),
    };
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => return Err(Error::Stalled(stall)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Error::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            // Trailers carry no payload.
            continue;
        };
        let total = buf.len() + data.len();
        if total > limit {
            return Err(Error::TooLarge { limit });
        }
        if total > reservation.bytes() {
            reservation.grow(budgets, total - reservation.bytes())?;
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), reservation))
}

/// The `Content-Length` a request announced, if it is one well-formed number.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(axum::http::header::CONTENT_LENGTH).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    v.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::stream;

    const STALL: Duration = Duration::from_secs(5);

    fn chunked(parts: Vec<&'static [u8]>) -> Body {
        Body::from_stream(stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))),
        ))
    }

    #[tokio::test]
    async fn a_declared_oversize_body_is_refused_before_reading() {
        let budget = Budget::new(1 << 20);
        let err = read(
            Body::from("x"),
            Some(2048),
            1024,
            std::slice::from_ref(&budget),
            STALL,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 1024 }), "{err:?}");
        assert_eq!(budget.available(), 1 << 20);
    }

    #[tokio::test]
    async fn an_undeclared_body_is_cut_at_the_limit() {
        let budget = Budget::new(1 << 20);
        let body = chunked(vec![b"aaaa", b"bbbb", b"cccc"]);
        let err = read(body, None, 10, std::slice::from_ref(&budget), STALL)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 10 }), "{err:?}");
        assert_eq!(
            budget.available(),
            1 << 20,
            "a refused body gives its bytes back"
        );
    }

    #[tokio::test]
    async fn bytes_stay_reserved_until_the_reservation_is_dropped() {
        let global = Budget::new(100);
        let sandbox = Budget::new(60);
        let budgets = [sandbox.clone(), global.clone()];
        let (bytes, held) = read(chunked(vec![b"0123456789"; 5]), None, 1000, &budgets, STALL)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 50);
        assert_eq!((sandbox.available(), global.available()), (10, 50));
        // The sandbox's own budget is exhausted before the server's: refused, nothing taken.
        let err = read(Body::from("x".repeat(20)), Some(20), 1000, &budgets, STALL)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Throttled), "{err:?}");
        assert_eq!((sandbox.available(), global.available()), (10, 50));
        drop(held);
        assert_eq!((sandbox.available(), global.available()), (60, 100));
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        // A zero stall limit expires as soon as a frame is not ready: no clock is waited on.
        let body = Body::from_stream(stream::pending::<Result<Bytes, std::io::Error>>());
        let err = read(body, Some(10), 100, &[Budget::new(100)], Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Stalled(_)), "{err:?}");
    }

    #[test]
    fn only_invocations_and_uploads_are_large() {
        let limits = Limits {
            large: 100,
            small: 10,
        };
        let h = HeaderMap::new();
        let of = |s3, m: Method, p: &str| limits.for_request(s3, &m, p, &h);
        assert_eq!(of(false, Method::POST, "/runtimes/abc/invocations"), 100);
        assert_eq!(of(false, Method::PUT, "/runtimes/"), 10);
        assert_eq!(of(false, Method::POST, "/memories/m/events"), 10);
        assert_eq!(of(true, Method::PUT, "/bucket/key/part"), 100);
        assert_eq!(of(true, Method::PUT, "/bucket"), 10);
        assert_eq!(of(true, Method::POST, "/bucket/key"), 10);
        let mut copy = HeaderMap::new();
        copy.insert("x-amz-copy-source", "/b/k".parse().unwrap());
        assert_eq!(limits.for_request(true, &Method::PUT, "/b/k", &copy), 10);
    }
}
