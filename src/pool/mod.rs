//! The worker pool: `ExecutionThreads` OS threads, each owning one sandboxed interpreter for its
//! whole life. Jobs are closures over plain Rust data; they get the worker's runtime when they
//! run. A job that panics is contained there, and the worker rebuilds its interpreter.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::thread;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::error::GearsError;
use crate::python::{Runtime, interrupt};
use crate::redis::log;

pub type Job = Box<dyn FnOnce(&mut Runtime) + Send>;

static JOBS: OnceLock<Sender<Job>> = OnceLock::new();

/// Deep recursion must end in RecursionError (the VM checks the stack it runs on), and the
/// compiler recurses on nesting in the source: give workers room for both.
const WORKER_STACK: usize = 256 * 1024 * 1024;

/// Starts the workers; returns once each has built its interpreter (or one failed to).
pub fn start(threads: usize) -> Result<(), String> {
    let (tx, rx) = unbounded::<Job>();
    let (ready_tx, ready_rx) = unbounded::<Result<(), String>>();
    for n in 0..threads {
        let rx = rx.clone();
        let ready = ready_tx.clone();
        thread::Builder::new()
            .name(format!("rg-worker-{n}"))
            .stack_size(WORKER_STACK)
            .spawn(move || work(rx, ready))
            .map_err(|e| format!("could not start a worker thread: {e}"))?;
    }
    for _ in 0..threads {
        ready_rx.recv().map_err(|_| "a worker thread died while starting".to_owned())??;
    }
    thread::Builder::new()
        .name("rg-watchdog".to_owned())
        .spawn(watch)
        .map_err(|e| format!("could not start the watchdog thread: {e}"))?;
    JOBS.set(tx).map_err(|_| "the worker pool is already running".to_owned())
}

pub fn submit(job: Job) -> Result<(), GearsError> {
    let jobs = JOBS.get().ok_or(GearsError::ShuttingDown)?;
    jobs.send(job).map_err(|_| GearsError::ShuttingDown)
}

/// Keeps stop requests alive until the executions they target have ended.
fn watch() {
    loop {
        thread::sleep(interrupt::REPEAT_EVERY);
        interrupt::repeat_requests();
    }
}

fn build() -> Result<Runtime, String> {
    catch_unwind(Runtime::new).unwrap_or_else(|_| Err("building the interpreter panicked".to_owned()))
}

fn work(jobs: Receiver<Job>, ready: Sender<Result<(), String>>) {
    let mut runtime = match build() {
        Ok(runtime) => {
            let _ = ready.send(Ok(()));
            runtime
        }
        Err(e) => {
            let _ = ready.send(Err(format!("could not build a Python interpreter: {e}")));
            return;
        }
    };
    drop(ready);
    for job in jobs {
        if catch_unwind(AssertUnwindSafe(|| job(&mut runtime))).is_ok() {
            continue;
        }
        log::warning("rustgears: a job panicked; rebuilding this worker's interpreter");
        match build() {
            Ok(fresh) => {
                let old = std::mem::replace(&mut runtime, fresh);
                // Tearing down a VM left mid-panic may panic again: contain it, leak if so.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(old)));
            }
            Err(e) => log::warning(&format!("rustgears: could not rebuild the interpreter: {e}")),
        }
    }
}
