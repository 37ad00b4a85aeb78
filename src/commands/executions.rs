//! RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DUMPEXECUTIONS, RG.DROPEXECUTION.

use redis_module::{Context, RedisResult, RedisString};

use super::{Response, dispatch, refuse_unblockable, text};
use crate::error::GearsError;
use crate::executions::{self, SHARD_ID, State};
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

pub fn rg_getexecution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, args| {
        let (id, mode) = match args {
            [_, id] => (id, None),
            [_, id, mode] => (id, Some(text(mode).to_ascii_uppercase())),
            _ => return Err(GearsError::WrongArity),
        };
        match mode.as_deref() {
            None | Some("SHARD") => {}
            Some("CLUSTER") => return Err(GearsError::NoCluster),
            Some(_) => return Err(GearsError::UnknownSubcommand),
        }
        let (state, report) = executions::report(&text(id))?;
        let report = report.unwrap_or_default();
        let done = matches!(state, State::Done | State::Aborted);
        let errors = if done { report.errors.iter().map(|e| Reply::bulk(e.as_bytes())).collect() } else { Vec::new() };
        // RedisGears lists the steps last to first.
        let steps = report
            .steps
            .iter()
            .rev()
            .map(|s| {
                Reply::Array(vec![
                    Reply::bulk("type"),
                    Reply::bulk(s.kind),
                    Reply::bulk("duration"),
                    Reply::Int(s.duration_ms as i64),
                    Reply::bulk("name"),
                    Reply::bulk(s.name),
                    Reply::bulk("arg"),
                    Reply::bulk(s.arg.as_bytes()),
                ])
            })
            .collect();
        let plan = Reply::Array(vec![
            Reply::bulk("status"),
            Reply::bulk(state.as_str()),
            Reply::bulk("shards_received"),
            Reply::Int(0),
            Reply::bulk("shards_completed"),
            Reply::Int(0),
            Reply::bulk("results"),
            Reply::Int(if done { report.results as i64 } else { -1 }),
            Reply::bulk("errors"),
            Reply::Array(errors),
            Reply::bulk("total_duration"),
            Reply::Int(report.total_ms as i64),
            Reply::bulk("read_duration"),
            Reply::Int(report.read_ms as i64),
            Reply::bulk("steps"),
            Reply::Array(steps),
        ]);
        let shard = Reply::Array(vec![Reply::bulk("shard_id"), Reply::bulk(SHARD_ID), Reply::bulk("execution_plan"), plan]);
        Ok(Response::Reply(Reply::Array(vec![shard])))
    })
}
