//! Running a plan: a reader feeding records through steps, with the iteration, grouping and
//! limits done in Rust and only user callbacks run in Python.

mod plan;
mod readers;
mod steps;
pub mod store;

use rustpython_vm::VirtualMachine;

pub use plan::Plan;

use crate::python::{RawPlan, Runtime, to_reply};
use crate::redis::reply::Reply;
use store::Store;

/// Runs one execution to its end and returns its `[results, errors]` reply.
pub fn run(runtime: &Runtime, raw: RawPlan, store: &dyn Store) -> Reply {
    runtime.enter(|vm| run_in(vm, raw, store))
}

fn run_in(vm: &VirtualMachine, raw: RawPlan, store: &dyn Store) -> Reply {
    let plan = match Plan::parse(vm, raw) {
        Ok(plan) => plan,
        Err(text) => return Reply::results(Vec::new(), &[text]),
    };
    let mut reader = readers::open(plan.reader, store);
    let mut pipeline = steps::Pipeline::new(plan.steps);
    while !pipeline.should_stop() {
        match reader.next(vm) {
            Ok(Some(record)) => pipeline.push(vm, record),
            Ok(None) => break,
            Err(text) => {
                pipeline.errors.push(text);
                break;
            }
        }
    }
    pipeline.flush(vm);
    let results = pipeline.results.iter().map(|r| to_reply(r, vm)).collect();
    Reply::results(results, &pipeline.errors)
}
