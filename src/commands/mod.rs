//! Command handlers. Every RG.* command enters through `rg_command`: its arguments are parsed
//! into a `Command` (`parse`, no Redis involved), run by a handler of its family, and the result
//! is written as the reply. Panics are contained here.

mod executions;
mod hook;
pub mod info;
mod management;
pub mod parse;
mod pyexecute;
mod registrations;
mod trigger;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use redis_module::{Context, ContextFlags, RedisResult, RedisString, RedisValue};

use crate::error::GearsError;
use crate::redis::reply::write;
use crate::reply::Reply;
use parse::Command;

pub enum Response {
    Reply(Reply),
    Shared(Arc<Reply>),
    /// The client was blocked; it is answered later.
    Blocked,
}

pub fn rg_command(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    // Set once the reply starts: after a panic past that point, another reply would corrupt the
    // client's stream.
    let mut replying = false;
    let answered = catch_unwind(AssertUnwindSafe(|| {
        if crate::redis::reply::keys_position_request(ctx) {
            return hook::key_positions(ctx, &args);
        }
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_slice().to_vec()).collect();
        // RG.PYEXECUTE refuses an unblockable context before it looks at its arguments.
        let response = if args.first().is_some_and(|name| name.eq_ignore_ascii_case(b"rg.pyexecute")) {
            refuse_unblockable(ctx).and_then(|()| parse::parse(&args)).and_then(|command| answer(ctx, command))
        } else {
            parse::parse(&args).and_then(|command| answer(ctx, command))
        };
        replying = true;
        respond(ctx, response);
    }));
    if answered.is_err() && !replying {
        let internal = Reply::Error(GearsError::Internal("see the Redis log".to_owned()).to_string());
        let _ = catch_unwind(AssertUnwindSafe(|| write(&internal, ctx)));
    }
    Ok(RedisValue::NoReply)
}

fn respond(ctx: &Context, response: Result<Response, GearsError>) {
    match response {
        Ok(Response::Reply(reply)) => write(&reply, ctx),
        Ok(Response::Shared(reply)) => write(&reply, ctx),
        Ok(Response::Blocked) => {}
        Err(GearsError::WrongArity) => crate::redis::reply::wrong_arity(ctx),
        Err(err) => write(&Reply::Error(err.to_string()), ctx),
    }
}

fn answer(ctx: &Context, command: Command) -> Result<Response, GearsError> {
    match command {
        Command::PyExecute { script, options } => pyexecute::pyexecute(ctx, script, options),
        Command::GetResults { id } => executions::get_results(&id),
        Command::GetResultsBlocking { id } => executions::get_results_blocking(ctx, &id),
        Command::DumpExecutions => executions::dump_executions(),
        Command::DropExecution { id } => executions::drop(&id),
        Command::GetExecution { id, cluster } => executions::get_execution(ctx, &id, cluster),
        Command::AbortExecution { id } => management::abort_execution(ctx, &id),
        Command::ConfigGet { names } => management::get_config(&names),
        Command::ConfigSet { pairs, dangling } => management::set_config(&pairs, dangling.as_deref()),
        Command::PyStats => management::py_stats(),
        Command::TestSync { script } => pyexecute::test_sync(ctx, script),
        Command::DumpRegistrations => registrations::dump_registrations(),
        Command::Unregister { id, abort_pending } => registrations::unregister_command(ctx, &id, abort_pending),
        Command::Pause { ids, pause } => registrations::pause_registrations(ctx, &ids, pause),
        Command::ClearRegistrationsStats => registrations::clear_stats(ctx),
        Command::Trigger { args } => trigger::trigger(ctx, args),
        Command::PyDumpSessions(options) => registrations::dump_sessions(&options),
        Command::PyProfile { reset, session } => registrations::profile(&session, reset),
        Command::Hook { record, proven, authenticated } => hook::hook(ctx, record, proven, authenticated),
        Command::InnerRegister { blob } => registrations::inner_register(ctx, &blob),
        Command::InnerUnregister { id } => registrations::inner_unregister(ctx, &id),
        Command::InfoCluster => {
            crate::cluster::refresh(ctx);
            Ok(Response::Reply(crate::cluster::info_reply()))
        }
        Command::RefreshCluster => {
            crate::cluster::refresh(ctx);
            Ok(Response::Reply(Reply::ok()))
        }
        Command::Fixed(which) => management::fixed_reply(which),
    }
}

/// Refuses commands that block where Redis cannot block a client: inside MULTI, from Lua, or
/// from a module's RM_Call (including a script's own `execute()`). Checked before any side effect.
fn refuse_unblockable(ctx: &Context) -> Result<(), GearsError> {
    if ctx.get_flags().intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING) {
        return Err(GearsError::BlockingNotAllowed);
    }
    Ok(())
}
