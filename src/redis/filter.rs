//! The command filter behind hooks: a command some registration intercepts is rewritten to
//! `RG.INNERHOOK <proof> <command> <args...>`, which the module runs instead. Redis runs the
//! filter for every command (clients, Lua, modules' RM_Call), on the thread that holds the lock,
//! so it returns at once unless a registration intercepts something.
//!
//! `<proof>` is a secret drawn at load: RG.INNERHOOK runs only what the filter sent it, never a
//! command a client wrote (which would step past the ACL checks of the command it names).
//!
//! Which inner command is inserted is about authentication. Redis 7.0 gives module commands no
//! ACL categories, so a user allowed `+@write` but not `+rg.innerhook` would be refused every
//! hooked command: `rg.innerhook` is therefore `no-auth` (Redis checks no command bit for it, but
//! still the hooked command's keys, which it declares), and the module checks the hooked command
//! itself for the client's user. `no-auth` also admits clients that have not authenticated, and a
//! module cannot tell those apart from the default user: so while the default user needs a
//! password, the filter inserts `rg.innerhookauth` instead, which Redis authenticates (and which
//! a user then needs `+rg.innerhookauth` for, as RedisGears 1.2 needs `+rg.innerhook`).

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::{Context, RedisString, raw};

/// The commands the filter sends intercepted commands to (see the module comment).
pub const HOOK_COMMAND: &[u8] = b"rg.innerhook";
pub const HOOK_COMMAND_AUTH: &[u8] = b"rg.innerhookauth";

/// Whether the default user needs a password (or is off), given a context to ask Redis.
pub type NeedsAuth = fn(&Context) -> bool;

/// The secret that proves an RG.INNERHOOK call came from the filter.
static PROOF: OnceLock<Vec<u8>> = OnceLock::new();
static NEEDS_AUTH: OnceLock<NeedsAuth> = OnceLock::new();

/// Whether a command name (any case) is intercepted.
pub type Intercepts = fn(&[u8]) -> bool;

static INTERCEPTS: OnceLock<Intercepts> = OnceLock::new();

thread_local! {
    /// Set while the module runs an intercepted command itself (the original command at the end
    /// of a hook chain): hooks are not applied again to it.
    static BYPASS: Cell<bool> = const { Cell::new(false) };
}

pub fn intercept(ctx: &Context, intercepts: Intercepts, needs_auth: NeedsAuth) {
    let _ = INTERCEPTS.set(intercepts);
    let _ = NEEDS_AUTH.set(needs_auth);
    let mut secret = [0u8; 16];
    let _ = getrandom::fill(&mut secret);
    let _ = PROOF.set(secret.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes());
    // SAFETY: called from the module's load with its context; the filter is a plain function
    // that lives as long as the module.
    unsafe {
        if let Some(register) = raw::RedisModule_RegisterCommandFilter {
            register(ctx.ctx, Some(filter), 0);
        }
    }
}

/// True if `arg` is the filter's proof (the argument after RG.INNERHOOK's name).
pub fn proves(arg: &[u8]) -> bool {
    PROOF.get().is_some_and(|proof| !proof.is_empty() && proof.as_slice() == arg)
}

/// The inner command for an intercepted command now: the `no-auth` one unless a client may be
/// unauthenticated. A script's own `execute()` (RM_Call with a user) is authenticated.
fn inner_command() -> &'static [u8] {
    if super::call::calling() {
        return HOOK_COMMAND;
    }
    let detached = super::gil::detached();
    // Without a context to ask, assume the safe answer.
    let needs_auth =
        detached.is_null() || NEEDS_AUTH.get().is_none_or(|needs| bypassing(|| needs(&Context::new(detached))));
    if needs_auth { HOOK_COMMAND_AUTH } else { HOOK_COMMAND }
}

/// Runs `f` with hooks off on this thread.
pub fn bypassing<R>(f: impl FnOnce() -> R) -> R {
    struct RestoreBypass(bool);
    impl Drop for RestoreBypass {
        fn drop(&mut self) {
            BYPASS.set(self.0);
        }
    }
    let _restore = RestoreBypass(BYPASS.replace(true));
    f()
}

/// SAFETY (callback contract): Redis calls it on the thread holding the lock, with a filter
/// context valid for the call; it is panic-contained.
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
            if name.eq_ignore_ascii_case(HOOK_COMMAND)
                || name.eq_ignore_ascii_case(HOOK_COMMAND_AUTH)
                || !intercepts(name)
            {
                return;
            }
            let Some(proof) = PROOF.get() else { return };
            let inner = inner_command();
            insert(fctx, 0 as c_int, create(std::ptr::null_mut(), proof.as_ptr().cast(), proof.len()));
            insert(fctx, 0 as c_int, create(std::ptr::null_mut(), inner.as_ptr().cast(), inner.len()));
        }
    }));
}
