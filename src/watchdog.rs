//! The watchdog thread: every few milliseconds it keeps stop requests alive, applies the
//! execution time limit and the memory budget, and replaces workers stuck in native code.

use std::thread;
use std::time::Duration;

use crate::python::interrupt;
use crate::{config, executions, pool};

pub fn start() -> Result<(), String> {
    thread::Builder::new()
        .name("rg-watchdog".to_owned())
        .spawn(watch)
        .map(drop)
        .map_err(|e| format!("could not start the watchdog thread: {e}"))
}

fn watch() {
    loop {
        thread::sleep(interrupt::TICK);
        let limit = config::with(|c| c.execution_time_limit);
        let limit = (limit > 0).then(|| Duration::from_millis(limit as u64));
        for (worker, abort) in interrupt::tick(limit) {
            executions::abandon(&abort);
            pool::replace(worker);
        }
    }
}
