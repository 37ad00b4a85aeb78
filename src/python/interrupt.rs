//! Stopping Python that runs on a worker: RG.ABORTEXECUTION, a client that disconnected, the
//! wall-time limit and the memory budget all end up here.
//!
//! RustPython checks a process-wide "eval breaker" bit before every bytecode instruction and,
//! when it is set, runs the closures queued on *this* VM's signal channel. Two traps shape this
//! file: another worker's VM may clear the bit first (so the watchdog re-sends a request until
//! the execution ends), and a script may catch the exception (so a raising closure queues itself
//! again: the next instruction raises again, even inside an `except BaseException`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustpython_vm::builtins::PyBaseExceptionRef;
use rustpython_vm::signal::{UserSignalReceiver, UserSignalSender, user_signal_channel};
use rustpython_vm::{PyResult, VirtualMachine};

use super::native::with_types;

/// Why an execution is being stopped; decides the exception it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Aborted = 1,
    TimedOut = 2,
    OutOfMemory = 3,
}

impl Reason {
    fn from_u8(n: u8) -> Option<Reason> {
        match n {
            1 => Some(Reason::Aborted),
            2 => Some(Reason::TimedOut),
            3 => Some(Reason::OutOfMemory),
            _ => None,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reason::Aborted => "Execution was aborted",
            Reason::TimedOut => "Execution time limit reached",
            Reason::OutOfMemory => "Python memory limit reached",
        }
    }
}

/// Closures allowed in flight per request: enough to survive crosstalk, bounded while a VM is
/// stuck in native code and drains nothing.
const MAX_QUEUED: usize = 4;

/// The worker running an armed execution.
struct Runner {
    interrupter: Interrupter,
    worker: usize,
    started: Instant,
}

/// One execution's stop request. Shared by whoever may stop it (the table, a disconnecting
/// client, the watchdog) and the worker that runs it.
#[derive(Default)]
pub struct Abort {
    reason: AtomicU8,
    requested_at: Mutex<Option<Instant>>,
    runner: Mutex<Option<Runner>>,
    ended: AtomicBool,
    queued: AtomicUsize,
    stuck: AtomicBool,
    over_memory: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Abort {
    pub fn new() -> Arc<Abort> {
        Arc::new(Abort::default())
    }

    pub fn reason(&self) -> Option<Reason> {
        Reason::from_u8(self.reason.load(Ordering::Acquire))
    }

    pub fn requested(&self) -> bool {
        self.reason().is_some()
    }

    /// Asks the execution to stop (the first reason wins). If it runs Python, the Python is
    /// interrupted; if it has not started, it will not.
    pub fn request(self: &Arc<Abort>, reason: Reason) {
        if self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            *lock(&self.requested_at) = Some(Instant::now());
        }
        self.poke();
    }

    fn poke(self: &Arc<Abort>) {
        if self.ended.load(Ordering::Acquire) || self.queued.load(Ordering::Acquire) >= MAX_QUEUED {
            return;
        }
        if let Some(runner) = lock(&self.runner).as_ref() {
            self.queued.fetch_add(1, Ordering::AcqRel);
            runner.interrupter.send(self);
        }
    }

}

/// The handle other threads hold to interrupt the VM of one worker.
#[derive(Clone)]
pub struct Interrupter {
    sender: UserSignalSender,
}

impl Interrupter {
    fn send(&self, abort: &Arc<Abort>) {
        let target = abort.clone();
        let _ = self.sender.send(Box::new(move |vm| raise_if_current(vm, &target)));
    }
}

/// Creates a worker's channel; the receiver goes into its VM.
pub fn channel() -> (Interrupter, UserSignalReceiver) {
    let (sender, receiver) = user_signal_channel();
    (Interrupter { sender }, receiver)
}

static ARMED: Mutex<Vec<Arc<Abort>>> = Mutex::new(Vec::new());

thread_local! {
    /// The execution running on this worker.
    static CURRENT: RefCell<Option<Arc<Abort>>> = const { RefCell::new(None) };
}

/// Marks `abort` as what this worker runs until the returned guard is dropped.
pub fn arm(abort: Arc<Abort>, interrupter: Interrupter, worker: usize) -> Armed {
    // The same request may arm twice: a script's body, then the execution it started.
    abort.ended.store(false, Ordering::Release);
    *lock(&abort.runner) = Some(Runner { interrupter, worker, started: Instant::now() });
    CURRENT.set(Some(abort.clone()));
    crate::memory::watch(&abort.over_memory);
    lock(&ARMED).push(abort.clone());
    if abort.requested() {
        abort.poke(); // asked to stop before it got here
    }
    Armed(abort)
}

pub struct Armed(Arc<Abort>);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
        lock(&ARMED).retain(|a| !Arc::ptr_eq(a, &self.0));
        crate::memory::unwatch();
        CURRENT.set(None);
    }
}

/// The execution running on this thread, if it was asked to stop: why.
pub fn stop_reason() -> Option<Reason> {
    CURRENT.with_borrow(|c| c.as_ref().and_then(|a| a.reason()))
}

/// The exception that stops an execution for `reason`.
pub fn stop_exception(vm: &VirtualMachine, reason: Reason) -> PyBaseExceptionRef {
    let class = match reason {
        Reason::OutOfMemory => vm.ctx.exceptions.memory_error.to_owned(),
        _ => with_types(|t| t.forcestopped.clone()).unwrap_or_else(|| vm.ctx.exceptions.system_exit.to_owned()),
    };
    vm.new_exception_msg(class, reason.message().into())
}

fn raise_if_current(vm: &VirtualMachine, abort: &Arc<Abort>) -> PyResult<()> {
    // Counted off whatever happens next: a request drained while its execution was not running
    // (between a script body and its execution) must not use up the allowance for good.
    abort.queued.fetch_sub(1, Ordering::AcqRel);
    let current = CURRENT.with_borrow(|c| c.as_ref().is_some_and(|a| Arc::ptr_eq(a, abort)));
    // Stale requests (for an execution that has ended) do nothing.
    if !current {
        return Ok(());
    }
    let Some(reason) = abort.reason() else { return Ok(()) };
    // Queue again, so the next instruction raises again wherever the script caught this one.
    abort.poke();
    Err(stop_exception(vm, reason))
}

/// A worker that did not stop within `STUCK_AFTER` of being asked: it is in native code that
/// never returns to the bytecode loop (`sum(itertools.repeat(1))`, a huge bigint power).
pub const STUCK_AFTER: Duration = Duration::from_secs(2);

/// How often the watchdog looks.
pub const TICK: Duration = Duration::from_millis(10);

/// One watchdog pass: applies the time limit and the memory budget, re-sends pending stop
/// requests, and returns the (worker, execution) pairs newly found stuck.
pub fn tick(time_limit: Option<Duration>) -> Vec<(usize, Arc<Abort>)> {
    let armed: Vec<Arc<Abort>> = lock(&ARMED).clone();
    let mut stuck = Vec::new();
    for abort in armed {
        if abort.over_memory.load(Ordering::Relaxed) {
            abort.request(Reason::OutOfMemory);
        }
        let (started, worker) = match lock(&abort.runner).as_ref() {
            Some(r) => (r.started, r.worker),
            None => continue,
        };
        if time_limit.is_some_and(|limit| started.elapsed() > limit) {
            abort.request(Reason::TimedOut);
        }
        if !abort.requested() {
            continue;
        }
        abort.poke();
        let asked = *lock(&abort.requested_at);
        if asked.is_some_and(|t| t.elapsed() > STUCK_AFTER) && !abort.stuck.swap(true, Ordering::AcqRel) {
            stuck.push((worker, abort));
        }
    }
    stuck
}

/// `time.sleep` that a stop request can cut short.
pub fn sleep(vm: &VirtualMachine, seconds: f64) -> PyResult<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(vm.new_value_error("sleep length must be non-negative"));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    loop {
        if let Some(reason) = stop_reason() {
            return Err(stop_exception(vm, reason));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(TICK));
    }
}
