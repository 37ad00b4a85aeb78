//! Hooked and followed commands: a hook chain's execution and its `call_next`, a command run
//! with the KeysReader registrations that follow it (`commands=`) linked to its events.

use std::sync::Arc;

use redis_module::Context;

use super::dispatch::{Caller, Input, dispatch};
use crate::error::GearsError;
use crate::executions::Wants;
use crate::redis::blocked::BlockedClient;
use crate::redis::gil::with_gil;
use crate::registrations::hooks::{Chain, CommandLink};
use crate::registrations::{Mode, Registration};
use crate::reply::Reply;
use crate::store::RunAs;

/// A hooked command: its newest applicable hook runs on the command's record (`sync` inline,
/// else with the client blocked); `call_next` walks `chain`. `None`: the client was blocked.
pub fn run_hook(
    ctx: &Context,
    hook: Arc<Registration>,
    chain: Chain,
    record: Vec<Vec<u8>>,
    unblockable: bool,
) -> Result<Option<Reply>, GearsError> {
    let sync = hook.spec.mode == Mode::Sync;
    if !sync && unblockable {
        return Err(GearsError::NonSyncNotAllowed);
    }
    let db = chain.db;
    let caller = if sync { Caller::Inline(Wants::Hook) } else { Caller::Block(Wants::Hook) };
    Ok(dispatch(ctx, hook, Input::Hook { record, chain: Arc::new(chain) }, db, caller))
}

/// A hook's `call_next(*args)`: the next hook of the chain, or the command itself (which hooks
/// do not intercept again), run by the thread that holds the lock for this execution.
pub fn call_next(chain: &Chain, args: Vec<Vec<u8>>) -> Reply {
    let mut record = vec![chain.command.clone().into_bytes()];
    record.extend(args);
    let db = chain.db;
    with_gil(db, |ctx| match chain.rest.split_first() {
        Some((next, rest)) => {
            let chain = Chain { command: chain.command.clone(), rest: rest.to_vec(), db, run_as: next.run_as.clone() };
            let input = Input::Hook { record, chain: Arc::new(chain) };
            dispatch(ctx, next.clone(), input, db, Caller::Inline(Wants::Hook))
                .unwrap_or_else(|| Reply::Error(GearsError::Internal("call_next did not run".to_owned()).to_string()))
        }
        // The command itself: registrations that follow it see its events; the hook's caller
        // waits for the hook, not for them.
        None => {
            let (reply, link) = follow(ctx, record, &chain.run_as);
            link.take_reply(reply)
        }
    })
}

/// Runs a command as it was sent, with hooks off (the end of a hook chain, a command followed by
/// registrations, one replayed from the AOF or the replication link).
/// `run_as`: whom it runs as (the client that sent it, the hook's owner for `call_next`).
pub fn run_command(ctx: &Context, record: &[Vec<u8>], run_as: &RunAs) -> Reply {
    let Some((command, args)) = record.split_first() else { return Reply::Null };
    let command = String::from_utf8_lossy(command).into_owned();
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    crate::redis::filter::bypassing(|| crate::redis::call::call(ctx, run_as, &command, &args))
}

/// Runs a command with the registrations that follow it linked to the events it causes.
fn follow(ctx: &Context, record: Vec<Vec<u8>>, run_as: &RunAs) -> (Reply, Arc<CommandLink>) {
    let link = CommandLink::new(record);
    let outer = LINK.with_borrow_mut(|l| l.replace(link.clone()));
    let reply = run_command(ctx, &link.command, run_as);
    LINK.set(outer);
    (reply, link)
}

/// A command some KeysReader registrations follow (`commands=`): runs it; the events it causes
/// reach those registrations linked to it. `sync` ones run inside and may override the reply;
/// the client waits for the others (unless it cannot block: MULTI, Lua). `None`: it waits.
pub fn run_followed(ctx: &Context, record: Vec<Vec<u8>>, run_as: &RunAs, unblockable: bool) -> Option<Reply> {
    let (original, link) = follow(ctx, record, run_as);
    if unblockable || !link.awaited() {
        return Some(link.take_reply(original));
    }
    link.park(BlockedClient::block(ctx), original);
    None
}

thread_local! {
    /// The command a KeysReader registration follows, while the module runs it (`run_followed`).
    static LINK: std::cell::RefCell<Option<Arc<CommandLink>>> = const { std::cell::RefCell::new(None) };
}

/// The command being run with its followers linked (`run_followed`), if any.
pub(super) fn followed() -> Option<Arc<CommandLink>> {
    LINK.with_borrow(Clone::clone)
}
