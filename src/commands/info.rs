//! The module's INFO section (`INFO rg`, `INFO modules`, `INFO everything`): executions, workers
//! and the interpreters' memory, including workers lost to native code.

use std::ffi::CStr;

use crate::{executions, memory, pool};

pub fn fields() -> Vec<(&'static CStr, i64)> {
    let (total, peak, current) = memory::stats();
    vec![
        (c"executions", executions::dump().len() as i64),
        (c"workers", pool::workers() as i64),
        (c"stuck_workers", pool::stuck_workers() as i64),
        (c"python_total_allocated", total),
        (c"python_peak_allocated", peak),
        (c"python_current_allocated", current),
    ]
}
