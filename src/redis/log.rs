//! Writing to the Redis log from any thread. The message is passed as a `%s` argument, never as
//! the format string, so script text with `%` in it cannot reach printf.

use std::ffi::CString;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::{Context, raw};

/// A detached context of the module: RM_Log reads only the module's name from it (for the
/// `<rg>` prefix), so it is safe on any thread without the lock.
static LOG_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(ptr::null_mut());

pub fn init_log(ctx: &Context) {
    // SAFETY: reading the API table that RedisModule_Init filled before init ran; `ctx` is the
    // module's load context, and the detached context it gives is never freed.
    if let Some(detach) = unsafe { raw::RedisModule_GetDetachedThreadSafeContext } {
        // SAFETY: `ctx` is the load context, valid for this call.
        LOG_CTX.store(unsafe { detach(ctx.ctx) }, Ordering::Release);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl Level {
    fn as_cstr(self) -> &'static std::ffi::CStr {
        match self {
            Level::Debug => c"debug",
            Level::Verbose => c"verbose",
            Level::Notice => c"notice",
            Level::Warning => c"warning",
        }
    }
}

pub fn log(level: Level, message: &str) {
    // SAFETY: the API table is written once, at load, before any thread can log.
    let Some(log) = (unsafe { raw::RedisModule_Log }) else {
        return; // outside Redis (unit tests): nowhere to write
    };
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: RM_Log only reads the module's name from the context (see LOG_CTX); the format is a
    // static "%s" and `text` a NUL-terminated string that lives across the call.
    unsafe { log(LOG_CTX.load(Ordering::Acquire), level.as_cstr().as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
}

pub fn warning(message: &str) {
    log(Level::Warning, message);
}

pub fn notice(message: &str) {
    log(Level::Notice, message);
}
