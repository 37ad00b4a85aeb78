//! Owned RESP values and the one function that writes them to a client.
//!
//! Replies are built on worker threads (results of an execution) and written on the main thread,
//! so they are plain Rust data. Writing goes through the raw API so that binary strings, non-ASCII
//! error texts and status strings keep their bytes.

use std::ffi::CString;
use std::os::raw::c_char;

use redis_module::{Context, raw};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Bulk(Vec<u8>),
    Int(i64),
    Null,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn bulk(s: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(s.into())
    }

    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// `[results, errors]`, the reply of a finished execution.
    pub fn results(results: Vec<Reply>, errors: &[String]) -> Reply {
        let errors = errors.iter().map(|e| Reply::bulk(e.as_bytes())).collect();
        Reply::Array(vec![Reply::Array(results), Reply::Array(errors)])
    }

    pub fn write(&self, ctx: &Context) {
        unsafe { self.write_raw(ctx.ctx) }
    }

    /// # Safety
    /// `ctx` must be a context that can reply (a command or blocked-client reply callback).
    pub unsafe fn write_raw(&self, ctx: *mut raw::RedisModuleCtx) {
        unsafe {
            match self {
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
                Reply::Null => {
                    raw::RedisModule_ReplyWithNull.unwrap()(ctx);
                }
                Reply::Array(items) => {
                    raw::RedisModule_ReplyWithArray.unwrap()(ctx, items.len() as _);
                    for item in items {
                        item.write_raw(ctx);
                    }
                }
            }
        }
    }
}

/// Status and error lines cannot hold CR, LF or NUL: they would end the line early or corrupt the
/// protocol stream. Redis itself turns CR/LF inside error texts into spaces; do the same for all.
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

    #[test]
    fn results_shape() {
        let r = Reply::results(vec![Reply::Int(1)], &["boom".to_owned()]);
        assert_eq!(
            r,
            Reply::Array(vec![Reply::Array(vec![Reply::Int(1)]), Reply::Array(vec![Reply::bulk("boom")])])
        );
    }
}
