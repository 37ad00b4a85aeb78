//! The command filter behind hooks: a command some registration intercepts is rewritten to
//! `RG.INNERHOOK <command> <args...>`, which the module runs instead. Redis runs the filter for
//! every command (clients, Lua, modules' RM_Call), on the thread that holds the lock, so it
//! returns at once unless a registration intercepts something.

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::{Context, RedisString, raw};

/// The command the filter sends intercepted commands to.
pub const HOOK_COMMAND: &[u8] = b"rg.innerhook";

/// Whether a command name (any case) is intercepted.
pub type Intercepts = fn(&[u8]) -> bool;

static INTERCEPTS: OnceLock<Intercepts> = OnceLock::new();

thread_local! {
    /// Set while the module runs an intercepted command itself (the original command at the end
    /// of a hook chain): hooks are not applied again to it.
    static BYPASS: Cell<bool> = const { Cell::new(false) };
}

pub fn install(ctx: &Context, intercepts: Intercepts) {
    let _ = INTERCEPTS.set(intercepts);
    // SAFETY: called from the module's load with its context; the filter is a plain function
    // that lives as long as the module.
    unsafe {
        if let Some(register) = raw::RedisModule_RegisterCommandFilter {
            register(ctx.ctx, Some(filter), 0);
        }
    }
}

/// Runs `f` with hooks off on this thread.
pub fn bypassing<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BYPASS.set(self.0);
        }
    }
    let _restore = Restore(BYPASS.replace(true));
    f()
}

extern "C" fn filter(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if BYPASS.get() {
            return;
        }
        let Some(intercepts) = INTERCEPTS.get() else { return };
        // SAFETY: `fctx` is the filter context Redis passes for the duration of this call; the
        // argument strings it returns live as long as it does. The inserted string is handed
        // over to Redis, which frees it with the command's arguments.
        unsafe {
            let (Some(count), Some(get), Some(insert), Some(create)) = (
                raw::RedisModule_CommandFilterArgsCount,
                raw::RedisModule_CommandFilterArgGet,
                raw::RedisModule_CommandFilterArgInsert,
                raw::RedisModule_CreateString,
            ) else {
                return;
            };
            if count(fctx) < 1 {
                return;
            }
            let name = RedisString::string_as_slice(get(fctx, 0));
            if name.eq_ignore_ascii_case(HOOK_COMMAND) || !intercepts(name) {
                return;
            }
            let hook = create(std::ptr::null_mut(), HOOK_COMMAND.as_ptr().cast(), HOOK_COMMAND.len());
            insert(fctx, 0 as c_int, hook);
        }
    }));
}
