//! Stopping Python that runs on a worker: RG.ABORTEXECUTION (and, later, time limits).
//!
//! RustPython checks a process-wide "eval breaker" bit before every bytecode instruction and,
//! when it is set, runs the closures queued on *this* VM's signal channel. Two traps shape this
//! file: another worker's VM may clear the bit first (so a request is re-sent by the watchdog
//! until the execution ends), and a script may catch the exception (so a raising closure queues
//! itself again: the next instruction raises again, even inside an `except BaseException`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustpython_vm::signal::{UserSignalSender, user_signal_channel};
use rustpython_vm::{PyResult, VirtualMachine};

use super::native::with_types;

/// The message of the `gears.forcestopped` an abort raises.
pub const ABORTED: &str = "Execution was aborted";

/// Closures allowed in flight per request: enough to survive crosstalk, bounded while a VM is
/// stuck in native code and drains nothing.
const MAX_QUEUED: usize = 4;

/// One execution's stop request, shared by the table (which sets it) and the worker (which
/// checks it).
#[derive(Default)]
pub struct Abort {
    requested: AtomicBool,
    ended: AtomicBool,
    queued: AtomicUsize,
}

impl Abort {
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Asks without interrupting: for an execution that has not started.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }
}

/// The handle other threads hold to interrupt the VM of one worker.
#[derive(Clone)]
pub struct Interrupter {
    sender: UserSignalSender,
}

impl Interrupter {
    /// Asks the execution to stop; the watchdog keeps asking until it has ended.
    pub fn interrupt(&self, abort: &Arc<Abort>) {
        abort.request();
        self.poke(abort);
        pending().push((abort.clone(), self.clone()));
    }

    fn poke(&self, abort: &Arc<Abort>) {
        if abort.queued.load(Ordering::Acquire) >= MAX_QUEUED {
            return;
        }
        abort.queued.fetch_add(1, Ordering::AcqRel);
        let target = abort.clone();
        let _ = self.sender.send(Box::new(move |vm| raise_if_aborted(vm, &target)));
    }
}

type Pending = Vec<(Arc<Abort>, Interrupter)>;

static PENDING: Mutex<Pending> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Re-sends every stop request whose execution is still running. Called by the watchdog.
pub fn repeat_requests() {
    let mut pending = pending();
    pending.retain(|(abort, _)| !abort.ended.load(Ordering::Acquire));
    for (abort, interrupter) in pending.iter() {
        interrupter.poke(abort);
    }
}

/// How often the watchdog re-sends.
pub const REPEAT_EVERY: Duration = Duration::from_millis(10);

thread_local! {
    /// The execution running on this worker, and this worker's own sender.
    static CURRENT: RefCell<Option<Arc<Abort>>> = const { RefCell::new(None) };
    static SELF: RefCell<Option<UserSignalSender>> = const { RefCell::new(None) };
}

/// Creates this worker's channel; the receiver goes into the VM, the interrupter to the table.
pub fn channel() -> (Interrupter, rustpython_vm::signal::UserSignalReceiver) {
    let (sender, receiver) = user_signal_channel();
    SELF.set(Some(sender.clone()));
    (Interrupter { sender }, receiver)
}

/// Marks `abort` as the execution this worker runs until the returned guard is dropped.
pub fn arm(abort: Arc<Abort>) -> Armed {
    CURRENT.set(Some(abort.clone()));
    Armed(abort)
}

pub struct Armed(Arc<Abort>);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
        CURRENT.set(None);
    }
}

/// True when the execution running on this thread was asked to stop.
pub fn aborted() -> bool {
    CURRENT.with_borrow(|c| c.as_ref().is_some_and(|a| a.requested()))
}

/// The `gears.forcestopped` exception an abort raises.
pub fn forcestopped(vm: &VirtualMachine) -> rustpython_vm::builtins::PyBaseExceptionRef {
    let class = with_types(|t| t.forcestopped.clone()).unwrap_or_else(|| vm.ctx.exceptions.system_exit.to_owned());
    vm.new_exception_msg(class, ABORTED.into())
}

fn raise_if_aborted(vm: &VirtualMachine, target: &Arc<Abort>) -> PyResult<()> {
    target.queued.fetch_sub(1, Ordering::AcqRel);
    let current = CURRENT.with_borrow(|c| c.as_ref().is_some_and(|a| Arc::ptr_eq(a, target)));
    if !current || !target.requested() {
        return Ok(()); // stale: that execution has ended, or this is another VM's request
    }
    // Queue again, so the next instruction raises again wherever the script caught this one.
    SELF.with_borrow(|s| {
        if let Some(sender) = s {
            target.queued.fetch_add(1, Ordering::AcqRel);
            let again = target.clone();
            let _ = sender.send(Box::new(move |vm| raise_if_aborted(vm, &again)));
        }
    });
    Err(forcestopped(vm))
}

/// `time.sleep` that an abort can cut short.
pub fn sleep(vm: &VirtualMachine, seconds: f64) -> PyResult<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(vm.new_value_error("sleep length must be non-negative"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    loop {
        if aborted() {
            return Err(forcestopped(vm));
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(REPEAT_EVERY));
    }
}
