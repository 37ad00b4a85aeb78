//! Keyspace notifications. Redis 7.0 cannot unsubscribe, so the module subscribes once, at load,
//! to every event (key misses included), and `registrations` decides in Rust who listens.
//!
//! Redis does not call a subscriber back for events caused while its callback runs (it is
//! marked active), but a `sync` execution's writes, made inside the callback, must reach
//! registrations too. So the module subscribes `DEPTH` times: an event goes to the first
//! subscriber that is not active; the others, called after it with the same event, skip it.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::key::KeyFlags;
use redis_module::{Context, ContextFlags, KeyType, NotifyEvent, RedisString, raw};

/// What handles an event: given the context of the write (the event's database selected), the
/// event's name and the key.
pub type Handler = fn(&Context, &[u8], &[u8]);

static HANDLER: OnceLock<Handler> = OnceLock::new();

/// How deep events caused by `sync` executions' writes nest.
pub const DEPTH: usize = 16;

type Callback = extern "C" fn(*mut raw::RedisModuleCtx, c_int, *const c_char, *mut raw::RedisModuleString) -> c_int;

const SUBSCRIBERS: [Callback; DEPTH] = [
    on_event::<0>,
    on_event::<1>,
    on_event::<2>,
    on_event::<3>,
    on_event::<4>,
    on_event::<5>,
    on_event::<6>,
    on_event::<7>,
    on_event::<8>,
    on_event::<9>,
    on_event::<10>,
    on_event::<11>,
    on_event::<12>,
    on_event::<13>,
    on_event::<14>,
    on_event::<15>,
];

/// An event being delivered: its name and key pointers, the same for every subscriber it is
/// delivered to.
type Delivery = (usize, usize);

thread_local! {
    /// Set while the module reads keys itself (a key's type, a record's value): the key misses
    /// that causes are not events of anyone's.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Events handled and still being delivered to the later subscribers, innermost last. The
    /// subscribers active are always the first few (an event goes to the first one that is not),
    /// so the last subscriber always sees an event, and drops it from here.
    static HANDLED: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` (reading keys) without the key-miss events it causes reaching registrations.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let outer = QUIET.replace(true);
    let result = f();
    QUIET.set(outer);
    result
}

pub fn subscribe(ctx: &Context, handler: Handler) {
    let _ = HANDLER.set(handler);
    let events = NotifyEvent::ALL | NotifyEvent::MISSED;
    // SAFETY: called from the module's load, on the main thread, with its own context; the
    // callbacks are plain functions that live as long as the module.
    unsafe {
        if let Some(subscribe) = raw::RedisModule_SubscribeToKeyspaceEvents {
            for callback in SUBSCRIBERS {
                subscribe(ctx.ctx, events.bits(), Some(callback));
            }
        }
    }
}

extern "C" fn on_event<const I: usize>(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if QUIET.get() {
        return 0;
    }
    let delivery = (event as usize, key as usize);
    let handled = HANDLED.with_borrow_mut(|handled| {
        let seen = handled.last() == Some(&delivery);
        if seen && I == DEPTH - 1 {
            handled.pop();
        }
        seen
    });
    if handled {
        return 0;
    }
    if I < DEPTH - 1 {
        HANDLED.with_borrow_mut(|handled| handled.push(delivery));
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
