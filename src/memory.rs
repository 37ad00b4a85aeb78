//! The module's global allocator: Redis's allocator (so the module's memory shows in
//! `used_memory`), plus counters of what the Python interpreters allocate, for RG.PYSTATS.
//!
//! Only allocations made while a worker runs Python are counted (`counted`): Rust data that
//! crosses threads (replies, jobs) is allocated on one thread and freed on another, and would
//! make the current figure drift.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

#[cfg(not(test))]
const INNER: redis_module::alloc::RedisAlloc = redis_module::alloc::RedisAlloc;
#[cfg(test)]
const INNER: std::alloc::System = std::alloc::System;

pub struct Accounting;

static TOTAL: AtomicI64 = AtomicI64::new(0);
static CURRENT: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    // try_with: the allocator also runs while thread-locals are being torn down.
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn added(size: usize) {
    let size = size as i64;
    TOTAL.fetch_add(size, Ordering::Relaxed);
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn removed(size: usize) {
    CURRENT.fetch_sub(size as i64, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Accounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { INNER.alloc(layout) };
        if !ptr.is_null() && counting() {
            added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            removed(layout.size());
        }
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !new.is_null() && counting() {
            removed(layout.size());
            added(new_size);
        }
        new
    }
}

/// Runs `f` with this thread's allocations counted as the interpreter's.
pub fn counted<R>(f: impl FnOnce() -> R) -> R {
    scoped(true, f)
}

/// Runs `f` uncounted: for Rust data that will be freed on another thread.
pub fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    scoped(false, f)
}

fn scoped<R>(on: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = COUNTING.try_with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COUNTING.replace(on));
    f()
}

/// `(total, peak, current)` bytes allocated by the interpreters.
pub fn stats() -> (i64, i64, i64) {
    (TOTAL.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed), CURRENT.load(Ordering::Relaxed).max(0))
}
