//! The worker pool: `ExecutionThreads` homes, each served by one OS thread that owns one
//! sandboxed interpreter for its whole life.
//!
//! A session lives on one home (its Python objects never leave that interpreter). Work reaches a
//! home in two ways:
//! - *Visits* (`visit`): Rust closures on the home's channel — script bodies and calls on behalf
//!   of the main thread. They never wait for the job the worker is running: a worker running an
//!   execution is preempted (the visit runs nested at its next bytecode instruction), and a
//!   worker waiting for the Redis lock or sleeping serves them meanwhile (`crate::idle`).
//! - *Deferred jobs* (`defer`): work a visit leaves behind on its own worker (an execution its
//!   script started), as Python objects that cannot cross threads. They run one at a time, after
//!   the visits waiting, so at most one execution per home runs Python at any moment.
//! - *Jobs* (`send`): executions addressed to a home from elsewhere (a registration's event),
//!   queued on the home's job channel and run like deferred ones, after them.
//!
//! A worker stuck in native code (found by the watchdog) is retired: a replacement starts on the
//! same home, with a fresh interpreter, and the stuck thread exits if its call ever returns.
//! Replacements are capped so that a stream of such scripts cannot create threads without bound.

mod home;
mod worker;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::error::GearsError;
use crate::python::Runtime;
use crate::redis::log;
use crate::stop::WorkerId;
use crate::unpoisoned::Unpoisoned;
use home::Home;
use worker::{serve_now, work};

pub use home::Activity;

/// A visit: runs on the home's worker, given its interpreter.
pub type Visit = Box<dyn FnOnce(&Runtime) + Send>;
/// A deferred job: stays on the worker that deferred it.
pub type Deferred = Box<dyn FnOnce(&Runtime)>;

/// Preemptions allowed in flight per home: enough to survive another interpreter clearing the
/// eval-breaker bit, bounded while the worker is stuck in native code.
const MAX_PREEMPTING: usize = 4;

/// Preemptions main-thread calls may have in flight on one home: more than one call sends in its
/// pickup bound (2 s at one every 1 ms), fewer than would matter if the home is stuck.
const MAX_REPREEMPTING: usize = 4096;

/// Deep recursion must end in RecursionError (the VM checks the stack it runs on), and the
/// compiler recurses on nesting in the source: give workers room for both.
const WORKER_STACK: usize = 256 * 1024 * 1024;

struct Pool {
    homes: Vec<Home>,
    /// Script bodies of new sessions: whichever worker takes one is the session's home.
    bodies: Sender<Visit>,
    body_queue: Receiver<Visit>,
    stuck: AtomicUsize,
    max_stuck: usize,
    alive: AtomicUsize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

thread_local! {
    /// This worker's home number and interpreter, for visits served while a job waits.
    static WORKER: RefCell<Option<(usize, Rc<Runtime>)>> = const { RefCell::new(None) };
    /// Jobs deferred on this worker, oldest first.
    static DEFERRED: RefCell<VecDeque<Deferred>> = const { RefCell::new(VecDeque::new()) };
    /// A visit served while a job waited panicked: the interpreter is rebuilt after that job.
    static NESTED_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Starts the workers. Each builds its interpreter on its own thread, so the module loads
/// without waiting for them; visits queue until a worker is ready.
pub fn spawn_workers(threads: usize) -> Result<(), String> {
    let homes = (0..threads).map(|_| Home::new()).collect();
    let (bodies, body_queue) = unbounded::<Visit>();
    let pool = POOL.get_or_init(|| Pool {
        homes,
        bodies,
        body_queue,
        stuck: AtomicUsize::new(0),
        max_stuck: threads * 2,
        alive: AtomicUsize::new(0),
    });
    for home in 0..threads {
        spawn(pool, home)?;
    }
    Ok(())
}

fn pool() -> Result<&'static Pool, GearsError> {
    POOL.get().ok_or(GearsError::ShuttingDown)
}

fn spawn(pool: &'static Pool, home: usize) -> Result<(), String> {
    let retired = Arc::new(AtomicBool::new(false));
    *pool.homes[home].retired.locked() = retired.clone();
    let worker = WorkerId { home, generation: pool.homes[home].generation.fetch_add(1, Ordering::AcqRel) + 1 };
    pool.alive.fetch_add(1, Ordering::AcqRel);
    thread::Builder::new()
        .name(format!("rg-worker-{home}"))
        .stack_size(WORKER_STACK)
        .spawn(move || {
            work(pool, worker, retired);
            pool.alive.fetch_sub(1, Ordering::AcqRel);
        })
        .map(drop)
        .map_err(|e| {
            pool.alive.fetch_sub(1, Ordering::AcqRel);
            format!("could not start a worker thread: {e}")
        })
}

/// The home for a new session whose first visit is addressed (a main-thread call): the least
/// loaded, an idle one first among equals; never a lost one.
pub fn choose_home() -> Result<usize, GearsError> {
    let pool = pool()?;
    let cost = |h: &Home| {
        let activity = h.activity.load(Ordering::Acquire);
        (activity == Activity::Lost as u8, h.load.load(Ordering::Acquire), activity != Activity::Idle as u8)
    };
    Ok(pool.homes.iter().enumerate().min_by_key(|(_, h)| cost(h)).map_or(0, |(n, _)| n))
}

/// Sends the script body of a new session to whichever worker takes it first; that worker is
/// the session's home. If none is idle, the least loaded one running an execution is preempted.
pub fn submit_body(visit: Visit) -> Result<(), GearsError> {
    let pool = pool()?;
    pool.bodies.send(visit).map_err(|_| GearsError::ShuttingDown)?;
    preempt_for_bodies(pool, false);
    Ok(())
}

/// Preempts a home for the bodies waiting, unless a worker is idle (it will take them).
fn preempt_for_bodies(pool: &'static Pool, force: bool) {
    if pool.body_queue.is_empty() {
        return;
    }
    if pool.any_idle() {
        return;
    }
    // Among equally loaded homes, the one with fewer preemptions still undelivered.
    let cost = |h: &&Home| (h.load.load(Ordering::Acquire), h.preempting.load(Ordering::Acquire));
    if let Some(home) = pool.executing().min_by_key(cost) {
        preempt(home, force);
    }
}

/// Sends a call on behalf of the main thread to `home`. It preempts whatever the home's worker
/// runs: the call runs at its next bytecode instruction.
pub fn send_call(home: usize, visit: Visit) -> Result<(), GearsError> {
    let pool = pool()?;
    let home_ref: &'static Home = pool.homes.get(home).ok_or(GearsError::ShuttingDown)?;
    if home_ref.activity.load(Ordering::Acquire) == Activity::Lost as u8 {
        return Err(GearsError::NoWorker);
    }
    home_ref.load.fetch_add(1, Ordering::AcqRel);
    home_ref.pending_calls.fetch_add(1, Ordering::AcqRel);
    let done = Unload { home, call: true };
    let visit: Visit = Box::new(move |runtime| {
        let _done = done;
        visit(runtime)
    });
    home_ref.calls.send(visit).map_err(|_| GearsError::ShuttingDown)?;
    preempt(home_ref, false);
    Ok(())
}

/// Asks a busy home's worker to serve visits at its next bytecode instruction: one running an
/// execution for any visit, anything else for a main-thread call.
fn preempt(home: &'static Home, force: bool) {
    let activity = home.activity.load(Ordering::Acquire);
    let calls = home.pending_calls.load(Ordering::Acquire) > 0;
    if activity == Activity::Executing as u8 || (calls && activity != Activity::Idle as u8) {
        // Bounded in flight, as a worker stuck in native code drains none of them; `force` sends
        // one more anyway, for when the ones in flight wait for a bit another VM cleared.
        if !force && home.preempting.load(Ordering::Acquire) >= MAX_PREEMPTING {
            return;
        }
        let interrupter = home.interrupter.locked().clone();
        if let Some(interrupter) = interrupter {
            home.preempting.fetch_add(1, Ordering::AcqRel);
            interrupter.send(move |_vm| {
                home.preempting.fetch_sub(1, Ordering::AcqRel);
                serve_now();
            });
        }
    }
}

/// Preempts `home` again for the call that waits there, even with a few preemptions in flight
/// (not without bound: a worker stuck in native code drains none).
pub fn repreempt(home: usize) {
    if let Some(home) = POOL.get().and_then(|pool| pool.homes.get(home))
        && home.preempting.load(Ordering::Acquire) < MAX_REPREEMPTING
    {
        preempt(home, true);
    }
}

/// Preempts again the homes whose visits still wait: the eval-breaker bit that delivers a
/// preemption is process-wide, and another worker's interpreter may clear it first. The
/// watchdog calls this every tick, as it re-sends stop requests, with `force` now and then.
pub fn nudge(force: bool) {
    let Some(pool) = POOL.get() else { return };
    for home in &pool.homes {
        if !home.call_queue.is_empty() {
            preempt(home, force);
        }
    }
    preempt_for_bodies(pool, force);
}

/// Queues an execution on `home`: it runs after the jobs before it, like a deferred one. If the
/// pool is gone, or the home lost, the job is dropped (which answers its clients).
pub fn send(home: usize, job: Visit) {
    let Some(home_ref) = POOL.get().and_then(|pool| pool.homes.get(home)) else { return };
    if home_ref.activity.load(Ordering::Acquire) == Activity::Lost as u8 {
        return;
    }
    home_ref.load.fetch_add(1, Ordering::AcqRel);
    let done = Unload { home, call: false };
    let job: Visit = Box::new(move |runtime| {
        let _done = done;
        job(runtime)
    });
    let _ = home_ref.jobs.send(job);
}

/// How many homes the pool has.
pub fn homes() -> usize {
    POOL.get().map_or(0, |p| p.homes.len())
}

/// Sends a visit to `home` that must not wait for the job its worker runs (a trigger's
/// execution while an earlier one waits): a worker running an execution is preempted, one
/// waiting for the lock or sleeping serves it meanwhile, an idle one takes it at once.
pub fn visit(home: usize, visit: Visit) {
    let Some(home_ref) = POOL.get().and_then(|pool| pool.homes.get(home)) else { return };
    if home_ref.activity.load(Ordering::Acquire) == Activity::Lost as u8 {
        return;
    }
    home_ref.load.fetch_add(1, Ordering::AcqRel);
    let done = Unload { home, call: false };
    let visit: Visit = Box::new(move |runtime| {
        let _done = done;
        visit(runtime)
    });
    if home_ref.calls.send(visit).is_ok() {
        preempt(home_ref, false);
    }
}

/// The worker serving `home` now.
pub fn worker_of(home: usize) -> WorkerId {
    let generation = POOL.get().and_then(|p| p.homes.get(home)).map_or(0, |h| h.generation.load(Ordering::Acquire));
    WorkerId { home, generation }
}

/// The interpreter of this thread's worker, if it is one.
pub fn this_runtime() -> Option<Rc<Runtime>> {
    WORKER.with_borrow(|w| w.as_ref().map(|(_, runtime)| runtime.clone()))
}

/// The home of this thread's worker, if it is one.
pub fn this_home() -> Option<usize> {
    WORKER.with_borrow(|w| w.as_ref().map(|(home, _)| *home))
}

/// Counts a visit or deferred job off its home's load when it ends, however it ends.
struct Unload {
    home: usize,
    /// A main-thread call (counted in `pending_calls` too).
    call: bool,
}

impl Drop for Unload {
    fn drop(&mut self) {
        if let Some(pool) = POOL.get() {
            let home = &pool.homes[self.home];
            home.load.fetch_sub(1, Ordering::AcqRel);
            if self.call {
                home.pending_calls.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Leaves `job` to run on this worker after the visits waiting. Outside a worker it is dropped.
pub fn defer(job: Deferred) {
    let Some(home) = WORKER.with_borrow(|w| w.as_ref().map(|(home, _)| *home)) else { return };
    if let Some(pool) = POOL.get() {
        pool.homes[home].load.fetch_add(1, Ordering::AcqRel);
    }
    let done = Unload { home, call: false };
    let job: Deferred = Box::new(move |runtime| {
        let _done = done;
        job(runtime)
    });
    DEFERRED.with_borrow_mut(|d| d.push_back(job));
}

impl Pool {
    fn any_idle(&self) -> bool {
        self.homes.iter().any(|h| h.activity.load(Ordering::Acquire) == Activity::Idle as u8)
    }

    /// The homes running an execution, which a body may preempt.
    fn executing(&self) -> impl Iterator<Item = &Home> {
        self.homes.iter().filter(|h| h.activity.load(Ordering::Acquire) == Activity::Executing as u8)
    }

    /// Whether `home`, busy, should take a waiting body now: no worker is idle and no other
    /// live one is less loaded.
    fn should_take_body(&self, home: usize) -> bool {
        let load = self.homes[home].load.load(Ordering::Acquire);
        let live = self.homes.iter().filter(|h| h.activity.load(Ordering::Acquire) != Activity::Lost as u8);
        !self.any_idle() && live.into_iter().all(|h| h.load.load(Ordering::Acquire) >= load)
    }
}

/// Retires `worker`, stuck in native code, and starts a replacement on its home. A worker that
/// was replaced already is left alone (its home's current worker is another).
pub fn replace(worker: WorkerId) {
    let Some(pool) = POOL.get() else { return };
    let home = worker.home;
    let Some(home_ref) = pool.homes.get(home) else { return };
    if home_ref.generation.load(Ordering::Acquire) != worker.generation {
        return;
    }
    let flag = home_ref.retired.locked().clone();
    if flag.swap(true, Ordering::AcqRel) {
        return; // already retired
    }
    home_ref.interrupter.locked().take();
    home_ref.preempting.store(0, Ordering::Release);
    home_ref.activity.store(Activity::Idle as u8, Ordering::Release);
    let stuck = pool.stuck.fetch_add(1, Ordering::AcqRel) + 1;
    if stuck > pool.max_stuck {
        log::warning(&format!(
            "rustgears: worker {home} is stuck in native code; {stuck} stuck workers, over the cap of {}: not replaced",
            pool.max_stuck
        ));
        home_ref.activity.store(Activity::Lost as u8, Ordering::Release);
        // Nobody will serve what waits there: dropping a visit answers its client.
        home_ref.call_queue.try_iter().for_each(drop);
        home_ref.job_queue.try_iter().for_each(drop);
        return;
    }
    log::warning(&format!("rustgears: worker {home} is stuck in native code; starting a replacement ({stuck} stuck)"));
    if let Err(e) = spawn(pool, home) {
        log::warning(&format!("rustgears: {e}"));
    }
}

/// Worker threads alive (stuck ones included).
pub fn workers() -> usize {
    POOL.get().map_or(0, |p| p.alive.load(Ordering::Acquire))
}

/// Workers currently stuck in native code (retired, their call not yet returned).
pub fn stuck_workers() -> usize {
    POOL.get().map_or(0, |p| p.stuck.load(Ordering::Acquire))
}
