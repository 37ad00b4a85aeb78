//! Running a plan: a reader feeding records through steps, with the iteration, grouping and
//! limits done in Rust and only user callbacks run in Python.

mod plan;
mod readers;
pub mod report;
mod steps;
#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::{Duration, Instant};

use rustpython_vm::VirtualMachine;

pub use plan::Plan;
pub use readers::stream_record;
pub use report::Report;

use crate::memory;
use crate::python::{RawPlan, Runtime, error_text, interrupt, to_reply};
use crate::reply::Reply;
use crate::store::{self, Store};

/// Runs one execution to its end: its `[results, errors]` reply and its report. Readers and the
/// steps' `execute()` and `atomic()` reach Redis through `store`.
pub fn run(runtime: &Runtime, raw: RawPlan, store: Rc<dyn Store>) -> (Reply, Report) {
    let profile = crate::config::with(|c| c.profile_executions != 0);
    let outcome = {
        let _installed = store::install(store.clone());
        runtime.enter(|vm| run_in(vm, raw, &*store, profile))
    };
    // A step that entered atomic() without leaving it must not keep Redis locked.
    store.release();
    outcome
}

fn run_in(vm: &VirtualMachine, raw: RawPlan, store: &dyn Store, profile: bool) -> (Reply, Report) {
    let started = Instant::now();
    let plan = match Plan::parse(vm, raw) {
        Ok(plan) => plan,
        Err(text) => {
            let errors = vec![text];
            return (Reply::results(Vec::new(), &errors), Report { errors, ..Report::default() });
        }
    };
    let count_only = matches!(plan.steps.first(), Some(plan::Step::Count { .. }));
    let mut reader = readers::open(plan.reader, store, count_only);
    let mut pipeline = steps::Pipeline::new(plan.steps, profile);
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
    while !pipeline.should_stop() {
        if let Some(reason) = crate::stop::stop_reason() {
            pipeline.errors.push(error_text(vm, &interrupt::stop_exception(vm, reason)));
            break;
        }
        let read_started = Instant::now();
        let next = reader.next(vm);
        reading += read_started.elapsed();
        match next {
            Ok(Some(record)) => pipeline.push(vm, record),
            Ok(None) => break,
            Err(text) => {
                pipeline.errors.push(text);
                break;
            }
        }
    }
    // An aborted execution emits what it has, without running more Python.
    if crate::stop::stop_reason().is_none() {
        pipeline.flush(vm);
    }
    // What leaves the worker is freed on the main thread: not the interpreter's memory.
    memory::uncounted(|| {
        let results: Vec<Reply> = pipeline.results.iter().map(|r| to_reply(r, vm)).collect();
        let report = Report {
            results: results.len(),
            errors: pipeline.errors.clone(),
            total_ms: report::millis(started.elapsed()),
            read_ms: report::millis(reading),
            steps: pipeline.describe(vm),
        };
        (Reply::results(results, &pipeline.errors), report)
    })
}
