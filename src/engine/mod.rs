//! Running a plan: a reader feeding records through steps, with the iteration, grouping and
//! limits done in Rust and only user callbacks run in Python.

mod plan;
mod readers;
pub mod report;
pub mod stages;
mod steps;
#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::{Duration, Instant};

use rustpython_vm::{AsObject, PyObjectRef, VirtualMachine};

pub use plan::Plan;
pub use readers::stream_record;
pub use report::Report;
pub use steps::Waiting;

use crate::memory;
use crate::python::{RawPlan, Runtime, error_text, interrupt, to_reply};
use crate::reply::Reply;
use crate::store::{self, Store};

/// Runs one execution to its end, never waiting for a future (its callbacks may not make records
/// wait): its `[results, errors]` reply and its report. Readers and the steps' `execute()` and
/// `atomic()` reach Redis through `store`.
pub fn run(runtime: &Runtime, raw: RawPlan, store: Rc<dyn Store>) -> (Reply, Report) {
    let profile = crate::config::with(|c| c.profile_executions != 0);
    let _installed = store::install(store.clone());
    let ended = runtime.enter(|vm| {
        let waiting = Waiting { owner: 0, allowed: false };
        let mut execution = Execution::start(vm, raw, store, profile, waiting);
        execution.drive(vm).unwrap_or_else(|| execution.end(vm))
    });
    (ended.reply, ended.report)
}

/// The argument of a plan whose records are given (reader `Records`): an iterator over them.
pub fn records_arg(vm: &VirtualMachine, items: Vec<PyObjectRef>) -> PyObjectRef {
    vm.ctx.new_list(items).as_object().get_iter(vm).map_or_else(|_| vm.ctx.none(), Into::into)
}

/// An execution that has ended: its reply, its report and its results as Python objects (what
/// `await run()` gives a coroutine).
pub struct Ended {
    pub reply: Reply,
    pub report: Report,
    pub records: Records,
}

/// Results as Python objects. Freed as the interpreter's memory wherever they are dropped (an
/// execution often ends outside the interpreter: RG.PYSTATS would drift otherwise).
#[derive(Default)]
pub struct Records(Vec<PyObjectRef>);

impl Records {
    pub fn take(mut self) -> Vec<PyObjectRef> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        let records = std::mem::take(&mut self.0);
        memory::counted(|| drop(records));
    }
}

/// An execution under way: its reader, its pipeline, and how far it got. It may wait for the
/// futures of its records between two `drive`s (held by `parking`, on its worker).
pub struct Execution {
    reader: Option<Box<dyn readers::Reader>>,
    pipeline: steps::Pipeline,
    /// The stateful steps emitted so far, first to last, once the input has ended.
    flushed: usize,
    started: Instant,
    reading: Duration,
    /// The plan could not be parsed: this is the execution's error.
    failed: Option<String>,
    /// Its results go on to another stage of a distributed execution, as Python objects: no
    /// reply is made of them.
    unreplied: bool,
}

impl Execution {
    pub fn start(
        vm: &VirtualMachine,
        raw: RawPlan,
        store: Rc<dyn Store>,
        profile: bool,
        waiting: Waiting,
    ) -> Execution {
        let started = Instant::now();
        let plan = match Plan::parse(vm, raw) {
            Ok(plan) => plan,
            Err(text) => {
                return Execution {
                    reader: None,
                    pipeline: steps::Pipeline::new(Vec::new(), false, waiting),
                    flushed: 0,
                    started,
                    reading: Duration::ZERO,
                    failed: Some(text),
                    unreplied: false,
                };
            }
        };
        let count_only = matches!(plan.steps.first(), Some(plan::Step::Count { .. }));
        let mut reader = readers::open(plan.reader, store, count_only);
        let mut pipeline = steps::Pipeline::new(plan.steps, profile, waiting);
        let mut reading = Duration::ZERO;
        if count_only {
            let read_started = Instant::now();
            match reader.count_rest(&|| crate::stop::stop_reason().is_some()) {
                Some(Ok(n)) => pipeline.add_to_count(n),
                Some(Err(text)) => pipeline.errors.push(text),
                None => {}
            }
            reading += read_started.elapsed();
        }
        Execution { reader: Some(reader), pipeline, flushed: 0, started, reading, failed: None, unreplied: false }
    }

    /// Its results are not replied (see `unreplied`).
    pub fn unreplied(mut self) -> Execution {
        self.unreplied = true;
        self
    }

    /// Runs the execution as far as it can: `Some` once it has ended, `None` while records wait
    /// for futures (drive it again when one is continued).
    pub fn drive(&mut self, vm: &VirtualMachine) -> Option<Ended> {
        if let Some(text) = self.failed.take() {
            self.pipeline.errors.push(text);
            return Some(self.end(vm));
        }
        loop {
            self.pipeline.take_resolved(vm);
            if let Some(reason) = crate::stop::stop_reason() {
                // An aborted execution emits what it has, without running more Python; the
                // abort is its error unless a callback reported it already.
                if self.pipeline.errors.is_empty() {
                    self.pipeline.errors.push(error_text(vm, &interrupt::stop_exception(vm, reason)));
                }
                return Some(self.end(vm));
            }
            if self.pipeline.should_stop() {
                self.reader = None;
            }
            // A full pipeline reads on once a waiting record has been continued.
            if let Some(reader) = &mut self.reader
                && !self.pipeline.full()
            {
                let read_started = Instant::now();
                let next = reader.next(vm);
                self.reading += read_started.elapsed();
                match next {
                    Ok(Some(record)) => self.pipeline.push(vm, record),
                    Ok(None) => self.reader = None,
                    Err(text) => {
                        self.pipeline.errors.push(text);
                        self.reader = None;
                    }
                }
                continue;
            }
            if self.pipeline.busy() {
                if crate::python::future::has_resolved(self.pipeline.owner()) {
                    continue;
                }
                return None;
            }
            if self.flushed < self.pipeline.len() {
                self.pipeline.flush_step(vm, self.flushed);
                self.flushed += 1;
                continue;
            }
            return Some(self.end(vm));
        }
    }

    /// Ends the execution with what it has.
    pub fn end(&mut self, vm: &VirtualMachine) -> Ended {
        // What leaves the worker is freed on the main thread: not the interpreter's memory.
        memory::uncounted(|| {
            let pipeline = &mut self.pipeline;
            let results: Vec<Reply> = match self.unreplied {
                true => Vec::new(),
                false => pipeline.results.iter().map(|r| to_reply(r, vm)).collect(),
            };
            let report = Report {
                results: pipeline.results.len(),
                errors: pipeline.errors.clone(),
                total_ms: report::millis(self.started.elapsed()),
                read_ms: report::millis(self.reading),
                steps: pipeline.describe(vm),
            };
            let reply = Reply::results(results, &pipeline.errors);
            Ended { reply, report, records: Records(std::mem::take(&mut pipeline.results)) }
        })
    }
}
