//! The worker pool: `ExecutionThreads` OS threads, each owning one sandboxed interpreter for its
//! whole life. Jobs are closures over plain Rust data; they get the worker's runtime when they
//! run. A job that panics is contained there, and the worker rebuilds its interpreter.
//!
//! A worker stuck in native code (found by the watchdog) is retired: a replacement starts on
//! the same queue, and the stuck thread exits if its call ever returns. Replacements are capped
//! so that a stream of such scripts cannot create threads without bound.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::error::GearsError;
use crate::python::Runtime;
use crate::redis::log;

pub type Job = Box<dyn FnOnce(&mut Runtime) + Send>;

/// Deep recursion must end in RecursionError (the VM checks the stack it runs on), and the
/// compiler recurses on nesting in the source: give workers room for both.
const WORKER_STACK: usize = 256 * 1024 * 1024;

struct Pool {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    /// Retirement flags by worker number.
    workers: Mutex<Vec<Arc<AtomicBool>>>,
    stuck: AtomicUsize,
    max_stuck: usize,
    alive: AtomicUsize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Starts the workers. Each builds its interpreter on its own thread, so the module loads
/// without waiting for them; jobs queue until a worker is ready.
pub fn start(threads: usize) -> Result<(), String> {
    let (jobs, queue) = unbounded::<Job>();
    let pool = Pool {
        jobs,
        queue,
        workers: Mutex::new(Vec::new()),
        stuck: AtomicUsize::new(0),
        max_stuck: threads * 2,
        alive: AtomicUsize::new(0),
    };
    let pool = POOL.get_or_init(|| pool);
    for _ in 0..threads {
        spawn(pool)?;
    }
    Ok(())
}

fn spawn(pool: &'static Pool) -> Result<(), String> {
    let retired = Arc::new(AtomicBool::new(false));
    let number = {
        let mut workers = pool.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.push(retired.clone());
        workers.len() - 1
    };
    pool.alive.fetch_add(1, Ordering::AcqRel);
    thread::Builder::new()
        .name(format!("rg-worker-{number}"))
        .stack_size(WORKER_STACK)
        .spawn(move || {
            work(number, pool.queue.clone(), retired);
            pool.alive.fetch_sub(1, Ordering::AcqRel);
        })
        .map(drop)
        .map_err(|e| {
            pool.alive.fetch_sub(1, Ordering::AcqRel);
            format!("could not start a worker thread: {e}")
        })
}

pub fn submit(job: Job) -> Result<(), GearsError> {
    let pool = POOL.get().ok_or(GearsError::ShuttingDown)?;
    pool.jobs.send(job).map_err(|_| GearsError::ShuttingDown)
}

/// Retires worker `number`, stuck in native code, and starts a replacement on its queue.
pub fn replace(number: usize) {
    let Some(pool) = POOL.get() else { return };
    let flag = pool.workers.lock().unwrap_or_else(PoisonError::into_inner).get(number).cloned();
    let Some(flag) = flag else { return };
    if flag.swap(true, Ordering::AcqRel) {
        return; // already retired
    }
    let stuck = pool.stuck.fetch_add(1, Ordering::AcqRel) + 1;
    if stuck > pool.max_stuck {
        log::warning(&format!(
            "rustgears: worker {number} is stuck in native code; {stuck} stuck workers, over the cap of {}: not replaced",
            pool.max_stuck
        ));
        return;
    }
    log::warning(&format!("rustgears: worker {number} is stuck in native code; starting a replacement ({stuck} stuck)"));
    if let Err(e) = spawn(pool) {
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

fn build(number: usize) -> Result<Runtime, String> {
    // Counted: the interpreter's own start-up memory is part of what RG.PYSTATS reports.
    catch_unwind(|| crate::memory::counted(|| Runtime::new(number))).unwrap_or_else(|_| Err("building the interpreter panicked".to_owned()))
}

fn work(number: usize, jobs: Receiver<Job>, retired: Arc<AtomicBool>) {
    let mut runtime = match build(number) {
        Ok(runtime) => runtime,
        Err(e) => {
            log::warning(&format!("rustgears: worker {number} could not build a Python interpreter: {e}"));
            // Still take jobs, so none waits forever: dropping one answers its client with an error.
            jobs.iter().for_each(drop);
            return;
        }
    };
    for job in jobs.iter() {
        let panicked = catch_unwind(AssertUnwindSafe(|| job(&mut runtime))).is_err() || runtime.poisoned();
        if retired.load(Ordering::Acquire) {
            if let Some(pool) = POOL.get() {
                pool.stuck.fetch_sub(1, Ordering::AcqRel);
            }
            log::notice(&format!("rustgears: stuck worker {number} returned and exits"));
            return;
        }
        if panicked {
            log::warning("rustgears: a job panicked; rebuilding this worker's interpreter");
            match build(number) {
                Ok(fresh) => {
                    let old = std::mem::replace(&mut runtime, fresh);
                    // Tearing down a VM left mid-panic may panic again: contain it, leak if so.
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(old)));
                }
                Err(e) => log::warning(&format!("rustgears: could not rebuild the interpreter: {e}")),
            }
        }
    }
}
