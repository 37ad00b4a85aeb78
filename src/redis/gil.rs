//! The Redis lock ("GIL") as seen from any thread of the module.
//!
//! The lock is a plain non-recursive mutex and the main thread holds it while it runs commands,
//! callbacks and timers. A thread-local depth counter (1 on the main thread) tells whether the
//! current thread already holds it, in which case the current context is reused instead of locking
//! again (which would deadlock).
//!
//! Two things make a worker's wait for the lock special:
//! - The main thread may be *waiting for this worker* while it holds the lock (a call on behalf
//!   of the main thread, `lend`). So a worker never blocks on the mutex: it tries it, and between
//!   tries serves its visits (`crate::idle`), one of which may be the main thread's call.
//! - During such a call the main thread's context is lent to the worker: the worker calls Redis
//!   through it instead of locking (see `lend` for why that is sound).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::unpoisoned::Unpoisoned;
use redis_module::{Context, raw};

/// The module's own detached context, created at load: the one every worker locks.
static DETACHED: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The lock this worker holds across calls: an `atomic()` block.
    static ATOMIC_SECTION: RefCell<Option<Locked>> = const { RefCell::new(None) };
    /// The main thread's context while this worker runs a call on its behalf.
    static LENT: RefCell<Option<Arc<Lent>>> = const { RefCell::new(None) };
}

/// Called once from the module's init, which runs on the main thread.
pub fn init_main_thread(ctx: &Context) {
    DEPTH.set(1);
    // SAFETY: init runs with a valid module context; the detached context it returns is never
    // freed, so the pointer stays valid for the module's life.
    let detached = unsafe { raw::RedisModule_GetDetachedThreadSafeContext.map(|get| get(ctx.ctx)) };
    if let Some(detached) = detached {
        DETACHED.store(detached, Ordering::Release);
    }
}

/// The module's detached context, for code on a thread that holds the lock but was given no
/// context (the command filter). Null outside Redis.
pub fn detached() -> *mut raw::RedisModuleCtx {
    DETACHED.load(Ordering::Acquire)
}

/// False outside Redis (fuzz targets and unit tests link the library without a server).
pub fn available() -> bool {
    !DETACHED.load(Ordering::Acquire).is_null()
}

pub fn held() -> bool {
    DEPTH.get() > 0
}

/// The lock, taken on this thread; released on drop.
struct Locked(Context);

impl Locked {
    /// Takes the lock without ever blocking on it: between tries the worker serves its visits.
    fn take() -> Locked {
        let ctx = DETACHED.load(Ordering::Acquire);
        let mut pause = Duration::from_micros(20);
        // SAFETY: `ctx` is the module's detached context (`available()` was checked by the
        // callers); TryLock returns OK only when this thread now holds the lock.
        while unsafe { raw::RedisModule_ThreadSafeContextTryLock.unwrap()(ctx) } != raw::REDISMODULE_OK as i32 {
            crate::idle::serve_for(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
        DEPTH.set(DEPTH.get() + 1);
        Locked(Context::new(ctx))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
        // SAFETY: this thread took the lock in `take`; unlocking also propagates the writes made
        // under it as one unit.
        unsafe { raw::RedisModule_ThreadSafeContextUnlock.unwrap()(self.0.ctx) };
    }
}

/// Runs `f` with the Redis lock held and database `db` selected.
///
/// Must not be called on a thread that already holds the lock (the main thread): callers on the
/// main thread have a command context of their own.
pub fn with_gil<R>(db: i32, f: impl FnOnce(&Context) -> R) -> R {
    let f = match with_lent(db, f) {
        Ok(r) => return r,
        Err(f) => f,
    };
    // Inside an atomic() block: this thread already holds the lock. The context is copied out
    // rather than borrowed across `f`: what `f` runs may open or close blocks of its own (a
    // `sync` registration its write fires, nested on this worker).
    if let Some(ctx) = ATOMIC_SECTION.with_borrow(|held| held.as_ref().map(|locked| locked.0.ctx)) {
        let ctx = Context::new(ctx);
        select(&ctx, db);
        return f(&ctx);
    }
    debug_assert!(!held(), "the Redis lock is already held on this thread");
    let locked = Locked::take();
    // The shared detached context keeps whatever database the previous section selected.
    select(&locked.0, db);
    f(&locked.0)
}

/// What `hold` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Took the lock: `release` lets it go.
    Taken,
    /// Nothing to take: the code runs on behalf of the main thread, which holds the lock for
    /// the whole call (atomic anyway).
    Already,
    /// This thread holds the lock already (an atomic block is open), or there is no Redis.
    Refused,
}

/// Takes the lock until `release`: no other client or thread touches Redis meanwhile, and the
/// writes made under it replicate as one MULTI/EXEC.
pub fn hold() -> Hold {
    if LENT.with_borrow(Option::is_some) {
        return Hold::Already;
    }
    if held() || !available() {
        return Hold::Refused;
    }
    ATOMIC_SECTION.set(Some(Locked::take()));
    Hold::Taken
}

pub fn release() {
    drop(ATOMIC_SECTION.take());
}

pub fn holding() -> bool {
    ATOMIC_SECTION.with_borrow(Option::is_some)
}

fn select(ctx: &Context, db: i32) {
    // SAFETY: `ctx` is a context this thread may use now (it holds the lock, or the main thread
    // lent it); SelectDb only changes that context's database.
    unsafe {
        if let Some(select) = raw::RedisModule_SelectDb {
            select(ctx.ctx, db);
        }
    }
}

/// The database the command's client has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: a command context, on the main thread.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |get| get(ctx.ctx)) }
}

/// The main thread's context, lent to a worker while the main thread waits for it.
///
/// Why this is sound: the main thread holds the Redis lock for the whole call and does nothing
/// but wait, so the worker calling Redis through the main thread's context is, for Redis, the
/// main thread calling it: one thread at a time touches Redis, under the lock. The context is
/// used only under `Lent::ctx`'s mutex, and the main thread takes that mutex to revoke the
/// context before it stops waiting (a worker that outlives the call then locks normally, after
/// the main thread has let go). Writes made through it replicate with the command that lent it.
pub struct Lent {
    ctx: Mutex<Option<SendCtx>>,
    /// The client's database: the worker selects its own, and it is put back on revocation.
    db: i32,
}

struct SendCtx(*mut raw::RedisModuleCtx);

// SAFETY: the pointer is only dereferenced (by Redis) under `Lent::ctx`'s mutex while the main
// thread, which owns the context, is blocked waiting for the worker.
unsafe impl Send for SendCtx {}

impl Lent {
    /// Lends `ctx` (the main thread's, with the lock held) until `revoke`.
    pub fn new(ctx: &Context) -> Arc<Lent> {
        Arc::new(Lent { ctx: Mutex::new(Some(SendCtx(ctx.ctx))), db: selected_db(ctx) })
    }

    fn lock(&self) -> MutexGuard<'_, Option<SendCtx>> {
        self.ctx.locked()
    }

    /// Takes the context back; waits for a call the worker is making through it to return.
    pub fn revoke(&self) {
        if let Some(ctx) = self.lock().take() {
            select(&Context::new(ctx.0), self.db);
        }
    }
}

/// Runs `f` on this worker with `lent` as its way into Redis.
pub fn lend<R>(lent: Arc<Lent>, f: impl FnOnce() -> R) -> R {
    struct RestoreLent(Option<Arc<Lent>>);
    impl Drop for RestoreLent {
        fn drop(&mut self) {
            LENT.set(self.0.take());
        }
    }
    let _restore = RestoreLent(LENT.replace(Some(lent)));
    f()
}

fn with_lent<R, F: FnOnce(&Context) -> R>(db: i32, f: F) -> Result<R, F> {
    let Some(lent) = LENT.with_borrow(Clone::clone) else { return Err(f) };
    let guard = lent.lock();
    let Some(ctx) = guard.as_ref() else { return Err(f) };
    let ctx = Context::new(ctx.0);
    select(&ctx, db);
    Ok(f(&ctx))
}
