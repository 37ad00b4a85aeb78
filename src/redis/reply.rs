//! Writing a `Reply` to a client. Goes through the raw API so that binary strings, non-ASCII
//! error texts and status strings keep their bytes.

use std::ffi::CString;
use std::os::raw::c_char;

use redis_module::{Context, raw};

use crate::reply::Reply;

pub fn write(reply: &Reply, ctx: &Context) {
    // SAFETY: a `Context` handed to a command handler can reply.
    unsafe { write_raw(reply, ctx.ctx) }
}

/// Redis's own wrong-arity error for the running command.
pub fn wrong_arity(ctx: &Context) {
    // SAFETY: as in `write`; the function exists in every Redis with modules.
    unsafe {
        if let Some(wrong_arity) = raw::RedisModule_WrongArity {
            wrong_arity(ctx.ctx);
        }
    }
}

/// # Safety
/// `ctx` must be a context that can reply (a command or blocked-client reply callback).
pub unsafe fn write_raw(reply: &Reply, ctx: *mut raw::RedisModuleCtx) {
    // SAFETY: the caller vouches for `ctx`; every buffer passed lives across its call, and the
    // reply functions are present in every Redis with modules (checked once at load by
    // redis-module, which resolves them).
    unsafe {
        match reply {
            Reply::Simple(s) => {
                let s = c_line(s);
                raw::RedisModule_ReplyWithSimpleString.unwrap()(ctx, s.as_ptr());
            }
            Reply::Error(s) => {
                let s = c_line(s);
                raw::RedisModule_ReplyWithError.unwrap()(ctx, s.as_ptr());
            }
            Reply::Bulk(b) => {
                raw::RedisModule_ReplyWithStringBuffer.unwrap()(ctx, b.as_ptr() as *const c_char, b.len());
            }
            Reply::Int(i) => {
                raw::RedisModule_ReplyWithLongLong.unwrap()(ctx, *i);
            }
            Reply::Double(d) => {
                raw::RedisModule_ReplyWithDouble.unwrap()(ctx, *d);
            }
            Reply::Null => {
                raw::RedisModule_ReplyWithNull.unwrap()(ctx);
            }
            Reply::Array(items) => {
                raw::RedisModule_ReplyWithArray.unwrap()(ctx, items.len() as _);
                for item in items {
                    write_raw(item, ctx);
                }
            }
        }
    }
}

/// Status and error lines cannot hold CR, LF or NUL: they would end the line early or corrupt the
/// protocol stream. Redis itself turns CR/LF inside error texts into spaces; do the same for all.
/// True when Redis calls a `getkeys-api` command only to learn where its keys are.
pub fn keys_position_request(ctx: &Context) -> bool {
    // SAFETY: a command context, on the thread that runs the command.
    unsafe { raw::RedisModule_IsKeysPositionRequest.is_some_and(|is| is(ctx.ctx) != 0) }
}

fn c_line(s: &str) -> CString {
    let clean: String = s.chars().map(|c| if matches!(c, '\r' | '\n' | '\0') { ' ' } else { c }).collect();
    CString::new(clean).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sanitised() {
        assert_eq!(c_line("a\r\nb\0c").to_str().unwrap(), "a  b c");
    }
}
