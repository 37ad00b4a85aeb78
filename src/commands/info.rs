//! The module's INFO section (`INFO rg`, `INFO modules`, `INFO everything`): executions, workers
//! and the interpreters' memory, including workers lost to native code.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use redis_module::raw;

use crate::{executions, memory, pool};

pub extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: i32) {
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { write(ctx) }));
}

unsafe fn write(ctx: *mut raw::RedisModuleInfoCtx) {
    let (Some(section), Some(field)) = (unsafe { raw::RedisModule_InfoAddSection }, unsafe {
        raw::RedisModule_InfoAddFieldLongLong
    }) else {
        return;
    };
    let (total, peak, current) = memory::stats();
    let fields: [(&CStr, i64); 6] = [
        (c"executions", executions::dump().len() as i64),
        (c"workers", pool::workers() as i64),
        (c"stuck_workers", pool::stuck_workers() as i64),
        (c"python_total_allocated", total),
        (c"python_peak_allocated", peak),
        (c"python_current_allocated", current),
    ];
    unsafe {
        section(ctx, c"stats".as_ptr() as *mut _);
        for (name, value) in fields {
            field(ctx, name.as_ptr() as *mut _, value);
        }
    }
}
