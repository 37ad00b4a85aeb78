//! The Redis lock ("GIL") as seen from any thread of the module.
//!
//! The lock is a plain non-recursive mutex and the main thread holds it while it runs commands,
//! callbacks and timers. A thread-local depth counter (1 on the main thread) tells whether the
//! current thread already holds it, in which case the current context is reused instead of locking
//! again (which would deadlock).

use std::cell::Cell;

use std::cell::RefCell;

use redis_module::{Context, DetachedContextGuard, MODULE_CONTEXT, raw};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The lock a worker holds across calls: an `atomic()` block.
    static HELD: RefCell<Option<DetachedContextGuard>> = const { RefCell::new(None) };
}

/// Called once from the module's init, which runs on the main thread.
pub fn mark_main_thread() {
    DEPTH.set(1);
}

/// False outside Redis (fuzz targets and unit tests link the library without a server).
pub fn available() -> bool {
    unsafe { raw::RedisModule_ThreadSafeContextLock }.is_some()
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
    if holding() {
        // Inside an atomic() block: this thread already holds the lock.
        return HELD.with_borrow(|held| match held {
            Some(guard) => f(guard),
            None => unreachable!("checked just above"),
        });
    }
    debug_assert!(!held(), "the Redis lock is already held on this thread");
    let guard = MODULE_CONTEXT.lock();
    DEPTH.set(DEPTH.get() + 1);
    let _depth = Depth;
    // The shared detached context keeps whatever database the previous section selected.
    select(&guard, db);
    f(&guard)
}

/// Takes the lock until `release`: no other client or thread touches Redis meanwhile, and the
/// writes made under it replicate as one MULTI/EXEC. Returns false if this thread holds it.
pub fn hold(db: i32) -> bool {
    if held() || !available() {
        return false;
    }
    let guard = MODULE_CONTEXT.lock();
    select(&guard, db);
    DEPTH.set(DEPTH.get() + 1);
    HELD.set(Some(guard));
    true
}

pub fn release() {
    if let Some(guard) = HELD.take() {
        DEPTH.set(DEPTH.get() - 1);
        drop(guard);
    }
}

pub fn holding() -> bool {
    HELD.with_borrow(Option::is_some)
}

fn select(ctx: &Context, db: i32) {
    unsafe {
        if let Some(select) = raw::RedisModule_SelectDb {
            select(ctx.ctx, db);
        }
    }
}

/// The database the command's client has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |get| get(ctx.ctx)) }
}
