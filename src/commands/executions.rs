//! RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DUMPEXECUTIONS, RG.DROPEXECUTION, RG.GETEXECUTION.

use redis_module::Context;

use super::{Response, refuse_unblockable};
use crate::error::GearsError;
use crate::executions::{self, State, shard_id};
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;

pub fn get_results(id: &str) -> Result<Response, GearsError> {
    executions::results(id).map(Response::Shared)
}

pub fn get_results_blocking(ctx: &Context, id: &str) -> Result<Response, GearsError> {
    // Only a client that will actually wait must be blockable.
    if matches!(executions::results(id), Err(GearsError::StillRunning)) {
        refuse_unblockable(ctx)?;
    }
    Ok(match executions::wait(id, || BlockedClient::block(ctx))? {
        Some(reply) => Response::Shared(reply),
        None => Response::Blocked,
    })
}

pub fn dump_executions() -> Result<Response, GearsError> {
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
}

pub fn drop(id: &str) -> Result<Response, GearsError> {
    executions::drop_execution(id)?;
    Ok(Response::Reply(Reply::ok()))
}

/// The SHARD layout of docs/commands.md#rggetexecution (the only one outside cluster mode).
pub fn get_execution(id: &str) -> Result<Response, GearsError> {
    let (state, report) = executions::report(id)?;
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
    let shard =
        Reply::Array(vec![Reply::bulk("shard_id"), Reply::bulk(shard_id()), Reply::bulk("execution_plan"), plan]);
    Ok(Response::Reply(Reply::Array(vec![shard])))
}
