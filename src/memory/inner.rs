//! The allocator underneath the accounting one (`super`): Redis's, so that the module's memory
//! shows in `used_memory`; the system's in unit tests and fuzz targets, which run without Redis
//! (Redis's allocator aborts before `RedisModule_Init`). The one place outside `redis/` that
//! calls Redis's API: the global allocator cannot sit above what it serves.

#[cfg(all(feature = "module", not(test)))]
pub const INNER: Redis = Redis;
#[cfg(not(all(feature = "module", not(test))))]
pub const INNER: std::alloc::System = std::alloc::System;

/// Redis's allocator, growing blocks in place where it can: `RedisAlloc` reallocates by
/// allocating, copying and freeing, and Python grows its lists, strings and dicts all the time.
#[cfg(all(feature = "module", not(test)))]
pub struct Redis;

#[cfg(all(feature = "module", not(test)))]
// SAFETY: alloc and dealloc are RedisAlloc's; realloc keeps the block's alignment (see below)
// and otherwise is RedisAlloc's.
unsafe impl std::alloc::GlobalAlloc for Redis {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { redis_module::alloc::RedisAlloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from RedisAlloc (through `alloc` or `realloc`, both Redis's).
        unsafe { redis_module::alloc::RedisAlloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // Redis's allocator (jemalloc, or libc's) aligns every block of 16 bytes and more to 16.
        const KEPT: usize = 16;
        // SAFETY: a plain read of a function pointer Redis set once, at the module's load.
        match unsafe { redis_module::raw::RedisModule_Realloc } {
            Some(realloc) if layout.align() <= KEPT => {
                let Some(size) = new_size.checked_next_multiple_of(KEPT) else { return std::ptr::null_mut() };
                // SAFETY: `ptr` is a live block of Redis's allocator (the caller's contract).
                unsafe { realloc(ptr.cast(), size).cast() }
            }
            // SAFETY: the caller's contract is passed on; RedisAlloc moves the block (the
            // trait's default: alloc, copy, free), which keeps any alignment.
            _ => unsafe { redis_module::alloc::RedisAlloc.realloc(ptr, layout, new_size) },
        }
    }
}
