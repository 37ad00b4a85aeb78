//! The module's global allocator: Redis's allocator (so the module's memory shows in
//! `used_memory`), plus counters of what the Python interpreters allocate, for RG.PYSTATS.
//!
//! What is counted is decided when memory is allocated: allocations made while a worker runs
//! Python (`counted`) are the interpreter's; Rust data made for other threads (replies, jobs) is
//! allocated `uncounted`. Each allocation carries its class, so that its free subtracts exactly
//! what its allocation added, whichever thread frees it and in whatever mode (a Python object
//! dropped on the main thread, a record freed uncounted, a reply grown by Python code). The
//! class is in the pointer:
//!
//! - alignment up to 8 (nearly every allocation): an uncounted block is asked of Redis's
//!   allocator 16-aligned; a counted one is 8 bytes longer, 16-aligned, and handed out 8 bytes
//!   in, so its address is 8 modulo 16. Those 8 bytes hold a tag: which thread's interpreter
//!   allocated it (its *slot*), for the per-worker budget below.
//! - alignment of 16 and more (rare): every block, counted or not, has a header of `align`
//!   bytes whose last 8 bytes hold the tag, 0 for uncounted.
//!
//! The same counters enforce `PythonMemoryLimit`. Most of Rust's allocations cannot fail (a
//! null return aborts the process, measured: a list growing past a failed realloc took Redis
//! down), so going over the budget only flags the running execution, which the watchdog then
//! stops with MemoryError at its next bytecode instruction. The one exception is a single
//! allocation larger than half the machine's memory: it fails, because RustPython requests
//! those bombs (`'a' * 2**40`, `[0] * 2**40`, `bytearray(2**40)`) with `try_reserve` and raises
//! MemoryError, while an infallible request of that size would end in the OOM killer anyway.
//!
//! The budget is per interpreter, that is per thread: a thread's figure is what it allocated
//! counted (a thread-local, no atomics on the common path) less what other threads freed of it
//! (an atomic of its slot). Threads beyond `THREAD_SLOTS` share the last slot; their budgets are then
//! approximate, the global figures stay exact.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

mod inner;

use inner::INNER;

mod block;

use block::{MAGIC, SMALL_ALIGN, Shape, TAG, block, tag_of};

pub struct Accounting;

static TOTAL_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

/// Bytes one interpreter (one worker) may hold; 0 = no limit. Per worker, so that one
/// script's hoarding is not charged to the executions running beside it.
static LIMIT: AtomicI64 = AtomicI64::new(0);

/// Single allocations above this fail outright (half the machine's memory, set at load).
static HUGE: AtomicI64 = AtomicI64::new(i64::MAX);

/// Threads with a slot of their own (workers, their replacements, the main thread).
const THREAD_SLOTS: usize = 256;

/// What other threads freed (positive) or grew (negative) of one thread's counted memory.
#[repr(align(64))]
struct RemoteSlot(AtomicI64);

static REMOTE: [RemoteSlot; THREAD_SLOTS] = [const { RemoteSlot(AtomicI64::new(0)) }; THREAD_SLOTS];
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

struct ThreadCounts {
    counting: Cell<bool>,
    /// This thread's slot + 1; 0 until its first counted allocation.
    slot: Cell<u32>,
    /// Counted bytes this thread allocated less those of them it freed itself.
    held: Cell<i64>,
}

thread_local! {
    // const and without destructor: usable while the thread's other thread-locals are torn down.
    static STATE: ThreadCounts = const { ThreadCounts { counting: Cell::new(false), slot: Cell::new(0), held: Cell::new(0) } };
    /// The over-budget flag of the execution running on this thread.
    static WATCHED: Cell<Option<Arc<AtomicBool>>> = const { Cell::new(None) };
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

/// Points the budget check at the running execution's flag (`None`: no execution runs).
pub fn point_at(flag: Option<Arc<AtomicBool>>) {
    // The flag it replaces is dropped outside the thread-local's access.
    let _previous = WATCHED.try_with(|w| w.replace(flag));
}

/// Whether `size` more bytes fit in the budget of this thread's interpreter.
pub fn fits(size: usize) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    limit == 0 || counted_bytes().saturating_add(size as i64) <= limit
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
    // Taken and put back: neither allocates nor frees, as the allocator must not here.
    let _ = WATCHED.try_with(|w| {
        let flag = w.take();
        if let Some(flag) = &flag {
            flag.store(true, Ordering::Relaxed);
        }
        w.set(flag);
    });
    true
}

fn counting() -> bool {
    STATE.try_with(|s| s.counting.get()).unwrap_or(false)
}

/// The counted bytes of this thread's interpreter, whoever freed them.
fn counted_bytes() -> i64 {
    STATE
        .try_with(|s| {
            let own = s.held.get();
            match s.slot.get() {
                0 => own,
                slot => own - REMOTE[slot as usize - 1].0.load(Ordering::Relaxed),
            }
        })
        .unwrap_or(0)
}

/// This thread's slot, given one on its first counted allocation.
fn my_slot(state: &ThreadCounts) -> u32 {
    match state.slot.get() {
        0 => {
            let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(THREAD_SLOTS as u32 - 1);
            state.slot.set(slot + 1);
            slot
        }
        slot => slot - 1,
    }
}

/// Counts `size` bytes allocated by this thread; returns the tag of the block.
fn added(size: usize) -> u64 {
    let size = size as i64;
    let slot = STATE
        .try_with(|s| {
            s.held.set(s.held.get() + size);
            my_slot(s)
        })
        // Not reached (only a counting thread counts), but a tag must name some slot.
        .unwrap_or(THREAD_SLOTS as u32 - 1);
    TOTAL_BYTES.fetch_add(size, Ordering::Relaxed);
    let now = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    raise_peak(now);
    MAGIC | u64::from(slot)
}

/// A read first: a new peak is rare, and a read-modify-write on every allocation would fight
/// the other threads for the counter's cache line.
fn raise_peak(now: i64) {
    if now > PEAK_BYTES.load(Ordering::Relaxed) {
        PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    }
}

/// Moves the held figure of the thread of `tag` by `delta` bytes (negative: freed).
fn moved(tag: u64, delta: i64) {
    let slot = (tag & u64::from(u32::MAX)) as usize % THREAD_SLOTS;
    let mine = STATE
        .try_with(|s| {
            let mine = s.slot.get() as usize == slot + 1;
            if mine {
                s.held.set(s.held.get() + delta);
            }
            mine
        })
        .unwrap_or(false);
    if !mine {
        REMOTE[slot].0.fetch_sub(delta, Ordering::Relaxed);
    }
    let now = LIVE_BYTES.fetch_add(delta, Ordering::Relaxed) + delta;
    if delta > 0 {
        TOTAL_BYTES.fetch_add(delta, Ordering::Relaxed);
        raise_peak(now);
    }
}

// SAFETY: every block is carved out of one inner allocation made with the layout `Shape::inner`
// computes, and is given back with that layout: the block's shape is known again from its
// address and alignment (see the module's documentation). The counting allocates nothing.
unsafe impl GlobalAlloc for Accounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let counted = counting();
        if counted && !within_budget(layout.size()) {
            return std::ptr::null_mut();
        }
        let shape = Shape::new(counted, layout);
        // A Plain block has no tag; a Header one has 0 until it is counted below.
        // SAFETY: the caller's contract for `alloc` is passed on.
        let ptr = unsafe { block(shape, layout, 0) };
        if !ptr.is_null() && counted {
            let tag = added(layout.size());
            // SAFETY: counted blocks are Tagged or Header: their tag is the 8 bytes before them.
            unsafe { ptr.sub(TAG).cast::<u64>().write(tag) };
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let shape = Shape::of(ptr, layout);
        // SAFETY: `ptr` is a live block of this allocator (the caller's contract).
        let tag = unsafe { tag_of(shape, ptr) };
        if tag != 0 {
            moved(tag, -(layout.size() as i64));
        }
        // SAFETY: the block was carved `offset` bytes into an inner allocation of `inner_of`.
        unsafe { INNER.dealloc(ptr.sub(shape.offset(layout)), shape.inner_of(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A block keeps its class: what was counted stays counted, by the thread that counted it.
        let shape = Shape::of(ptr, layout);
        // SAFETY: `ptr` is a live block of this allocator (the caller's contract).
        let tag = unsafe { tag_of(shape, ptr) };
        let grows = new_size.saturating_sub(layout.size());
        if tag != 0 && grows > 0 && counting() && !within_budget(grows) {
            return std::ptr::null_mut();
        }
        let Some(new_inner) = shape.inner(layout, new_size) else { return std::ptr::null_mut() };
        // SAFETY: the block was carved `offset` bytes into an inner allocation of `inner_of`; the
        // inner allocator copies the tag with the block.
        let base = unsafe { INNER.realloc(ptr.sub(shape.offset(layout)), shape.inner_of(layout), new_inner.size()) };
        if base.is_null() {
            return base;
        }
        if !(base as usize).is_multiple_of(SMALL_ALIGN) {
            // The old block is gone and the new one would be freed at a wrong address (see
            // `block`); never happens with an allocator that keeps alignments.
            std::process::abort();
        }
        if tag != 0 {
            moved(tag, new_size as i64 - layout.size() as i64);
        }
        // SAFETY: the new inner allocation is `offset` bytes longer than the block.
        unsafe { base.add(shape.offset(layout)) }
    }
}

/// Runs `f` with this thread's allocations counted as the interpreter's.
pub fn counted<R>(f: impl FnOnce() -> R) -> R {
    scoped(true, f)
}

/// Runs `f` uncounted: for Rust data that is not the interpreter's (made for another thread).
pub fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    scoped(false, f)
}

fn scoped<R>(on: bool, f: impl FnOnce() -> R) -> R {
    struct RestoreCounting(bool);
    impl Drop for RestoreCounting {
        fn drop(&mut self) {
            let _ = STATE.try_with(|s| s.counting.set(self.0));
        }
    }
    let _restore = RestoreCounting(STATE.try_with(|s| s.counting.replace(on)).unwrap_or(false));
    f()
}

/// `(total, peak, current)` bytes allocated by the interpreters.
pub fn stats() -> (i64, i64, i64) {
    (TOTAL_BYTES.load(Ordering::Relaxed), PEAK_BYTES.load(Ordering::Relaxed), LIVE_BYTES.load(Ordering::Relaxed).max(0))
}

#[cfg(test)]
mod tests;
