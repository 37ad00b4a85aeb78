//! Calling Redis commands from a script: always replicated (`!`) and with errors as replies (`E`),
//! the reply copied into owned data before the lock is released.

use redis_module::{CallOptionsBuilder, CallReply, CallResult, Context, ErrorReply};

use crate::error::GearsError;
use crate::reply::Reply;

pub fn call(ctx: &Context, command: &str, args: &[&[u8]]) -> Reply {
    let opts = CallOptionsBuilder::new().replicate().errors_as_replies().build();
    let result: CallResult<'static> = ctx.call_ext(command, &opts, args);
    from_result(&result)
}

fn from_result(result: &CallResult<'_>) -> Reply {
    match result {
        Ok(reply) => from_reply(reply),
        Err(ErrorReply::Message(msg)) => Reply::Error(msg.clone()),
        Err(err) => Reply::Error(String::from_utf8_lossy(err.as_bytes()).into_owned()),
    }
}

fn from_reply(reply: &CallReply<'_>) -> Reply {
    match reply {
        CallReply::Unknown => Reply::Error(GearsError::CommandFailed.to_string()),
        CallReply::I64(i) => Reply::Int(i.to_i64()),
        CallReply::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        CallReply::Null(_) => Reply::Null,
        CallReply::Array(a) => Reply::Array(a.iter().map(|r| from_result(&r)).collect()),
        CallReply::Set(s) => Reply::Array(s.iter().map(|r| from_result(&r)).collect()),
        CallReply::Map(m) => Reply::Array(m.iter().flat_map(|(k, v)| [from_result(&k), from_result(&v)]).collect()),
        CallReply::Bool(b) => Reply::Int(b.to_bool() as i64),
        CallReply::Double(d) => Reply::Bulk(d.to_double().to_string().into_bytes()),
        CallReply::BigNumber(n) => Reply::Bulk(n.to_string().unwrap_or_default().into_bytes()),
        CallReply::VerbatimString(v) => Reply::Bulk(v.to_parts().map(|(_, bytes)| bytes).unwrap_or_default()),
    }
}
