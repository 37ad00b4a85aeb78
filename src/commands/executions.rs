//! RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DUMPEXECUTIONS, RG.DROPEXECUTION.

use redis_module::{Context, RedisResult, RedisString};

use super::{Response, dispatch, refuse_unblockable, text};
use crate::error::GearsError;
use crate::executions;
use crate::redis::blocked::BlockedClient;
use crate::redis::reply::Reply;

pub fn rg_getresults(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, args| {
        let id = args.get(1).ok_or(GearsError::WrongArity)?;
        let reply = executions::results(&text(id))?;
        Ok(Response::Reply((*reply).clone()))
    })
}

pub fn rg_getresultsblocking(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |ctx, args| {
        let [_, id] = args else { return Err(GearsError::WrongArity) };
        let id = text(id);
        // Only a client that will actually wait must be blockable.
        if matches!(executions::results(&id), Err(GearsError::StillRunning)) {
            refuse_unblockable(ctx)?;
        }
        match executions::wait(&id, || BlockedClient::block(ctx))? {
            Some(reply) => Ok(Response::Reply((*reply).clone())),
            None => Ok(Response::Blocked),
        }
    })
}

pub fn rg_dumpexecutions(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, _| {
        let entries = executions::dump()
            .into_iter()
            .map(|e| {
                Reply::Array(vec![
                    Reply::bulk("executionId"),
                    Reply::bulk(e.id),
                    Reply::bulk("status"),
                    Reply::bulk(e.state.as_str()),
                    Reply::bulk("registered"),
                    Reply::Int(e.registered as i64),
                ])
            })
            .collect();
        Ok(Response::Reply(Reply::Array(entries)))
    })
}

pub fn rg_dropexecution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, args| {
        let [_, id] = args else { return Err(GearsError::WrongArity) };
        executions::drop_execution(&text(id))?;
        Ok(Response::Reply(Reply::ok()))
    })
}
