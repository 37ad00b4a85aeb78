//! The Redis lock ("GIL") as seen from any thread of the module.
//!
//! The lock is a plain non-recursive mutex and the main thread holds it while it runs commands,
//! callbacks and timers. A thread-local depth counter (1 on the main thread) tells whether the
//! current thread already holds it, in which case the current context is reused instead of locking
//! again (which would deadlock).

use std::cell::Cell;

use redis_module::{Context, MODULE_CONTEXT, raw};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Called once from the module's init, which runs on the main thread.
pub fn mark_main_thread() {
    DEPTH.set(1);
}

pub fn held() -> bool {
    DEPTH.get() > 0
}

struct Depth;

impl Drop for Depth {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
    }
}

/// Runs `f` with the Redis lock held and database `db` selected.
///
/// Must not be called on a thread that already holds the lock (the main thread): callers on the
/// main thread have a command context of their own.
pub fn with_gil<R>(db: i32, f: impl FnOnce(&Context) -> R) -> R {
    debug_assert!(!held(), "the Redis lock is already held on this thread");
    let guard = MODULE_CONTEXT.lock();
    DEPTH.set(DEPTH.get() + 1);
    let _depth = Depth;
    // The shared detached context keeps whatever database the previous section selected.
    unsafe {
        if let Some(select) = raw::RedisModule_SelectDb {
            select(guard.ctx, db);
        }
    }
    f(&guard)
}

/// The database the command's client has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |get| get(ctx.ctx)) }
}
