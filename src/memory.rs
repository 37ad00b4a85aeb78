//! The module's global allocator: Redis's allocator (so the module's memory shows in
//! `used_memory`), plus counters of what the Python interpreters allocate, for RG.PYSTATS.
//!
//! Only allocations made while a worker runs Python are counted (`counted`): Rust data that
//! crosses threads (replies, jobs) is allocated on one thread and freed on another, and would
//! make the current figure drift.
//!
//! The same counters enforce `PythonMemoryLimit`. Most of Rust's allocations cannot fail (a
//! null return aborts the process, measured: a list growing past a failed realloc took Redis
//! down), so going over the budget only flags the running execution, which the watchdog then
//! stops with MemoryError at its next bytecode instruction. The one exception is a single
//! allocation larger than half the machine's memory: it fails, because RustPython requests
//! those bombs (`'a' * 2**40`, `[0] * 2**40`, `bytearray(2**40)`) with `try_reserve` and raises
//! MemoryError, while an infallible request of that size would end in the OOM killer anyway.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::redis::alloc::INNER;

pub struct Accounting;

static TOTAL_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

/// Bytes one interpreter (one worker) may hold; 0 = no limit. Per worker, so that one
/// script's hoarding is not charged to the executions running beside it.
static LIMIT: AtomicI64 = AtomicI64::new(0);

/// Single allocations above this fail outright (half the machine's memory, set at load).
static HUGE: AtomicI64 = AtomicI64::new(i64::MAX);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// What this thread's interpreter holds: Python objects live and die on their worker.
    static HELD_BY_THREAD: Cell<i64> = const { Cell::new(0) };
    /// The over-budget flag of the execution running on this thread.
    static WATCHED: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

pub fn set_limit(bytes: i64) {
    LIMIT.store(bytes.max(0), Ordering::Relaxed);
    if let Some(total) = physical_memory() {
        HUGE.store(total / 2, Ordering::Relaxed);
    }
}

fn physical_memory() -> Option<i64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Points the budget check at the running execution's flag. The flag must outlive `unwatch`.
pub fn watch(flag: &AtomicBool) {
    let _ = WATCHED.try_with(|w| w.set(flag));
}

pub fn unwatch() {
    let _ = WATCHED.try_with(|w| w.set(std::ptr::null()));
}

/// Whether `size` more bytes fit in the budget of this thread's interpreter.
pub fn fits(size: usize) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    limit == 0 || held().saturating_add(size as i64) <= limit
}

/// False when the allocation must fail.
fn within_budget(size: usize) -> bool {
    if fits(size) {
        return true;
    }
    let limit = LIMIT.load(Ordering::Relaxed);
    if size as i64 > HUGE.load(Ordering::Relaxed).max(limit) {
        return false;
    }
    let flag = WATCHED.try_with(Cell::get).unwrap_or(std::ptr::null());
    // Safety: `watch` callers keep the flag alive until `unwatch`.
    if let Some(flag) = unsafe { flag.as_ref() } {
        flag.store(true, Ordering::Relaxed);
    }
    true
}

fn counting() -> bool {
    // try_with: the allocator also runs while thread-locals are being torn down.
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn held() -> i64 {
    HELD_BY_THREAD.try_with(Cell::get).unwrap_or(0)
}

fn added(size: usize) {
    let size = size as i64;
    let _ = HELD_BY_THREAD.try_with(|h| h.set(h.get() + size));
    TOTAL_BYTES.fetch_add(size, Ordering::Relaxed);
    let now = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

fn removed(size: usize) {
    let _ = HELD_BY_THREAD.try_with(|h| h.set(h.get() - size as i64));
    LIVE_BYTES.fetch_sub(size as i64, Ordering::Relaxed);
}

// SAFETY: every method forwards to the inner allocator with the caller's arguments; the
// counting around it allocates nothing.
unsafe impl GlobalAlloc for Accounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let counted = counting();
        if counted && !within_budget(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let ptr = unsafe { INNER.alloc(layout) };
        if !ptr.is_null() && counted {
            added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            removed(layout.size());
        }
        // SAFETY: `ptr` came from `INNER` with `layout` (every allocation goes through here).
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let counted = counting();
        if counted && new_size > layout.size() && !within_budget(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `dealloc`; the caller's contract for `new_size` is passed on.
        let new = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !new.is_null() && counted {
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
    (TOTAL_BYTES.load(Ordering::Relaxed), PEAK_BYTES.load(Ordering::Relaxed), LIVE_BYTES.load(Ordering::Relaxed).max(0))
}
