//! The accounting allocator's counters, over the system allocator.

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
    assert_eq!(counted_bytes(), sum as i64);
    std::thread::spawn(move || blocks.into_iter().for_each(free)).join().unwrap();
    assert_eq!(live(), base);
    assert_eq!(counted_bytes(), 0);

    // Uncounted here, freed while counting: nothing moves.
    let blocks: Vec<_> = uncounted(|| shapes.iter().map(|&(s, a)| alloc(s, a)).collect());
    assert_eq!(live(), base);
    counted(|| blocks.into_iter().for_each(free));
    assert_eq!(live(), base);
    assert_eq!(counted_bytes(), 0);

    // Counted, grown and shrunk uncounted, freed counted: it stays counted by its size.
    for &(size, align) in &shapes {
        let block = counted(|| alloc(size, align));
        let block = uncounted(|| realloc(block, size * 3));
        assert_eq!(live() - base, (size * 3) as i64);
        let block = counted(|| realloc(block, size.div_ceil(2)));
        assert_eq!(live() - base, size.div_ceil(2) as i64);
        assert_eq!(counted_bytes(), size.div_ceil(2) as i64);
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
        counted_bytes()
    });
    let block = rx.recv().unwrap();
    assert_eq!(live() - base, 300);
    let block = realloc(block, 600);
    free(block);
    done_tx.send(()).unwrap();
    assert_eq!(other.join().unwrap(), 0);
    assert_eq!(live(), base);
    assert_eq!(counted_bytes(), 0);
}
