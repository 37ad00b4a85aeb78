//! Delivering stop requests (`crate::stop`) into a worker's running Python.
//!
//! RustPython checks a process-wide "eval breaker" bit before every bytecode instruction and,
//! when it is set, runs the closures queued on *this* VM's signal channel. Two traps shape this
//! file: another worker's VM may clear the bit first (so the watchdog re-sends a request until
//! the execution ends), and a script may catch the exception (so a raising closure queues itself
//! again: the next instruction raises again, even inside an `except BaseException`).
//!
//! Re-sending alone is not enough on a busy machine. Whoever sends (the main thread, the
//! watchdog) has just taken a core, usually from one of the spinning workers; the bit is set
//! while that worker is off its core, and the worker still running clears it at once. The same
//! worker kept losing this way for 20 s and more. So every delivery is relayed: each other
//! worker running Python finds a relay in its own channel when it clears the bit, and while the
//! delivery waits it sets the bit again and naps, giving its core to the worker the delivery is
//! for.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use rustpython_vm::builtins::PyBaseExceptionRef;
use rustpython_vm::signal::{UserSignal, UserSignalReceiver, UserSignalSender, user_signal_channel};
use rustpython_vm::{PyResult, VirtualMachine};

use super::native::with_types;
use crate::stop::{self, Abort, Interrupt, Reason};
use crate::unpoisoned::Unpoisoned;

/// The handle other threads hold to interrupt the VM of one worker.
pub struct Interrupter {
    channel: Arc<Channel>,
}

/// One worker's signal channel and what its deliveries are doing.
struct Channel {
    sender: UserSignalSender,
    /// Deliveries sent and not yet drained by the worker's VM.
    undelivered: AtomicUsize,
    /// A relay waits in this channel.
    relaying: AtomicBool,
}

/// Every worker's channel, so a delivery to one is relayed through the others.
static CHANNELS: Mutex<Vec<Weak<Channel>>> = Mutex::new(Vec::new());

/// How long one relay keeps handing its core over, and each nap: long enough for the scheduler
/// to run the worker the delivery is for, short against the relaying worker's own job.
const RELAY_FOR: Duration = Duration::from_millis(2);
const RELAY_NAP: Duration = Duration::from_micros(100);

impl Interrupt for Interrupter {
    fn interrupt(&self, abort: &Arc<Abort>) {
        let target = abort.clone();
        self.channel.deliver(Box::new(move |vm| match target.delivered() {
            Some(reason) => Err(stop_exception(vm, reason)),
            None => Ok(()),
        }));
    }
}

impl Interrupter {
    /// Runs `f` on the worker's VM at its next bytecode instruction (if it runs Python now; else
    /// the next time it does).
    pub fn send(&self, f: impl FnOnce(&VirtualMachine) + Send + 'static) {
        self.channel.deliver(Box::new(move |vm| {
            f(vm);
            Ok(())
        }));
    }
}

impl Channel {
    fn deliver(self: &Arc<Self>, f: UserSignal) {
        self.undelivered.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        let sent = self.sender.send(Box::new(move |vm| {
            me.undelivered.fetch_sub(1, Ordering::AcqRel);
            f(vm)
        }));
        if sent.is_err() {
            // The VM is gone; nothing will drain it.
            self.undelivered.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.relay_through_others();
    }

    /// Puts a relay in the channel of every other worker that has none waiting.
    fn relay_through_others(self: &Arc<Self>) {
        let others: Vec<Arc<Channel>> =
            CHANNELS.locked().iter().filter_map(Weak::upgrade).filter(|other| !Arc::ptr_eq(other, self)).collect();
        for other in others {
            if other.relaying.swap(true, Ordering::AcqRel) {
                continue;
            }
            let target = self.clone();
            let relayer = other.clone();
            let sent = other.sender.send(Box::new(move |_vm| {
                relayer.relaying.store(false, Ordering::Release);
                target.hand_over_core();
                Ok(())
            }));
            if sent.is_err() {
                other.relaying.store(false, Ordering::Release);
            }
        }
    }

    /// Run by another worker that cleared the bit: while this channel's deliveries wait, sets the
    /// bit again (with a no-op, not relayed) and naps, so this worker gets a core and sees it.
    fn hand_over_core(&self) {
        let until = Instant::now() + RELAY_FOR;
        while self.undelivered.load(Ordering::Acquire) > 0 && Instant::now() < until {
            let _ = self.sender.send(Box::new(|_vm| Ok(())));
            thread::sleep(RELAY_NAP);
        }
    }
}

/// Creates a worker's channel; the receiver goes into its VM.
pub fn channel() -> (Arc<Interrupter>, UserSignalReceiver) {
    let (sender, receiver) = user_signal_channel();
    let channel = Arc::new(Channel { sender, undelivered: AtomicUsize::new(0), relaying: AtomicBool::new(false) });
    let mut all = CHANNELS.locked();
    all.retain(|weak| weak.strong_count() > 0);
    all.push(Arc::downgrade(&channel));
    (Arc::new(Interrupter { channel }), receiver)
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
pub fn stoppable_sleep(vm: &VirtualMachine, seconds: f64) -> PyResult<()> {
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
        crate::idle::serve_for((deadline - now).min(SLEEP_TICK));
    }
}
