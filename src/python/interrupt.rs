//! Delivering stop requests (`crate::stop`) into a worker's running Python.
//!
//! RustPython checks a process-wide "eval breaker" bit before every bytecode instruction and,
//! when it is set, runs the closures queued on *this* VM's signal channel. Two traps shape this
//! file: another worker's VM may clear the bit first (so the watchdog re-sends a request until
//! the execution ends), and a script may catch the exception (so a raising closure queues itself
//! again: the next instruction raises again, even inside an `except BaseException`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustpython_vm::builtins::PyBaseExceptionRef;
use rustpython_vm::signal::{UserSignalReceiver, UserSignalSender, user_signal_channel};
use rustpython_vm::{PyResult, VirtualMachine};

use super::native::with_types;
use crate::stop::{self, Abort, Interrupt, Reason};

/// The handle other threads hold to interrupt the VM of one worker.
pub struct Interrupter {
    sender: UserSignalSender,
}

impl Interrupt for Interrupter {
    fn interrupt(&self, abort: &Arc<Abort>) {
        let target = abort.clone();
        let _ = self.sender.send(Box::new(move |vm| match target.delivered() {
            Some(reason) => Err(stop_exception(vm, reason)),
            None => Ok(()),
        }));
    }
}

impl Interrupter {
    /// Runs `f` on the worker's VM at its next bytecode instruction (if it runs Python now; else
    /// the next time it does).
    pub fn send(&self, f: impl FnOnce(&VirtualMachine) + Send + 'static) {
        let _ = self.sender.send(Box::new(move |vm| {
            f(vm);
            Ok(())
        }));
    }
}

/// Creates a worker's channel; the receiver goes into its VM.
pub fn channel() -> (Arc<Interrupter>, UserSignalReceiver) {
    let (sender, receiver) = user_signal_channel();
    (Arc::new(Interrupter { sender }), receiver)
}

/// The exception that stops an execution for `reason`.
pub fn stop_exception(vm: &VirtualMachine, reason: Reason) -> PyBaseExceptionRef {
    let class = match reason {
        Reason::OutOfMemory => vm.ctx.exceptions.memory_error.to_owned(),
        _ => with_types(|t| t.forcestopped.clone()).unwrap_or_else(|| vm.ctx.exceptions.system_exit.to_owned()),
    };
    vm.new_exception_msg(class, reason.message().into())
}

/// How often a sleeping script looks for a stop request or work for its worker.
const SLEEP_TICK: Duration = Duration::from_millis(10);

/// `time.sleep` that a stop request can cut short, and during which the worker still serves
/// visits (script bodies, main-thread calls: `crate::idle`).
pub fn sleep(vm: &VirtualMachine, seconds: f64) -> PyResult<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(vm.new_value_error("sleep length must be non-negative"));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    loop {
        if let Some(reason) = stop::stop_reason() {
            return Err(stop_exception(vm, reason));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        crate::idle::wait((deadline - now).min(SLEEP_TICK));
    }
}
