//! The module's INFO section through the raw API (one info function per module, replacing the
//! empty one `redis_module!` registers). What goes in it is decided by `commands::info`.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::{Context, raw};

pub type Fields = fn() -> Vec<(&'static CStr, i64)>;

static FIELDS: OnceLock<Fields> = OnceLock::new();

/// Registers the `stats` section, filled by `fields` each time INFO asks.
pub fn register(ctx: &Context, fields: Fields) {
    let _ = FIELDS.set(fields);
    // SAFETY: called from the module's init with its context; the callback is a plain extern fn
    // that lives as long as the module.
    unsafe {
        if let Some(register) = raw::RedisModule_RegisterInfoFunc {
            register(ctx.ctx, Some(info));
        }
    }
}

extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: i32) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let (Some(fields), Some(section), Some(field)) = (
            FIELDS.get(),
            // SAFETY: reading the API table resolved at load; nothing writes it afterwards.
            unsafe { raw::RedisModule_InfoAddSection },
            unsafe { raw::RedisModule_InfoAddFieldLongLong },
        ) else {
            return;
        };
        let fields = fields();
        // SAFETY: `ctx` is the info context Redis passes to this callback; the names are
        // NUL-terminated statics and Redis copies them.
        unsafe {
            section(ctx, c"stats".as_ptr() as *mut _);
            for (name, value) in fields {
                field(ctx, name.as_ptr() as *mut _, value);
            }
        }
    }));
}
