//! Blocked clients, through the raw API: redis-module's wrapper has no reply callback, so a reply
//! built on a worker would be serialised on that worker once per waiter.
//!
//! Here a worker hands an `Arc<Reply>` to `UnblockClient`; Redis then calls `reply_callback` on
//! the main thread, which writes it. If the client disconnected meanwhile, Redis skips the reply
//! callback and still calls `free_privdata`, so nothing leaks either way. Every blocked client is
//! unblocked exactly once: by `reply`, or by `Drop` with an error if its owner went away.

use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use redis_module::{Context, raw};

use crate::reply::Reply;

pub struct BlockedClient {
    bc: *mut raw::RedisModuleBlockedClient,
}

// The handle is only passed to UnblockClient, which Redis documents as thread-safe.
unsafe impl Send for BlockedClient {}

type OnDisconnect = Box<dyn FnOnce() + Send>;

/// What to do when a blocked client disconnects, by blocked-client handle.
static ON_DISCONNECT: LazyLock<Mutex<HashMap<usize, OnDisconnect>>> = LazyLock::new(Default::default);

fn on_disconnect() -> MutexGuard<'static, HashMap<usize, OnDisconnect>> {
    ON_DISCONNECT.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BlockedClient {
    /// Blocks the client of the running command, with no timeout.
    ///
    /// The caller must have checked that blocking is allowed here (not MULTI, Lua or RM_Call).
    pub fn block(ctx: &Context) -> BlockedClient {
        let bc = unsafe {
            raw::RedisModule_BlockClient.unwrap()(ctx.ctx, Some(reply_callback), None, Some(free_privdata), 0)
        };
        BlockedClient { bc }
    }

    /// Blocks the client, and runs `f` if it disconnects before it is answered.
    pub fn block_watching(ctx: &Context, f: impl FnOnce() + Send + 'static) -> BlockedClient {
        let client = BlockedClient::block(ctx);
        on_disconnect().insert(client.bc as usize, Box::new(f));
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
        let data = Box::into_raw(Box::new(reply)) as *mut c_void;
        unsafe { raw::RedisModule_UnblockClient.unwrap()(self.bc, data) };
    }
}

impl Drop for BlockedClient {
    fn drop(&mut self) {
        self.unblock(Arc::new(Reply::Error("ERR rustgears: the execution ended without a reply".to_owned())));
    }
}

extern "C" fn disconnected(_ctx: *mut raw::RedisModuleCtx, bc: *mut raw::RedisModuleBlockedClient) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let f = on_disconnect().remove(&(bc as usize));
        if let Some(f) = f {
            f();
        }
    }));
}

extern "C" fn reply_callback(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
        let data = raw::RedisModule_GetBlockedClientPrivateData.unwrap()(ctx) as *const Arc<Reply>;
        if let Some(reply) = data.as_ref() {
            super::reply::write_raw(reply, ctx);
        }
    }));
    raw::Status::Ok as c_int
}

extern "C" fn free_privdata(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(data as *mut Arc<Reply>) })));
    }
}
