//! Blocked clients, through the raw API: redis-module's wrapper has no reply callback, so a reply
//! built on a worker would be serialised on that worker once per waiter.
//!
//! Here a worker hands an `Arc<Reply>` to `UnblockClient`; Redis then calls `reply_callback` on
//! the main thread, which writes it. If the client disconnected meanwhile, Redis skips the reply
//! callback and still calls `free_privdata`, so nothing leaks either way. Every blocked client is
//! unblocked exactly once: by `reply`, or by `Drop` with an error if its owner went away.
//!
//! The time a client spends blocked is measured for Redis (`BlockedClientMeasureTimeStart/End`),
//! so SLOWLOG and the command statistics count a long execution as long, as RedisGears does, and
//! the wait is reported to the latency monitor as the `rg-execution` event.

use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use redis_module::{Context, RedisValue, raw};

use crate::reply::Reply;
use crate::unpoisoned::Unpoisoned;

pub struct BlockedClient {
    bc: *mut raw::RedisModuleBlockedClient,
    since: Instant,
}

/// The private data a worker hands to `UnblockClient`.
struct Unblocked {
    reply: Arc<Reply>,
    waited: Duration,
}

/// The latency monitor's name for the time an RG command kept its client blocked.
const LATENCY_EVENT: &std::ffi::CStr = c"rg-execution";
const LATENCY_THRESHOLD_CONFIG: &str = "latency-monitor-threshold";

/// `latency-monitor-threshold` in ms (0: monitor off), kept current by a config-change
/// subscription. Redis 7.0's `LatencyAddSample` records any sample at or above the threshold, so
/// with the monitor off it would record everything; the module checks the threshold itself.
static LATENCY_THRESHOLD_MS: AtomicI64 = AtomicI64::new(0);
static WATCH_LATENCY_THRESHOLD: Once = Once::new();

// SAFETY: the handle is only passed to UnblockClient and the measurement calls, which Redis
// documents as thread-safe.
unsafe impl Send for BlockedClient {}

type OnDisconnect = Box<dyn FnOnce() + Send>;

/// What to do when a blocked client disconnects, by blocked-client handle.
static ON_DISCONNECT: LazyLock<Mutex<HashMap<usize, OnDisconnect>>> = LazyLock::new(Default::default);

fn on_disconnect() -> MutexGuard<'static, HashMap<usize, OnDisconnect>> {
    ON_DISCONNECT.locked()
}

impl BlockedClient {
    /// Blocks the client of the running command, with no timeout.
    ///
    /// The caller must have checked that blocking is allowed here (not MULTI, Lua or RM_Call).
    pub fn block(ctx: &Context) -> BlockedClient {
        // SAFETY: `ctx` is the live context of the command being run on the main thread, and the
        // callbacks match the signatures Redis calls them with.
        let bc = unsafe {
            raw::RedisModule_BlockClient.unwrap()(ctx.ctx, Some(reply_callback), None, Some(free_privdata), 0)
        };
        // SAFETY: `bc` was just returned by BlockClient and is not unblocked yet.
        unsafe {
            if let Some(start) = raw::RedisModule_BlockedClientMeasureTimeStart {
                start(bc);
            }
        }
        BlockedClient { bc, since: Instant::now() }
    }

    /// Blocks the client, and runs `f` if it disconnects before it is answered.
    pub fn block_watching(ctx: &Context, f: impl FnOnce() + Send + 'static) -> BlockedClient {
        let client = BlockedClient::block(ctx);
        on_disconnect().insert(client.bc as usize, Box::new(f));
        // SAFETY: `client.bc` is blocked and not unblocked yet; `disconnected` has the signature
        // Redis calls it with.
        unsafe {
            if let Some(set) = raw::RedisModule_SetDisconnectCallback {
                set(client.bc, Some(disconnected));
            }
        }
        client
    }

    pub fn reply(self, reply: Arc<Reply>) {
        self.unblock(reply);
        std::mem::forget(self);
    }

    fn unblock(&self, reply: Arc<Reply>) {
        on_disconnect().remove(&(self.bc as usize));
        let data = Box::into_raw(Box::new(Unblocked { reply, waited: self.since.elapsed() })) as *mut c_void;
        // SAFETY: `self.bc` is still blocked: it is unblocked only here, once (`reply` forgets
        // `self`, so `Drop` does not come back). Ending the measurement only writes to the handle,
        // and UnblockClient, documented as thread-safe, publishes that write to the main thread.
        // Redis owns `data` from here and gives it back to `reply_callback` and `free_privdata`.
        unsafe {
            if let Some(end) = raw::RedisModule_BlockedClientMeasureTimeEnd {
                end(self.bc);
            }
            raw::RedisModule_UnblockClient.unwrap()(self.bc, data);
        }
    }
}

impl Drop for BlockedClient {
    fn drop(&mut self) {
        self.unblock(Arc::new(Reply::Error("ERR rustgears: the execution ended without a reply".to_owned())));
    }
}

/// SAFETY (callback contract): Redis calls it with the lock held, once, for a client blocked
/// by `block`; `bc` is used only as a key.
extern "C" fn disconnected(_ctx: *mut raw::RedisModuleCtx, bc: *mut raw::RedisModuleBlockedClient) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let f = on_disconnect().remove(&(bc as usize));
        if let Some(f) = f {
            f();
        }
    }));
}

/// SAFETY (callback contract): Redis calls it with the lock held and a context whose blocked
/// client's private data is the `Unblocked` that `unblock` boxed.
extern "C" fn reply_callback(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Redis calls this on the main thread with the context of the unblocked client;
        // its private data is the `Unblocked` that `unblock` boxed, freed only later by
        // `free_privdata`.
        unsafe {
            let data = raw::RedisModule_GetBlockedClientPrivateData.unwrap()(ctx) as *const Unblocked;
            if let Some(unblocked) = data.as_ref() {
                super::reply::write_raw(&unblocked.reply, ctx);
                add_latency_sample(ctx, unblocked.waited);
            }
        }
    }));
    raw::Status::Ok as c_int
}

/// Reports a wait to the latency monitor if it reaches the threshold. `ctx` is the main thread's
/// (the latency monitor is not thread-safe) and belongs to this module.
fn add_latency_sample(ctx: *mut raw::RedisModuleCtx, waited: Duration) {
    WATCH_LATENCY_THRESHOLD.call_once(|| watch_latency_threshold(ctx));
    let threshold = LATENCY_THRESHOLD_MS.load(Ordering::Relaxed);
    let ms = i64::try_from(waited.as_millis()).unwrap_or(i64::MAX);
    if threshold == 0 || ms < threshold {
        return;
    }
    // SAFETY: on the main thread (see above); the event name is a static C string.
    unsafe {
        if let Some(add) = raw::RedisModule_LatencyAddSample {
            add(LATENCY_EVENT.as_ptr(), ms);
        }
    }
}

/// Reads the threshold now and subscribes to config changes to re-read it. Done on the first
/// reply rather than at load, so that this file alone owns the latency event.
fn watch_latency_threshold(ctx: *mut raw::RedisModuleCtx) {
    read_latency_threshold(ctx);
    let event = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_CONFIG, dataver: 1 };
    // SAFETY: `ctx` is a live context of this module on the main thread; `config_changed` has the
    // signature Redis calls event callbacks with.
    unsafe {
        if let Some(subscribe) = raw::RedisModule_SubscribeToServerEvent {
            subscribe(ctx, event, Some(config_changed));
        }
    }
}

fn read_latency_threshold(ctx: *mut raw::RedisModuleCtx) {
    let reply = Context::new(ctx).call("CONFIG", &["GET", LATENCY_THRESHOLD_CONFIG]);
    let value = match reply {
        Ok(RedisValue::Array(pair)) => pair.into_iter().nth(1),
        _ => None,
    };
    let threshold = match value {
        Some(RedisValue::BulkString(s) | RedisValue::SimpleString(s)) => s.parse().ok(),
        Some(RedisValue::BulkRedisString(s)) => s.parse_integer().ok(),
        _ => None,
    };
    if let Some(threshold) = threshold {
        LATENCY_THRESHOLD_MS.store(threshold, Ordering::Relaxed);
    }
}

/// SAFETY (callback contract): Redis calls it with the lock held, a context and config-change
/// data valid for the call.
extern "C" fn config_changed(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: for the config event Redis passes a `RedisModuleConfigChange` whose
        // `config_names` holds `num_changes` NUL-terminated names, valid during this call.
        let names = unsafe {
            let change = &*(data as *const raw::RedisModuleConfigChange);
            std::slice::from_raw_parts(change.config_names, change.num_changes as usize)
        };
        // SAFETY: see above.
        let ours = names
            .iter()
            .any(|&name| unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes() == LATENCY_THRESHOLD_CONFIG.as_bytes());
        if ours {
            read_latency_threshold(ctx);
        }
    }));
}

/// SAFETY (callback contract): Redis calls it once per unblock, with the private data given to
/// RM_UnblockClient (null or a boxed `Unblocked`).
extern "C" fn free_privdata(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: non-null private data is always the `Unblocked` boxed by `unblock`, and Redis
        // calls this once per unblock.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(data as *mut Unblocked) })));
    }
}
