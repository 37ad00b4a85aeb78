//! What an execution leaves behind besides its reply: counts, timings and the steps as
//! RG.GETEXECUTION lists them (RedisGears' step types and names).

use std::time::Duration;

use rustpython_vm::{PyObjectRef, VirtualMachine};

use super::plan::Step;
pub use crate::report::{Report, StepReport};

pub fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The reader's implicit first step.
pub fn reader_step() -> StepReport {
    step_report("map", "RedisGearsPy_ToPyRecordMapper", String::new())
}

/// A step that calls no Python: its name is its kind.
fn plain(kind: &'static str) -> StepReport {
    step_report(kind, kind, String::new())
}

fn step_report(kind: &'static str, name: &'static str, arg: String) -> StepReport {
    StepReport { kind, name, arg, duration_ms: 0 }
}

fn callback(vm: &VirtualMachine, f: &PyObjectRef) -> String {
    f.str(vm).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What RedisGears shows for `count()` (`extractor` `None`) and `countby(extractor)`: the
/// aggregate they are sugar for, with the shim's equivalent callbacks.
fn count_steps(vm: &VirtualMachine, extractor: Option<&PyObjectRef>, shown: &[PyObjectRef]) -> Vec<StepReport> {
    let shown = |i: usize| shown.get(i).map(|f| callback(vm, f)).unwrap_or_default();
    match extractor {
        None => vec![
            step_report("accumulate", "RedisGearsPy_PyCallbackAccumulate", shown(0)),
            plain("collect"),
            step_report("accumulate", "RedisGearsPy_PyCallbackAccumulate", shown(1)),
        ],
        Some(extractor) => vec![
            step_report("extractkey", "RedisGearsPy_PyCallbackExtractor", callback(vm, extractor)),
            step_report("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", shown(0)),
            step_report("map", "RedisGearsPy_ToPyRecordMapper", String::new()),
            step_report("extractkey", "RedisGearsPy_PyCallbackExtractor", shown(1)),
            plain("repartition"),
            step_report("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", shown(2)),
            step_report("map", "RedisGearsPy_ToPyRecordMapper", String::new()),
        ],
    }
}

/// The RedisGears steps one of our steps stands for; its measured time goes to the first.
pub fn describe(vm: &VirtualMachine, step: &Step, duration: Duration) -> Vec<StepReport> {
    let mut steps = match step {
        Step::Map(f) => vec![step_report("map", "RedisGearsPy_PyCallbackMapper", callback(vm, f))],
        Step::FlatMap(f) => {
            vec![step_report("map", "RedisGearsPy_PyCallbackFlatMapper", callback(vm, f)), plain("flatmap")]
        }
        Step::Filter(f) => vec![step_report("filter", "RedisGearsPy_PyCallbackFilter", callback(vm, f))],
        Step::ForEach(f) => vec![step_report("foreach", "RedisGearsPy_PyCallbackForEach", callback(vm, f))],
        Step::Accumulate(f) => vec![step_report("accumulate", "RedisGearsPy_PyCallbackAccumulate", callback(vm, f))],
        Step::LocalGroupBy { extractor, reducer, repartition } => {
            let mut steps =
                vec![step_report("extractkey", "RedisGearsPy_PyCallbackExtractor", callback(vm, extractor))];
            if *repartition {
                steps.push(plain("repartition"));
            }
            steps.push(step_report("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey", callback(vm, reducer)));
            steps.push(step_report("map", "RedisGearsPy_ToPyRecordMapper", String::new()));
            steps
        }
        Step::BatchGroupBy { extractor, reducer } => vec![
            step_report("extractkey", "RedisGearsPy_PyCallbackExtractor", callback(vm, extractor)),
            plain("repartition"),
            plain("group"),
            step_report("reduce", "RedisGearsPy_PyCallbackReducer", callback(vm, reducer)),
            step_report("map", "RedisGearsPy_ToPyRecordMapper", String::new()),
        ],
        Step::Repartition(f) => vec![
            step_report("extractkey", "RedisGearsPy_PyCallbackExtractor", callback(vm, f)),
            plain("repartition"),
            step_report("map", "GetValueMapper", String::new()),
        ],
        Step::Collect => vec![plain("collect")],
        // The second half of count() and countby(), shown with their first.
        Step::MergeCount | Step::MergeCountBy => vec![],
        Step::Limit { .. } => vec![plain("limit")],
        // The steps RedisGears' sugar expands to.
        Step::Count { shown } => count_steps(vm, None, shown),
        Step::CountBy { extractor, shown } => count_steps(vm, Some(extractor), shown),
    };
    if let Some(first) = steps.first_mut() {
        first.duration_ms = millis(duration);
    }
    steps
}
