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

/// Threads with a slot of their own (workers, their replacements, the main thread).
const THREAD_SLOTS: usize = 256;

/// What other threads freed (positive) or grew (negative) of one thread's counted memory.
#[repr(align(64))]
struct RemoteSlot(AtomicI64);

static REMOTE: [RemoteSlot; THREAD_SLOTS] = [const { RemoteSlot(AtomicI64::new(0)) }; THREAD_SLOTS];
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

/// The alignment that tells counted small blocks (8 modulo 16) from uncounted ones (0).
const SMALL_ALIGN: usize = 16;
/// The tag before a counted small block.
const TAG: usize = 8;
/// Tags are `MAGIC | slot`; 0 is an uncounted block with a header.
const MAGIC: u64 = 0x5247_4d45_0000_0000;

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
pub fn watch(flag: Option<Arc<AtomicBool>>) {
    // The flag it replaces is dropped outside the thread-local's access.
    let _previous = WATCHED.try_with(|w| w.replace(flag));
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
fn held() -> i64 {
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

/// How a block of `layout` is laid out in what the inner allocator gave.
#[derive(Clone, Copy)]
enum Shape {
    /// Alignment up to 8, uncounted: the block itself, 16-aligned.
    Plain,
    /// Alignment up to 8, counted: 8 bytes of tag, then the block.
    Tagged,
    /// Alignment of 16 and more: a header of `align` bytes ending with the tag.
    Header,
}

impl Shape {
    fn of(ptr: *mut u8, layout: Layout) -> Shape {
        if layout.align() >= SMALL_ALIGN {
            Shape::Header
        } else if ptr as usize % SMALL_ALIGN == TAG {
            Shape::Tagged
        } else {
            Shape::Plain
        }
    }

    fn new(counted: bool, layout: Layout) -> Shape {
        match (layout.align() >= SMALL_ALIGN, counted) {
            (true, _) => Shape::Header,
            (false, true) => Shape::Tagged,
            (false, false) => Shape::Plain,
        }
    }

    /// Bytes before the block.
    fn offset(self, layout: Layout) -> usize {
        match self {
            Shape::Plain => 0,
            Shape::Tagged => TAG,
            Shape::Header => layout.align(),
        }
    }

    /// What is asked of the inner allocator for a block of `size` bytes (None: too large).
    fn inner(self, layout: Layout, size: usize) -> Option<Layout> {
        let align = layout.align().max(SMALL_ALIGN);
        Layout::from_size_align(size.checked_add(self.offset(layout))?, align).ok()
    }

    /// The inner allocation's layout again, for a block of `layout` that was allocated.
    fn inner_of(self, layout: Layout) -> Layout {
        // SAFETY: `inner` succeeded with this size and alignment when the block was allocated.
        unsafe {
            Layout::from_size_align_unchecked(layout.size() + self.offset(layout), layout.align().max(SMALL_ALIGN))
        }
    }
}

/// The tag of a block of shape `shape` (`ptr`: the block).
///
/// SAFETY: `ptr` is a live block of this allocator with that shape.
unsafe fn tag_of(shape: Shape, ptr: *mut u8) -> u64 {
    let tag = match shape {
        Shape::Plain => 0,
        // SAFETY: tagged blocks and blocks with a header have their tag in the 8 bytes before
        // them, inside the inner allocation, 8-aligned.
        Shape::Tagged | Shape::Header => unsafe { ptr.sub(TAG).cast::<u64>().read() },
    };
    debug_assert!(tag == 0 || tag & !u64::from(u32::MAX) == MAGIC, "not a block of this allocator");
    tag
}

/// Allocates a block of `layout` with `shape`, tagged `tag`; null if the inner allocator fails.
///
/// SAFETY: `layout` has a non-zero size (the `GlobalAlloc::alloc` contract).
unsafe fn block(shape: Shape, layout: Layout, tag: u64) -> *mut u8 {
    let Some(inner) = shape.inner(layout, layout.size()) else { return std::ptr::null_mut() };
    // SAFETY: `inner` has a non-zero size.
    let base = unsafe { INNER.alloc(inner) };
    if base.is_null() {
        return base;
    }
    // The inner allocator keeps alignments; this only makes sure, as a block whose class cannot
    // be told from its address would be freed at a wrong one. Failing aborts cleanly instead.
    if !(base as usize).is_multiple_of(SMALL_ALIGN) {
        // SAFETY: `base` was just allocated with `inner`.
        unsafe { INNER.dealloc(base, inner) };
        return std::ptr::null_mut();
    }
    let offset = shape.offset(layout);
    // SAFETY: the inner allocation is `offset` bytes longer than the block.
    let ptr = unsafe { base.add(offset) };
    if offset > 0 {
        // SAFETY: the tag's 8 bytes are the last of the `offset` bytes before the block, and
        // 8-aligned (`offset` is 8, or a multiple of 16, past a 16-aligned base).
        unsafe { ptr.sub(TAG).cast::<u64>().write(tag) };
    }
    ptr
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
mod tests {
    use super::*;

    fn live() -> i64 {
        LIVE_BYTES.load(Ordering::Relaxed)
    }

    struct Block(usize, usize);

    impl Block {
        fn layout(&self) -> Layout {
            Layout::from_size_align(self.0, self.1).unwrap()
        }
    }

    fn alloc(size: usize, align: usize) -> (usize, Block) {
        let block = Block(size, align);
        // SAFETY: a non-zero size.
        let ptr = unsafe { Accounting.alloc(block.layout()) };
        assert!(!ptr.is_null());
        assert_eq!(ptr as usize % align, 0, "{size} bytes aligned to {align}");
        // SAFETY: the block is `size` bytes long.
        unsafe { ptr.write_bytes(0xa5, size) };
        (ptr as usize, block)
    }

    fn free((ptr, block): (usize, Block)) {
        // SAFETY: allocated by `alloc` with this layout.
        unsafe { Accounting.dealloc(ptr as *mut u8, block.layout()) }
    }

    fn realloc((ptr, block): (usize, Block), size: usize) -> (usize, Block) {
        // SAFETY: allocated by `alloc` with this layout; a non-zero size.
        let new = unsafe { Accounting.realloc(ptr as *mut u8, block.layout(), size) };
        assert!(!new.is_null());
        assert_eq!(new as usize % block.1, 0);
        // SAFETY: the first bytes were copied; the block is `size` bytes long.
        unsafe {
            assert_eq!(*new, 0xa5);
            new.write_bytes(0xa5, size);
        }
        (new as usize, Block(size, block.1))
    }

    // One test: the figures are global, and only this test allocates through `Accounting`
    // (it is not the global allocator of unit tests).
    #[test]
    fn every_counted_byte_is_uncounted_when_freed_whatever_the_thread_or_mode() {
        let base = live();
        let shapes = [(1, 1), (7, 1), (8, 8), (24, 8), (100, 4), (4000, 8), (16, 16), (40, 64), (5000, 4096)];

        // Counted here, freed on another thread that counts nothing: the figure comes back, and
        // so does this thread's budget figure.
        let blocks: Vec<_> = counted(|| shapes.iter().map(|&(s, a)| alloc(s, a)).collect());
        let sum: usize = shapes.iter().map(|(s, _)| s).sum();
        assert_eq!(live() - base, sum as i64);
        assert_eq!(held(), sum as i64);
        std::thread::spawn(move || blocks.into_iter().for_each(free)).join().unwrap();
        assert_eq!(live(), base);
        assert_eq!(held(), 0);

        // Uncounted here, freed while counting: nothing moves.
        let blocks: Vec<_> = uncounted(|| shapes.iter().map(|&(s, a)| alloc(s, a)).collect());
        assert_eq!(live(), base);
        counted(|| blocks.into_iter().for_each(free));
        assert_eq!(live(), base);
        assert_eq!(held(), 0);

        // Counted, grown and shrunk uncounted, freed counted: it stays counted by its size.
        for &(size, align) in &shapes {
            let block = counted(|| alloc(size, align));
            let block = uncounted(|| realloc(block, size * 3));
            assert_eq!(live() - base, (size * 3) as i64);
            let block = counted(|| realloc(block, size.div_ceil(2)));
            assert_eq!(live() - base, size.div_ceil(2) as i64);
            assert_eq!(held(), size.div_ceil(2) as i64);
            counted(|| free(block));
            assert_eq!(live(), base);
        }

        // Uncounted, grown while counting: still not the interpreter's.
        let block = uncounted(|| alloc(10, 8));
        let block = counted(|| realloc(block, 1000));
        assert_eq!(live(), base);
        free(block);

        // Counted on another thread, grown and freed here: that thread's figure comes back.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let block = counted(|| alloc(300, 8));
            tx.send(block).unwrap();
            done_rx.recv().unwrap();
            held()
        });
        let block = rx.recv().unwrap();
        assert_eq!(live() - base, 300);
        let block = realloc(block, 600);
        free(block);
        done_tx.send(()).unwrap();
        assert_eq!(other.join().unwrap(), 0);
        assert_eq!(live(), base);
        assert_eq!(held(), 0);
    }
}
