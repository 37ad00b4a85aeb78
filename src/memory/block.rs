//! How a block is laid out in what the inner allocator gave: its class (counted or not) is told
//! by its address and alignment, and a counted block carries its tag (see `memory`).

use std::alloc::{GlobalAlloc, Layout};

use super::inner::INNER;

/// The alignment that tells counted small blocks (8 modulo 16) from uncounted ones (0).
pub const SMALL_ALIGN: usize = 16;
/// The tag before a counted small block.
pub const TAG: usize = 8;
/// Tags are `MAGIC | slot`; 0 is an uncounted block with a header.
pub const MAGIC: u64 = 0x5247_4d45_0000_0000;

/// How a block of `layout` is laid out in what the inner allocator gave.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Alignment up to 8, uncounted: the block itself, 16-aligned.
    Plain,
    /// Alignment up to 8, counted: 8 bytes of tag, then the block.
    Tagged,
    /// Alignment of 16 and more: a header of `align` bytes ending with the tag.
    Header,
}

impl Shape {
    pub fn of(ptr: *mut u8, layout: Layout) -> Shape {
        if layout.align() >= SMALL_ALIGN {
            Shape::Header
        } else if ptr as usize % SMALL_ALIGN == TAG {
            Shape::Tagged
        } else {
            Shape::Plain
        }
    }

    pub fn new(counted: bool, layout: Layout) -> Shape {
        match (layout.align() >= SMALL_ALIGN, counted) {
            (true, _) => Shape::Header,
            (false, true) => Shape::Tagged,
            (false, false) => Shape::Plain,
        }
    }

    /// Bytes before the block.
    pub fn offset(self, layout: Layout) -> usize {
        match self {
            Shape::Plain => 0,
            Shape::Tagged => TAG,
            Shape::Header => layout.align(),
        }
    }

    /// What is asked of the inner allocator for a block of `size` bytes (None: too large).
    pub fn inner(self, layout: Layout, size: usize) -> Option<Layout> {
        let align = layout.align().max(SMALL_ALIGN);
        Layout::from_size_align(size.checked_add(self.offset(layout))?, align).ok()
    }

    /// The inner allocation's layout again, for a block of `layout` that was allocated.
    pub fn inner_of(self, layout: Layout) -> Layout {
        // SAFETY: `inner` succeeded with this size and alignment when the block was allocated.
        unsafe {
            Layout::from_size_align_unchecked(layout.size() + self.offset(layout), layout.align().max(SMALL_ALIGN))
        }
    }
}

/// The tag of a block of shape `shape` (`ptr`: the block).
///
/// SAFETY: `ptr` is a live block of this allocator with that shape.
pub unsafe fn tag_of(shape: Shape, ptr: *mut u8) -> u64 {
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
pub unsafe fn block(shape: Shape, layout: Layout, tag: u64) -> *mut u8 {
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
