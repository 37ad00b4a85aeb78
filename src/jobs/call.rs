//! The main-thread call: Python on behalf of Redis's main thread, run on a session's home
//! before the command (or event) that triggered it returns, atomically with it.
//!
//! The main thread holds the Redis lock and waits; the session's home worker runs the code with
//! the main thread's context lent to it (`redis::gil::lend`, which says why that is sound). The
//! wait never deadlocks:
//! - the home worker is idle: it takes the visit at once;
//! - it runs an execution, or anything else: it is preempted at its next bytecode instruction;
//! - it waits for the Redis lock (which the main thread holds) or sleeps: it serves the visit
//!   while it waits (`crate::idle`);
//! - it is stuck in native code: after `PICKUP_BOUND` the main thread gives up with an error;
//! - the code itself runs too long: after `TIME_LIMIT` it is stopped like an aborted execution,
//!   and if it is stuck in native code the watchdog answers for it.
//!
//! `execute()` goes through the lent context, `atomic()` is already atomic, and `run()` runs its
//! execution inside the call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis_module::Context;

use super::answers::{Answer, Listed};
use crate::error::GearsError;
use crate::pool;
use crate::python::Runtime;
use crate::redis::gil::{self, Lent};
use crate::reply::Reply;
use crate::stop::{Abort, Reason};
use crate::unpoisoned::Unpoisoned;

/// How long the main thread waits for the home worker to take its call. Redis serves nobody
/// meanwhile, so it is shorter than the watchdog's `STUCK_AFTER`: the call fails, the worker is
/// not written off.
pub const PICKUP_BOUND: Duration = Duration::from_secs(2);

/// How long a call may run before it is stopped: Redis serves nobody meanwhile (as Lua's
/// `busy-reply-threshold` default).
pub const TIME_LIMIT: Duration = Duration::from_secs(5);

/// How deep calls on behalf of the main thread may nest: a `sync` trigger, hook or time event
/// whose code runs a command that starts another `sync` execution (its own trigger, its own
/// hooked command) would otherwise recurse until Redis runs out of memory. The calls of one
/// chain all happen while one thread holds the Redis lock, so one process-wide count is the depth
/// of that chain.
pub const MAX_NESTED: usize = 8;

static NESTED: AtomicUsize = AtomicUsize::new(0);

/// Whether one more call may nest now.
pub fn may_nest() -> Result<(), GearsError> {
    match NESTED.load(Ordering::Acquire) >= MAX_NESTED {
        true => Err(GearsError::NestedTooDeep(MAX_NESTED)),
        false => Ok(()),
    }
}

/// One level of nesting, given back on drop.
struct Nesting;

impl Nesting {
    fn enter() -> Result<Nesting, GearsError> {
        if NESTED.fetch_add(1, Ordering::AcqRel) >= MAX_NESTED {
            NESTED.fetch_sub(1, Ordering::AcqRel);
            return Err(GearsError::NestedTooDeep(MAX_NESTED));
        }
        Ok(Nesting)
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        NESTED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the main thread spins before it sleeps on the condition variable.
const SPIN: Duration = Duration::from_micros(100);

/// How often the main thread asks again while the home has not taken its call.
const REPREEMPT: Duration = Duration::from_millis(1);

enum Stage {
    Waiting,
    Running(Instant),
    Done(Reply),
    /// The main thread gave up before the worker took the call.
    Abandoned,
}

/// Where the main thread waits for its call.
pub struct Handoff {
    stage: Mutex<Stage>,
    changed: Condvar,
    /// Set with `Stage::Done`, read without the lock while the main thread spins.
    done: AtomicBool,
}

impl Handoff {
    fn new() -> Arc<Handoff> {
        Arc::new(Handoff { stage: Mutex::new(Stage::Waiting), changed: Condvar::new(), done: AtomicBool::new(false) })
    }

    fn stage(&self) -> MutexGuard<'_, Stage> {
        self.stage.locked()
    }

    /// The worker takes the call; false if the main thread has given up on it.
    fn take(&self) -> bool {
        let mut stage = self.stage();
        match *stage {
            Stage::Waiting => {
                *stage = Stage::Running(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// The call's answer; the first one counts.
    pub fn finish(&self, reply: Reply) {
        let mut stage = self.stage();
        if matches!(*stage, Stage::Waiting | Stage::Running(_)) {
            *stage = Stage::Done(reply);
            self.done.store(true, Ordering::Release);
            self.changed.notify_all();
        }
    }

    /// Waits for the answer (see the module's comment for the bounds). `preempt` asks the home
    /// again to take the call: the bit that announces a preemption is process-wide, and while
    /// other workers run Python one of them may clear it first.
    fn wait(&self, abort: &Arc<Abort>, preempt: impl Fn()) -> Reply {
        let asked = Instant::now();
        // Redis is blocked meanwhile anyway: look a few times before sleeping, as a short call
        // ends sooner than the main thread could be woken from a condition variable. Yielding
        // leaves the core to the worker where the two share one.
        while asked.elapsed() < SPIN && !self.done.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let mut stage = self.stage();
        loop {
            match &*stage {
                Stage::Done(reply) => return reply.clone(),
                Stage::Abandoned => return Reply::Error(GearsError::HomeBusy.to_string()),
                Stage::Waiting if asked.elapsed() > PICKUP_BOUND => {
                    *stage = Stage::Abandoned;
                    continue;
                }
                Stage::Waiting => preempt(),
                Stage::Running(started) if started.elapsed() > TIME_LIMIT => abort.request(Reason::TimedOut),
                _ => {}
            }
            let pause = if matches!(*stage, Stage::Waiting) { REPREEMPT } else { Duration::from_millis(10) };
            stage = self.changed.wait_timeout(stage, pause).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// Answers the main thread if the visit ends without answering (its worker unwound).
struct Unanswered(Arc<Handoff>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.0.finish(Reply::Error(GearsError::Internal("the call's worker failed".to_owned()).to_string()));
    }
}

/// Runs `f` on `home`'s worker on behalf of the thread that holds the Redis lock (`ctx` is its
/// context, lent to the worker meanwhile), and returns its reply; `abort` stops it.
///
/// Called on that worker itself (an event its own write raised), `f` runs here and now, nested
/// in what the worker was doing.
pub fn call_on_home(
    ctx: &Context,
    home: usize,
    abort: Arc<Abort>,
    f: impl FnOnce(&Runtime, Arc<Abort>) -> Reply + Send + 'static,
) -> Result<Reply, GearsError> {
    let _nesting = Nesting::enter()?;
    let lent = Lent::new(ctx);
    if pool::this_home() == Some(home)
        && let Some(runtime) = pool::this_runtime()
    {
        let _nested = runtime.nest();
        let reply = gil::lend(lent.clone(), || f(&runtime, abort));
        lent.revoke();
        return Ok(reply);
    }
    let handoff = Handoff::new();
    let (for_worker, lent_to_worker, abort_for_worker) = (handoff.clone(), lent.clone(), abort.clone());
    pool::send_call(
        home,
        Box::new(move |runtime| {
            let _unanswered = Unanswered(for_worker.clone());
            if !for_worker.take() {
                return;
            }
            let listed = Listed::enter(abort_for_worker.clone(), Answer::MainThread(for_worker.clone()));
            let reply = gil::lend(lent_to_worker, || f(runtime, abort_for_worker));
            if listed.leave().is_some() {
                for_worker.finish(reply);
            }
        }),
    )?;
    let reply = handoff.wait(&abort, || pool::repreempt(home));
    lent.revoke();
    Ok(reply)
}
