//! Server events the registrations follow: data being loaded (the registry is replaced by what
//! the load brings) and a replica promoted (its stream registrations start working).

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::{Context, raw};

/// What the module does on each event.
pub struct Handlers {
    /// Loading starts (`snapshot`: of an RDB file, not of an AOF or a replication stream):
    /// forget the registrations the load replaces.
    pub loading_started: fn(bool),
    /// Loading ended, or this server became a master: registrations may start working.
    pub ready: fn(&Context),
}

static HANDLERS: OnceLock<Handlers> = OnceLock::new();

const EVENT_ROLE_CHANGED: u64 = raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED;
const EVENT_LOADING: u64 = raw::REDISMODULE_EVENT_LOADING;
const LOADING_ENDED: u64 = raw::REDISMODULE_SUBEVENT_LOADING_ENDED;
const LOADING_FAILED: u64 = raw::REDISMODULE_SUBEVENT_LOADING_FAILED;
const LOADING_RDB: u64 = raw::REDISMODULE_SUBEVENT_LOADING_RDB_START;
const NOW_MASTER: u64 = raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER;

pub fn subscribe(ctx: &Context, handlers: Handlers) {
    let _ = HANDLERS.set(handlers);
    for id in [EVENT_ROLE_CHANGED, EVENT_LOADING] {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        raw::subscribe_to_server_event(ctx.ctx, event, Some(on_server_event));
    }
}

/// SAFETY (callback contract): Redis calls it with the lock held, a context and event data
/// valid for the call (the data's type is the one of `event.id`).
unsafe extern "C" fn on_server_event(
    ctx: *mut raw::RedisModuleCtx,
    event: raw::RedisModuleEvent,
    sub: u64,
    _data: *mut c_void,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(handlers) = HANDLERS.get() else { return };
        // Redis calls server event callbacks on the main thread with a context of its own.
        let ctx = Context::new(ctx);
        match (event.id, sub) {
            (EVENT_LOADING, LOADING_ENDED) => (handlers.ready)(&ctx),
            (EVENT_LOADING, LOADING_FAILED) => {}
            (EVENT_LOADING, sub) => (handlers.loading_started)(sub == LOADING_RDB),
            (EVENT_ROLE_CHANGED, NOW_MASTER) => (handlers.ready)(&ctx),
            _ => {}
        }
    }));
}
