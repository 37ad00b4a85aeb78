//! RG.INNERHOOK: where the command filter sends a command that registrations intercept (hooks,
//! KeysReader registrations with `commands=`). Never intercepted: commands from the replication
//! link or replayed while loading, which run as they were sent.
//!
//! ACLs see the hooked command, not RG.INNERHOOK (`redis::filter` says why there are two inner
//! commands): Redis checks the hooked command's keys, which RG.INNERHOOK declares
//! (`getkeys-api`), and the handler checks the hooked command for the client's user before
//! anything runs.

use redis_module::{Context, ContextFlags, RedisString};

use super::Response;
use crate::error::GearsError;
use crate::redis::acl::{self, RunAs, User};
use crate::redis::gil::selected_db;
use crate::redis::{command_keys, notify};
use crate::registrations::hooks::{self, Chain};
use crate::sessions::hooks as run;

/// `record`: the intercepted command and its arguments; `proven`: the filter sent it;
/// `authenticated`: through the inner command that Redis authenticates.
pub fn hook(ctx: &Context, record: Vec<Vec<u8>>, proven: bool, authenticated: bool) -> Result<Response, GearsError> {
    if !proven {
        return Err(GearsError::HookInternal);
    }
    let flags = ctx.get_flags();
    if flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Ok(Response::Reply(run::run_command(ctx, &record, &RunAs::Module)));
    }
    let run_as = permitted(ctx, &record, authenticated)?;
    if !notify::fires(ctx) {
        return Ok(Response::Reply(run::run_command(ctx, &record, &run_as)));
    }
    let unblockable = flags.intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING);
    let command = String::from_utf8_lossy(&record[0]).to_ascii_lowercase();
    let db = selected_db(ctx);
    let mut keys = || command_keys(ctx, &record);
    let chain = hooks::chain(&command, &mut keys);
    let answered = match chain.split_first() {
        Some((hook, rest)) => {
            let chain = Chain { command, rest: rest.to_vec(), db, run_as: hook.run_as.clone() };
            run::run_hook(ctx, hook.clone(), chain, record, unblockable)?
        }
        // A script's `execute()` is not linked to the registrations that follow its command.
        None if hooks::any_follows(&command) && !crate::redis::call::calling() => {
            run::run_followed(ctx, record, &run_as, unblockable)
        }
        None => Some(run::run_command(ctx, &record, &run_as)),
    };
    Ok(answered.map_or(Response::Blocked, Response::Reply))
}

/// The client's user, once it may run the hooked command: refused as Redis would refuse it
/// (docs/sandbox.md#security-model).
fn permitted(ctx: &Context, record: &[Vec<u8>], authenticated: bool) -> Result<RunAs, GearsError> {
    let run_as = acl::client_user(ctx);
    let RunAs::User(name) = &run_as else { return Ok(run_as) };
    // Through the `no-auth` inner command, a client as the default user may not have
    // authenticated, if the default user needs to: a script's own `execute()` has.
    let in_doubt = !authenticated && &**name == "default" && !crate::redis::call::calling();
    if in_doubt && acl::default_user_needs_auth(ctx) {
        return Err(GearsError::NoAuth);
    }
    let user = User::find(name).ok_or_else(|| GearsError::NoSuchUser(name.to_string()))?;
    acl::check(ctx, &user, &command_keys::strings(record.iter().map(Vec::as_slice)))?;
    Ok(run_as)
}

/// The keys of a command (for hooks' key prefixes).
fn command_keys(ctx: &Context, record: &[Vec<u8>]) -> Vec<Vec<u8>> {
    command_keys::positions(ctx, &command_keys::strings(record.iter().map(Vec::as_slice)))
        .into_iter()
        .map(|(pos, _)| record[pos].clone())
        .collect()
}

/// Answers Redis's question where RG.INNERHOOK's keys are (`getkeys-api`): the hooked command's,
/// after the inner command's name and proof.
pub fn key_positions(ctx: &Context, args: &[RedisString]) {
    const SKIPPED: usize = 2;
    let Some(hooked) = args.get(SKIPPED..) else { return };
    for (pos, flags) in command_keys::positions(ctx, hooked) {
        // SAFETY: called with the context of a keys-position request (checked by the caller).
        unsafe {
            if let Some(at) = redis_module::raw::RedisModule_KeyAtPosWithFlags {
                at(ctx.ctx, (pos + SKIPPED) as std::ffi::c_int, flags);
            }
        }
    }
}
