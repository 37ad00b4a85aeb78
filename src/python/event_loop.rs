//! The worker's side of the shim's asyncio loop (`stdlib_shim/rg/asyncio`): one loop per
//! interpreter, which never blocks and never runs by itself. It tells the worker when it is due
//! (`loop_wake`); the worker runs a turn of it (`turn`) as one of its jobs, so that a coroutine
//! that sleeps or awaits holds no worker meanwhile.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use rustpython_vm::{PyObjectRef, PyResult, VirtualMachine};

use super::Runtime;
use super::errors::error_text;
use crate::redis::log;

thread_local! {
    /// When this worker's loop must turn next, if it has anything scheduled.
    static DUE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The executions that have had callbacks on the loop: only they need releasing when they end.
    static USED_BY: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Execution `owner` has scheduled something on the loop.
pub fn used_by(owner: u64) {
    USED_BY.with_borrow_mut(|u| u.insert(owner));
}

/// The loop has something to run within `delay` (seconds).
pub fn wake_within(delay: f64) {
    let delay = if delay.is_finite() && delay > 0.0 { Duration::from_secs_f64(delay.min(1e9)) } else { Duration::ZERO };
    let at = Instant::now() + delay;
    DUE.set(Some(DUE.get().map_or(at, |due| due.min(at))));
}

/// When the loop must turn next, if it has anything scheduled.
pub fn due() -> Option<Instant> {
    DUE.get()
}

/// True if the loop must turn now.
pub fn is_due() -> bool {
    DUE.get().is_some_and(|due| due <= Instant::now())
}

/// Runs one turn of the loop: the callbacks ready now, each in its execution's context.
pub fn run_ready(runtime: &Runtime) {
    DUE.set(None);
    let next = runtime.enter(|vm| {
        let next = the_loop(vm).and_then(|l| vm.call_method(&l, "_run_once", ()));
        match next {
            Ok(next) if vm.is_none(&next) => None,
            Ok(next) => Some(next.try_float(vm).map(|f| f.to_f64()).unwrap_or(0.0)),
            Err(e) => {
                log::warning(&format!("rustgears: the event loop failed: {}", error_text(vm, &e)));
                None
            }
        }
    });
    if let Some(delay) = next {
        wake_within(delay);
    }
    // What the callbacks changed in interpreter-wide state is put back, as after any job.
    runtime.end_job();
}

/// Execution `owner` has ended: its callbacks are dropped (`cancel`: it was aborted) or run on
/// in no execution's context (fire-and-forget tasks it started). False if it used no callback.
pub fn release_owner(vm: &VirtualMachine, owner: u64, cancel: bool) -> bool {
    // Most executions never touch the loop: no Python call for them.
    if !USED_BY.with_borrow_mut(|u| u.remove(&owner)) {
        return false;
    }
    let released =
        the_loop(vm).and_then(|l| vm.call_method(&l, "_release", (vm.ctx.new_int(owner), vm.ctx.new_bool(cancel))));
    if let Err(e) = released {
        log::warning(&format!("rustgears: releasing an execution's callbacks failed: {}", error_text(vm, &e)));
    }
    true
}

/// The interpreter's loop (importing asyncio if no script did yet).
pub fn the_loop(vm: &VirtualMachine) -> PyResult<PyObjectRef> {
    vm.import("asyncio", 0)?.get_attr("get_event_loop", vm)?.call((), vm)
}

/// The interpreter is going: so is its loop.
pub fn close_loop() {
    let _ = DUE.try_with(|d| d.set(None));
    let _ = USED_BY.try_with(|u| u.borrow_mut().clear());
}

/// A step callback's coroutine: runs on the loop and continues a future of the callback's record,
/// which it returns (see `future::Calling::settle`).
pub fn await_coroutine(vm: &VirtualMachine, coroutine: PyObjectRef) -> PyResult {
    vm.import("gears", 0)?.get_attr("_await_step", vm)?.call((coroutine,), vm)
}

/// Hands an execution's `[results, errors]` to the asyncio future a coroutine awaits it with.
pub fn set_result(vm: &VirtualMachine, future: &PyObjectRef, records: Vec<PyObjectRef>, errors: &[String]) {
    let errors = errors.iter().map(|e| vm.ctx.new_str(e.as_str()).into()).collect();
    let value = vm.ctx.new_list(vec![vm.ctx.new_list(records).into(), vm.ctx.new_list(errors).into()]);
    // One cancelled meanwhile (with the coroutine awaiting it) takes no result.
    let done = vm.call_method(future, "done", ()).and_then(|d| d.try_to_bool(vm)).unwrap_or(true);
    if !done && let Err(e) = vm.call_method(future, "set_result", (value,)) {
        log::warning(&format!("rustgears: an awaited execution's result was refused: {}", error_text(vm, &e)));
    }
}
