//! The invocation path's metrics are `Health`'s counters (the Prometheus exposition reads them
//! only at scrape time): recording an invocation of a series already seen must not allocate.
//! A counting allocator counts this thread's allocations around the recording. (It lives with
//! the runtime's tests because `unsafe` lives only in this crate; the invoker's health layer is
//! what calls `Health::record`.)
#![allow(clippy::unwrap_used)]

use berth_control::Health;
use berth_control::health::Outcome;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the counter is a
// const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn recording_an_invocation_of_a_known_series_allocates_nothing() {
    let health = Health::new(10_000);
    let at = 1_700_000_000_000;
    let latency = Duration::from_millis(12);
    // The first invocation of a series (and of a bucket) creates them.
    health.record_at("rt-0123456789", "prod", 2, Outcome::Ok, latency, at);
    health.new_session_at("rt-0123456789", "prod", 2, at);
    let before = allocations();
    for i in 0..1000 {
        let outcome = if i % 10 == 0 {
            Outcome::AgentError
        } else {
            Outcome::Ok
        };
        health.record_at("rt-0123456789", "prod", 2, outcome, latency, at + i);
        health.new_session_at("rt-0123456789", "prod", 2, at + i);
    }
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "1000 recordings allocated {allocated} times");
    // The counter does count this thread's allocations.
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(16);
    assert!(allocations() > before && v.capacity() >= 16);
    // And they were counted.
    let totals = health.totals();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].invocations, 1001);
    assert_eq!(totals[0].errors_5xx, 100);
}
