//! The connections a listener holds, and which one gives way when there are too many.
//!
//! A listener admits at most `max` connections. At the limit a new connection is not refused
//! while an idle one (no request in flight) exists: the idle connection that has never carried a
//! request, else the one idle longest, is closed instead. Sockets that connect and say nothing
//! (a slowloris, a scanner, a leaked pool) are thus what gives way, never a client arriving with a
//! request. Only when every connection has a request in flight is the new one closed unserved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The admitted connections of one listener.
#[derive(Debug)]
pub(crate) struct Registry {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Connections closed to make room, for the metrics and the logs.
    shed: AtomicU64,
    /// Connections closed unserved because every admitted one was busy.
    refused: AtomicU64,
}

/// One admitted connection, shared between the registry and the task serving it.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    epoch: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// Milliseconds after `epoch` when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Wakes the idle watchdog when a request ends.
    changed: Notify,
    /// Cancelled when the registry sheds this connection.
    shed: CancellationToken,
}

impl Registry {
    /// A registry admitting at most `max` connections (at least one).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            shed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a new connection, shedding an idle one at the limit; `None` when every admitted
    /// connection has a request in flight.
    pub(crate) fn admit(&self) -> Option<Arc<Slot>> {
        let mut conns = self.lock();
        if conns.len() >= self.max {
            let Some(victim) = Self::victim(&conns) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            if let Some(slot) = conns.remove(&victim) {
                slot.shed.cancel();
                self.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(elapsed_ms(self.epoch)),
            changed: Notify::new(),
            shed: CancellationToken::new(),
        });
        conns.insert(slot.id, slot.clone());
        Some(slot)
    }

    /// Sheds one idle connection to free a file descriptor; whether one was found.
    pub(crate) fn shed_one(&self) -> bool {
        let mut conns = self.lock();
        let Some(victim) = Self::victim(&conns) else {
            return false;
        };
        if let Some(slot) = conns.remove(&victim) {
            slot.shed.cancel();
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// The connection to close for room: idle, never served before served, idle longest first.
    fn victim(conns: &HashMap<u64, Arc<Slot>>) -> Option<u64> {
        conns
            .values()
            .filter(|s| s.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|s| {
                (
                    s.served.load(Ordering::Relaxed),
                    s.idle_since_ms.load(Ordering::Relaxed),
                )
            })
            .map(|s| s.id)
    }

    /// Forgets a connection that has ended.
    pub(crate) fn remove(&self, slot: &Slot) {
        self.lock().remove(&slot.id);
    }

    /// Connections admitted now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Connections shed for room so far.
    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Connections closed unserved so far.
    pub(crate) fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Slot {
    /// Marks a request in flight until the returned guard is dropped (the response body ended).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Resolves once no request is in flight (an upgraded socket holds one for its life).
    pub(crate) async fn until_idle(&self) {
        loop {
            // Registered before the check, so a request ending in between still wakes us.
            let changed = self.changed.notified();
            if !self.busy() {
                return;
            }
            changed.await;
        }
    }

    /// Resolves when the registry shed this connection.
    pub(crate) async fn shed(&self) {
        self.shed.cancelled().await;
    }

    /// When the connection will have been idle for `idle`, or `None` while a request is in
    /// flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(since + idle)
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            // Registered before the check, so a request ending in between still wakes us.
            let changed = self.changed.notified();
            let Some(deadline) = self.idle_deadline(idle) else {
                changed.await;
                continue;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = changed => {}
            }
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let slot = &self.0;
        slot.idle_since_ms
            .store(elapsed_ms(slot.epoch), Ordering::Release);
        slot.in_flight.fetch_sub(1, Ordering::AcqRel);
        slot.changed.notify_waiters();
    }
}

fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Polls a connection's future so that a wake it gives itself while being polled is taken at
/// once, in the same poll.
///
/// hyper's HTTP/1 server wakes its own task when the handler reads the request body (the body
/// channel asks the dispatcher for more). A task that wakes itself while running is a yield to
/// tokio: it goes to the back of the run queue and another worker thread is woken to steal it,
/// one futex wake and often a context switch per request for nothing. Re-polling right away
/// (a few times at most, then yielding for fairness) keeps the request on its thread.
pub(crate) struct Absorb<F> {
    inner: std::pin::Pin<Box<F>>,
    state: Arc<WakeState>,
    waker: std::task::Waker,
}

#[derive(Default)]
struct WakeState {
    polling: AtomicBool,
    woken: AtomicBool,
    outer: futures::task::AtomicWaker,
}

impl std::task::Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.outer.wake();
        }
    }
}

/// Polls in a row before a self-waking future yields anyway.
const ABSORBED_WAKES: usize = 8;

impl<F: std::future::Future> Absorb<F> {
    pub(crate) fn new(inner: F) -> Self {
        let state = Arc::new(WakeState::default());
        Self {
            inner: Box::pin(inner),
            waker: std::task::Waker::from(state.clone()),
            state,
        }
    }

    /// The wrapped future, to call its methods (graceful shutdown).
    pub(crate) fn get_mut(&mut self) -> std::pin::Pin<&mut F> {
        self.inner.as_mut()
    }
}

impl<F: std::future::Future> std::future::Future for Absorb<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        // Unpin: the inner future is boxed.
        let this = self.get_mut();
        this.state.outer.register(cx.waker());
        let mut inner_cx = std::task::Context::from_waker(&this.waker);
        for _ in 0..ABSORBED_WAKES {
            this.state.woken.store(false, Ordering::SeqCst);
            this.state.polling.store(true, Ordering::SeqCst);
            let polled = this.inner.as_mut().poll(&mut inner_cx);
            this.state.polling.store(false, Ordering::SeqCst);
            if polled.is_ready() {
                return polled;
            }
            // Woken while polling (by itself or by another thread meanwhile): poll again now.
            if !this.state.woken.swap(false, Ordering::SeqCst) {
                return std::task::Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_never_served_idle_connection_gives_way() {
        let reg = Registry::new(3);
        let served = reg.admit().unwrap();
        drop(served.begin());
        served.idle_since_ms.store(0, Ordering::Relaxed);
        let silent = reg.admit().unwrap();
        silent.idle_since_ms.store(1000, Ordering::Relaxed);
        let busy = reg.admit().unwrap();
        let _req = busy.begin();
        // The served connection has been idle longer, but the silent one never sent a request.
        let newcomer = reg.admit().unwrap();
        assert!(silent.shed.is_cancelled());
        assert!(!served.shed.is_cancelled() && !busy.shed.is_cancelled());
        assert_eq!(reg.len(), 3);
        // Next in line: an idle one, never the busy one.
        let _another = reg.admit().unwrap();
        assert!(served.shed.is_cancelled() || newcomer.shed.is_cancelled());
        assert!(!busy.shed.is_cancelled());
        assert_eq!(reg.shed_count(), 2);
    }

    #[test]
    fn when_every_connection_is_busy_the_new_one_is_refused() {
        let reg = Registry::new(2);
        let a = reg.admit().unwrap();
        let b = reg.admit().unwrap();
        let (_ra, _rb) = (a.begin(), b.begin());
        assert!(reg.admit().is_none());
        assert!(!reg.shed_one());
        assert_eq!(reg.refused_count(), 1);
    }

    #[test]
    fn idle_time_counts_from_the_end_of_the_last_request() {
        let reg = Registry::new(1);
        let slot = reg.admit().unwrap();
        let idle = Duration::from_secs(10);
        let req = slot.begin();
        assert_eq!(
            slot.idle_deadline(idle),
            None,
            "a busy connection is not idle"
        );
        slot.idle_since_ms.store(0, Ordering::Relaxed);
        drop(req);
        let ended = slot.epoch + Duration::from_millis(slot.idle_since_ms.load(Ordering::Relaxed));
        assert_eq!(slot.idle_deadline(idle), Some(ended + idle));
    }

    #[tokio::test]
    async fn a_self_wake_is_absorbed_and_a_later_wake_still_arrives() {
        use std::future::Future;
        // Wakes itself twice while polled, then waits for an outside wake.
        struct Twice {
            polls: usize,
            rx: tokio::sync::oneshot::Receiver<()>,
        }
        impl Future for Twice {
            type Output = usize;
            fn poll(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<usize> {
                self.polls += 1;
                if self.polls <= 2 {
                    cx.waker().wake_by_ref();
                    return std::task::Poll::Pending;
                }
                match std::pin::Pin::new(&mut self.rx).poll(cx) {
                    std::task::Poll::Ready(_) => std::task::Poll::Ready(self.polls),
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut fut = Absorb::new(Twice { polls: 0, rx });
        // One outer poll takes both self-wakes and then waits.
        assert!(futures::poll!(&mut fut).is_pending());
        assert_eq!(fut.inner.polls, 3);
        let task = tokio::spawn(fut);
        tx.send(()).unwrap();
        assert_eq!(task.await.unwrap(), 4);
    }
}
