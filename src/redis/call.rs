//! Calling Redis commands from a script: always replicated (`!`) and with errors as replies (`E`),
//! checked against the ACL user the work runs as (`acl`), the reply copied into owned data before
//! the lock is released.

use std::cell::Cell;

use redis_module::{CallOptionsBuilder, CallReply, CallResult, Context, ErrorReply, raw};

use super::acl::{self, RunAs, User};
use crate::error::GearsError;
use crate::reply::Reply;

thread_local! {
    /// Set while this thread runs a command through `call`: commands that registrations
    /// follow are not linked to a script's `execute()`.
    static CALLING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `command` as `run_as`. A user's command is checked first (and refused as Redis refuses
/// a client, with the refusal logged), then run under that user (`C`), so what it runs in turn
/// (EVAL's `redis.call`, a hooked command) is checked as that user too. Checking first keeps
/// RM_Call's own refusal path, which dereferences a user the contexts of keyspace events and
/// timers do not have, from ever being taken.
pub fn call(ctx: &Context, run_as: &RunAs, command: &str, args: &[&[u8]]) -> Reply {
    match checked(ctx, run_as, command, args) {
        Ok(user) => call_raw(ctx, user.as_ref(), command, args),
        Err(err) => Reply::Error(err.to_string()),
    }
}

/// The user to run `command` under (`None`: the module itself), once it may run.
fn checked(ctx: &Context, run_as: &RunAs, command: &str, args: &[&[u8]]) -> Result<Option<User>, GearsError> {
    // No command has one, and the C string Redis takes cannot carry it.
    if command.contains('\0') {
        return Err(GearsError::UnknownCommand(command.escape_debug().to_string()));
    }
    acl::protected(ctx, command)?;
    let name = match run_as {
        RunAs::Module => return Ok(None),
        RunAs::Nobody => return Err(GearsError::NoUser),
        RunAs::User(name) => name,
    };
    let user = User::find(name).ok_or_else(|| GearsError::NoSuchUser(name.to_string()))?;
    let argv = super::command_keys::strings(std::iter::once(command.as_bytes()).chain(args.iter().copied()));
    acl::check(ctx, &user, &argv)?;
    Ok(Some(user))
}

fn call_raw(ctx: &Context, user: Option<&User>, command: &str, args: &[&[u8]]) -> Reply {
    let builder = CallOptionsBuilder::new().replicate().errors_as_replies();
    let opts = match user {
        Some(_) => builder.verify_acl().build(),
        None => builder.build(),
    };
    let _as_user = user.map(|user| user.set_on(ctx));
    let outer = CALLING.replace(true);
    let result: CallResult<'static> = ctx.call_ext(command, &opts, args);
    CALLING.set(outer);
    from_result(&result)
}

/// True while this thread runs a command through `call`.
pub fn calling() -> bool {
    CALLING.get()
}

/// A status reply (`+OK`) rather than a bulk string: Redis gives both as strings.
fn is_status(reply: *mut raw::RedisModuleCallReply) -> bool {
    let mut len = 0;
    // SAFETY: `reply` is a live call reply (borrowed from the `CallReply` being converted); the
    // protocol pointer is valid for `len` bytes while it lives.
    unsafe {
        match raw::RedisModule_CallReplyProto {
            Some(proto) => {
                let p = proto(reply, &mut len);
                !p.is_null() && len > 0 && *p as u8 == b'+'
            }
            None => false,
        }
    }
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
        CallReply::String(s) if is_status(s.get_raw()) => {
            Reply::Simple(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
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
