//! RG.INNERHOOK: where the command filter sends a command that registrations intercept (hooks,
//! KeysReader registrations with `commands=`). Never intercepted: commands from the replication
//! link or replayed while loading, which run as they were sent.

use redis_module::{Context, ContextFlags};

use super::Response;
use crate::error::GearsError;
use crate::redis::gil::selected_db;
use crate::redis::notify;
use crate::registrations::hooks::{self, Chain};
use crate::reply::Reply;
use crate::sessions::registered;

/// `record`: the intercepted command and its arguments.
pub fn hook(ctx: &Context, record: Vec<Vec<u8>>) -> Result<Response, GearsError> {
    let flags = ctx.get_flags();
    if flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) || !notify::fires(ctx) {
        return Ok(Response::Reply(registered::run_command(ctx, &record)));
    }
    let unblockable = flags.intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING);
    let command = String::from_utf8_lossy(&record[0]).to_ascii_lowercase();
    let db = selected_db(ctx);
    let mut keys = || command_keys(ctx, &record);
    let chain = hooks::chain(&command, &mut keys);
    let answered = match chain.split_first() {
        Some((hook, rest)) => {
            let chain = Chain { command, rest: rest.to_vec(), db };
            registered::run_hook(ctx, hook.clone(), chain, record, unblockable)?
        }
        // A script's `execute()` is not linked to the registrations that follow its command.
        None if hooks::followed(&command) && !crate::redis::call::calling() => {
            registered::run_followed(ctx, record, unblockable)
        }
        None => Some(registered::run_command(ctx, &record)),
    };
    Ok(answered.map_or(Response::Blocked, Response::Reply))
}

/// The keys of a command, by its key positions (`COMMAND GETKEYS`).
fn command_keys(ctx: &Context, record: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut getkeys = vec![b"GETKEYS".to_vec()];
    getkeys.extend(record.iter().cloned());
    getkeys.insert(0, b"COMMAND".to_vec());
    match registered::run_command(ctx, &getkeys) {
        Reply::Array(keys) => keys
            .into_iter()
            .filter_map(|k| match k {
                Reply::Bulk(k) => Some(k),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
