//! Command handlers: parse arguments, call the layer below, reply. Every handler runs inside
//! `dispatch`, which contains panics and writes the reply.

pub mod executions;
pub mod management;
pub mod pyexecute;

use std::panic::{AssertUnwindSafe, catch_unwind};

use redis_module::{Context, ContextFlags, RedisResult, RedisString, RedisValue, raw};

use crate::error::GearsError;
use crate::redis::reply::Reply;

pub enum Response {
    Reply(Reply),
    /// The client was blocked; it is answered later.
    Blocked,
}

type Handler = fn(&Context, &[RedisString]) -> Result<Response, GearsError>;

pub fn dispatch(ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, &args))) {
        Ok(Ok(Response::Reply(reply))) => reply.write(ctx),
        Ok(Ok(Response::Blocked)) => {}
        Ok(Err(GearsError::WrongArity)) => unsafe {
            raw::RedisModule_WrongArity.unwrap()(ctx.ctx);
        },
        Ok(Err(err)) => Reply::Error(err.to_string()).write(ctx),
        Err(_) => Reply::Error(GearsError::Internal("see the Redis log".to_owned()).to_string()).write(ctx),
    }
    Ok(RedisValue::NoReply)
}

/// Refuses commands that block where Redis cannot block a client: inside MULTI, from Lua, or
/// from a module's RM_Call (including a script's own `execute()`). Checked before any side effect.
pub fn refuse_unblockable(ctx: &Context) -> Result<(), GearsError> {
    if ctx.get_flags().intersects(ContextFlags::MULTI | ContextFlags::LUA | ContextFlags::DENY_BLOCKING) {
        return Err(GearsError::BlockingNotAllowed);
    }
    Ok(())
}

fn text(arg: &RedisString) -> String {
    String::from_utf8_lossy(arg.as_slice()).into_owned()
}
