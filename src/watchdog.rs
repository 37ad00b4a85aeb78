//! The watchdog thread: every few milliseconds it keeps stop requests alive, applies the
//! execution time limit and the memory budget, and replaces workers stuck in native code.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::stop::{self, Abort, Reason, WorkerId};
use crate::{config, jobs, pool};

/// A worker that did not stop within this long of being asked: it is in native code that never
/// returns to the bytecode loop (`sum(itertools.repeat(1))`, a huge bigint power). Generous: a
/// verdict fails every execution queued on the worker, and on a loaded machine a worker that
/// loses its core for long may see its stop request late (deliveries are relayed through the
/// other workers, `python::interrupt`, but a starved thread still waits for the scheduler).
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(10);

pub fn spawn_watchdog() -> Result<(), String> {
    thread::Builder::new()
        .name("rg-watchdog".to_owned())
        .spawn(watch_loop)
        .map(drop)
        .map_err(|e| format!("could not start the watchdog thread: {e}"))
}

/// Every this many ticks, stop requests and preemptions are re-sent even when some are in flight.
const FORCE_EVERY: u32 = 10;

fn watch_loop() {
    let mut ticks = 0u32;
    loop {
        thread::sleep(TICK);
        ticks = ticks.wrapping_add(1);
        let limit = config::with(|c| c.execution_time_limit);
        let limit = (limit > 0).then(|| Duration::from_millis(limit as u64));
        let force = ticks.is_multiple_of(FORCE_EVERY);
        pool::nudge(force);
        jobs::parked::enforce_limits(limit);
        for (worker, abort) in tick(limit, force) {
            jobs::abandon(worker, &abort);
            pool::replace(worker);
        }
    }
}

/// One pass: applies the time limit and the memory budget, re-sends pending stop requests (with
/// `force`, even those with deliveries in flight), and returns the (worker, request) pairs newly
/// found stuck. Public for the fuzz targets, which run interpreters without the module and its
/// watchdog thread.
pub fn tick(time_limit: Option<Duration>, force: bool) -> Vec<(WorkerId, Arc<Abort>)> {
    let mut stuck = Vec::new();
    for abort in stop::armed() {
        if abort.over_memory() {
            abort.request(Reason::OutOfMemory);
        }
        let Some((started, worker)) = abort.runner() else { continue };
        if abort.own_limit().or(time_limit).is_some_and(|limit| started.elapsed() > limit) {
            abort.request(Reason::TimedOut);
        }
        if !abort.requested() {
            continue;
        }
        if force {
            abort.poke_anyway();
        } else {
            abort.poke();
        }
        if abort.covered() {
            // A visit runs above it: it is stopped when the visit ends, and its worker is not
            // stuck for that.
            abort.restart_clock();
            continue;
        }
        if abort.requested_at().is_some_and(|t| t.elapsed() > STUCK_AFTER) && abort.mark_stuck() {
            stuck.push((worker, abort));
        }
    }
    stuck
}
