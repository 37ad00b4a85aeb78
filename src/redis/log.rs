//! Writing to the Redis log from any thread. The message is passed as a `%s` argument, never as
//! the format string, so script text with `%` in it cannot reach printf.

use std::ffi::CString;
use std::ptr;

use redis_module::raw;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl Level {
    fn as_cstr(self) -> &'static std::ffi::CStr {
        match self {
            Level::Debug => c"debug",
            Level::Verbose => c"verbose",
            Level::Notice => c"notice",
            Level::Warning => c"warning",
        }
    }
}

pub fn log(level: Level, message: &str) {
    let Some(log) = (unsafe { raw::RedisModule_Log }) else {
        return; // outside Redis (unit tests): nowhere to write
    };
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    unsafe { log(ptr::null_mut(), level.as_cstr().as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
}

pub fn warning(message: &str) {
    log(Level::Warning, message);
}

pub fn notice(message: &str) {
    log(Level::Notice, message);
}
