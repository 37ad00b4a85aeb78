//! RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DUMPEXECUTIONS, RG.DROPEXECUTION, RG.GETEXECUTION.

use redis_module::Context;

use super::{Response, refuse_unblockable};
use crate::error::GearsError;
use crate::executions;
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
    crate::jobs::distributed::drop_everywhere(id);
    Ok(Response::Reply(Reply::ok()))
}

/// RG.GETEXECUTION: this shard's entry (SHARD), or every shard's (CLUSTER, gathered from the
/// masters: docs/commands.md#cluster-mode).
pub fn get_execution(ctx: &Context, id: &str, cluster: bool) -> Result<Response, GearsError> {
    if cluster && crate::cluster::topology().is_none() {
        return Err(GearsError::NoCluster);
    }
    let entry = executions::plan_entry(id)?;
    if !cluster {
        return Ok(Response::Reply(Reply::Array(vec![entry])));
    }
    refuse_unblockable(ctx)?;
    crate::jobs::distributed::gather_plans(BlockedClient::block(ctx), id, entry);
    Ok(Response::Blocked)
}
