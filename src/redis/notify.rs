//! Keyspace notifications. Redis 7.0 cannot unsubscribe, so the module subscribes once, at load,
//! to every event (key misses included), and `registrations` decides in Rust who listens.
//!
//! Redis does not call a subscriber back for events caused while its callback runs (it is
//! marked active): the writes of a `sync` execution an event started fire no registration, as
//! in RedisGears, so a registration that writes a key it matches fires once per client write.

use std::ffi::{CStr, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::key::KeyFlags;
use redis_module::{Context, ContextFlags, KeyType, NotifyEvent, RedisString, raw};

/// What handles an event: given the context of the write (the event's database selected), the
/// event's name and the key.
pub type Handler = fn(&Context, &[u8], &[u8]);

static HANDLER: OnceLock<Handler> = OnceLock::new();

thread_local! {
    /// Set while the module reads keys itself (a key's type, a record's value): the key misses
    /// that causes are not events of anyone's.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (reading keys) without the key-miss events it causes reaching registrations.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let outer = QUIET.replace(true);
    let result = f();
    QUIET.set(outer);
    result
}

pub fn subscribe_keyspace(ctx: &Context, handler: Handler) {
    let _ = HANDLER.set(handler);
    let events = NotifyEvent::ALL | NotifyEvent::MISSED;
    // SAFETY: called from the module's load, on the main thread, with its own context; the
    // callbacks are plain functions that live as long as the module.
    unsafe {
        if let Some(subscribe) = raw::RedisModule_SubscribeToKeyspaceEvents {
            subscribe(ctx.ctx, events.bits(), Some(on_notification));
        }
    }
}

/// SAFETY (callback contract): Redis calls it with the lock held, a context valid for the call
/// and NUL-terminated event name and key string valid for the call.
extern "C" fn on_notification(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if QUIET.get() {
        return 0;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(handler) = HANDLER.get() else { return };
        // SAFETY: Redis passes a NUL-terminated event name and a key string that live for the
        // duration of the callback, which is where they are used.
        let event = unsafe { CStr::from_ptr(event) }.to_bytes();
        let key = RedisString::string_as_slice(key);
        handler(&Context::new(ctx), event, key);
    }));
    0
}

/// Whether registrations fire here now: on a master that is not loading data.
pub fn fires(ctx: &Context) -> bool {
    let flags = ctx.get_flags();
    flags.contains(ContextFlags::MASTER) && !flags.intersects(ContextFlags::LOADING)
}

/// A key's type as KeysReader registrations' `keyTypes` name them.
pub fn key_type(ctx: &Context, key: &[u8]) -> &'static str {
    let name = RedisString::create_from_slice(std::ptr::null_mut(), key);
    let flags = KeyFlags::NONOTIFY | KeyFlags::NOSTATS | KeyFlags::NOTOUCH;
    match quietly(|| ctx.open_key_with_flags(&name, flags).key_type()) {
        KeyType::Empty => "empty",
        KeyType::String => "string",
        KeyType::List => "list",
        KeyType::Hash => "hash",
        KeyType::Set => "set",
        KeyType::ZSet => "zset",
        KeyType::Module => "module",
        KeyType::Stream => "stream",
    }
}
