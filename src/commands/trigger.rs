//! RG.TRIGGER and RG.TRIGGERONKEY: run a CommandReader registration's execution on the
//! caller's arguments and answer with its results (or its first error).

use redis_module::{Context, ContextFlags};

use super::Response;
use crate::error::GearsError;
use crate::executions::Wants;
use crate::redis::gil::selected_db;
use crate::redis::notify;
use crate::registrations::{self, Mode};
use crate::sessions::dispatch::{self, Caller, Input};

/// `args`: the trigger's name and its arguments (for RG.TRIGGERONKEY the key is the first).
pub fn trigger(ctx: &Context, args: Vec<Vec<u8>>) -> Result<Response, GearsError> {
    let name = String::from_utf8_lossy(&args[0]).into_owned();
    let registration = registrations::triggers::by_name(&name).ok_or(GearsError::NoSuchTrigger)?;
    let unblockable = ctx.get_flags().intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING);
    let sync = registration.spec.mode == Mode::Sync;
    if !notify::fires(ctx) || (!sync && unblockable) {
        return Err(GearsError::NonSyncNotAllowed);
    }
    let caller = if sync { Caller::Inline(Wants::Trigger) } else { Caller::Block(Wants::Trigger) };
    let db = selected_db(ctx);
    Ok(match dispatch::dispatch(ctx, registration, Input::Command(args), db, caller) {
        Some(reply) => Response::Reply(reply),
        None => Response::Blocked,
    })
}
