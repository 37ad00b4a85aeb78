//! Script bodies that run inline on behalf of the main thread (RG.PYEXECUTE inside MULTI, Lua,
//! or from a client that cannot block): the body and its execution run in one main-thread
//! call (`jobs::call`), so `execute()` goes through the lent context, `atomic()` is already
//! atomic, and `run()` runs its execution inside the call.

use std::rc::Rc;
use std::sync::Arc;

use redis_module::Context;

use crate::error::GearsError;
use crate::executions;
use crate::jobs::call::call_on_home;
use crate::pool;
use crate::python::{Runtime, ScriptOutcome};
use crate::redis::gil::{self};
use crate::reply::Reply;
use crate::stop::Abort;
use crate::store::RunAs;

/// Runs `script` as a new session's body, and the execution it starts, on behalf of the main
/// thread (which holds the lock: `ctx` is the running command's context), and returns the reply
/// a blocking RG.PYEXECUTE would get.
pub fn run_script_inline(ctx: &Context, script: String) -> Result<Reply, GearsError> {
    let home = pool::choose_home()?;
    let db = gil::selected_db(ctx);
    let run_as = crate::redis::acl::client_user(ctx);
    call_on_home(ctx, home, Abort::new(), move |runtime, abort| body_and_execution(runtime, &script, db, run_as, abort))
}

fn body_and_execution(runtime: &Runtime, script: &str, db: i32, run_as: RunAs, abort: Arc<Abort>) -> Reply {
    // An empty script is the round trip alone (what `make bench` measures as S1): no session
    // environment to set up or put back.
    if script.is_empty() {
        return Reply::ok();
    }
    let outcome = runtime.run_script(script, crate::jobs::host::store(db, run_as.clone()), abort.clone(), None, None);
    let reply = match outcome {
        ScriptOutcome::Failed(text) => Reply::Error(text),
        ScriptOutcome::Done => Reply::ok(),
        ScriptOutcome::Run(plan) => {
            // Its caller holds the Redis lock and waits: its records may not wait.
            let key = executions::create(runtime.worker(), false, abort);
            let ended = Rc::new(std::cell::RefCell::new(Reply::results(Vec::new(), &[])));
            let (slot, finished) = (ended.clone(), key.clone());
            let done: crate::jobs::parked::Done = Box::new(move |_, ended, _| {
                *slot.borrow_mut() = ended.reply.clone();
                executions::finish(&finished, ended.reply, ended.report);
            });
            let origin = crate::python::session::Origin { run_as, ..Default::default() };
            crate::jobs::run_now(runtime, plan, db, &key, origin, false, done);
            ended.replace(Reply::Null)
        }
    };
    runtime.end_job();
    // Executions its callbacks started with `run()` do not belong to the call: they run later,
    // on the home, like any other.
    crate::jobs::defer_nested(runtime, db);
    reply
}
