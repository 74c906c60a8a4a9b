//! A sleep with microsecond precision: a `timerfd` registered with the tokio reactor.
//!
//! tokio's own timer wheel has a resolution of one millisecond, which would release requests of
//! an open-loop schedule in bursts at millisecond boundaries and add up to a millisecond to every
//! measured latency. A `timerfd` wakes `epoll` at the requested nanosecond (plus the kernel's
//! timer slack), on the thread that owns the connections, so no cross-thread wake-up is involved.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A one-shot timer; one per thread.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// A timer on `CLOCK_MONOTONIC` (the clock behind `Instant` on Linux). Must be created inside
    /// a tokio runtime with IO enabled.
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: an `OwnedFd` is a valid, open descriptor that keeps returning the same number
        // from `as_raw_fd` until it is dropped, and the `AsyncFd` owns it for its whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Returns at `deadline` (at once if it has passed).
    pub async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let now = Instant::now();
        if deadline <= now {
            return Ok(());
        }
        let wait = deadline - now;
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(wait.subsec_nanos()),
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match guard.try_io(|fd| {
                rustix::io::read(fd.get_ref(), &mut expirations).map_err(io::Error::from)
            }) {
                Ok(result) => return result.map(|_| ()),
                // Spurious readiness: wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sleeps_at_least_until_the_deadline() {
        let timer = PreciseTimer::new().expect("timerfd");
        for micros in [0, 50, 300, 2000] {
            let deadline = Instant::now() + Duration::from_micros(micros);
            timer.sleep_until(deadline).await.expect("sleep");
            assert!(Instant::now() >= deadline);
        }
    }
}
