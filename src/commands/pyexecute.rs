//! RG.PYEXECUTE: hands the script to a worker with the client blocked until it is answered.

use redis_module::Context;

use super::parse::ExecuteOptions;
use super::Response;
use crate::error::GearsError;
use crate::executions;
use crate::pool;
use crate::python::interrupt::{Abort, Reason};
use crate::redis::blocked::BlockedClient;
use crate::redis::gil::selected_db;

/// The caller has refused unblockable contexts (before parsing, as RedisGears does).
pub fn pyexecute(ctx: &Context, script: Vec<u8>, options: ExecuteOptions) -> Result<Response, GearsError> {
    let script = String::from_utf8_lossy(&script).into_owned();
    let db = selected_db(ctx);
    // A client that leaves a blocking run takes its execution with it (RedisGears cannot).
    let abort = Abort::new();
    let on_disconnect = abort.clone();
    let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(Reason::Aborted));
    // If the pool is gone the job is dropped, and dropping its client answers it.
    let _ = pool::submit(Box::new(move |runtime| {
        executions::run_script(runtime, &script, db, options.unblocking, client, abort)
    }));
    Ok(Response::Blocked)
}
