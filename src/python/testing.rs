//! One interpreter for the unit tests that run Python (engine, sessions), as a worker has it.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

use super::Runtime;
use crate::stop::WorkerId;
use crate::unpoisoned::Unpoisoned;

type Job = Box<dyn FnOnce(&Runtime) + Send>;

/// Runs `f` on the one interpreter the tests share. It lives on a thread with a worker's stack
/// (deep recursion must end in RecursionError, not overflow), and one interpreter is built
/// once instead of once per test; tests take turns on it.
pub fn on_runtime<R: Send + 'static>(f: impl FnOnce(&Runtime) -> R + Send + 'static) -> R {
    static JOBS: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (jobs, queue) = channel::<Job>();
        std::thread::Builder::new()
            .name("engine-tests".to_owned())
            .stack_size(256 << 20)
            .spawn(move || {
                let runtime =
                    Runtime::new(WorkerId::default()).unwrap_or_else(|e| panic!("cannot build an interpreter: {e}"));
                for job in queue {
                    job(&runtime);
                }
            })
            .expect("the tests' interpreter thread starts");
        Mutex::new(jobs)
    });
    let (done, outcome) = channel();
    let job: Job = Box::new(move |runtime| {
        let result = catch_unwind(AssertUnwindSafe(|| f(runtime)));
        runtime.end_job();
        let _ = done.send(result);
    });
    jobs.locked().send(job).expect("the interpreter thread is alive");
    match outcome.recv().expect("the interpreter thread answers") {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}
