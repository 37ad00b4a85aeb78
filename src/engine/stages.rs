//! A plan cut into stages for a distributed execution: each stage runs on every shard, and its
//! records then move to the shard its `Route` names (RedisGears' repartition and collect). The
//! steps that move records, as RedisGears expands them:
//!
//! - `repartition(e)`: to the shard owning the hash slot of `e(record)`;
//! - `groupby(e, r)` and `batchgroupby(e, r)`: repartition by `e`, then group where they land;
//! - `collect()`: to the initiator;
//! - `count()`: counted on each shard, the counts collected and summed;
//! - `countby(e)`: counted per key on each shard, the counts repartitioned by key and summed.

use rustpython_vm::builtins::{PyList, PyStr, PyTuple};
use rustpython_vm::{PyObjectRef, VirtualMachine};

use super::steps::group_key;
use crate::python::{call_callback, error_text, fields};

pub enum Route {
    /// To the shard owning the slot of the key `extractor` gives.
    ByKey(PyObjectRef),
    /// To the shard owning the slot of the record's `key` (countby's per-shard counts).
    ByGroupKey,
    /// To the initiator.
    ToInitiator,
}

pub struct Stage {
    /// Its steps, as the shim recorded them (a list of step tuples).
    pub steps: PyObjectRef,
    /// Where its records go; `None` for the last stage.
    pub route: Option<Route>,
}

/// The stages of `steps` (the shim's list of step tuples); one stage if no step moves records.
pub fn stages(vm: &VirtualMachine, steps: &PyObjectRef) -> Result<Vec<Stage>, String> {
    let steps = steps.downcast_ref::<PyList>().ok_or("steps must be a list")?.borrow_vec().to_vec();
    let mut stages = Vec::new();
    let mut current: Vec<PyObjectRef> = Vec::new();
    let mut cut = |current: &mut Vec<PyObjectRef>, route: Route, next: Option<PyObjectRef>| {
        let steps = vm.ctx.new_list(std::mem::take(current)).into();
        stages.push(Stage { steps, route: Some(route) });
        current.extend(next);
    };
    for step in steps {
        let tuple = step.downcast_ref::<PyTuple>().ok_or("a step must be a tuple")?;
        let parts = tuple.as_slice().to_vec();
        let name = parts.first().and_then(|n| n.downcast_ref::<PyStr>()).map(|n| n.to_string_lossy().into_owned());
        let arg = |i: usize| parts.get(i).cloned().ok_or_else(|| format!("step {name:?} is missing an argument"));
        let internal = |name: &str| -> PyObjectRef { vm.ctx.new_tuple(vec![vm.ctx.new_str(name).into()]).into() };
        match name.as_deref() {
            Some("repartition") => cut(&mut current, Route::ByKey(arg(1)?), None),
            Some("groupby") => {
                let local = vm.ctx.new_tuple(vec![vm.ctx.new_str("localgroupby").into(), arg(1)?, arg(2)?]);
                cut(&mut current, Route::ByKey(arg(1)?), Some(local.into()));
            }
            Some("batchgroupby") => cut(&mut current, Route::ByKey(arg(1)?), Some(step.clone())),
            Some("collect") => cut(&mut current, Route::ToInitiator, None),
            Some("count") => {
                current.push(step.clone());
                cut(&mut current, Route::ToInitiator, Some(internal("mergecount")));
            }
            Some("countby") => {
                current.push(step.clone());
                cut(&mut current, Route::ByGroupKey, Some(internal("mergecountby")));
            }
            _ => current.push(step.clone()),
        }
    }
    stages.push(Stage { steps: vm.ctx.new_list(current).into(), route: None });
    Ok(stages)
}

/// The key whose hash slot decides where `record` goes, or `None` for the initiator.
pub fn route_key(vm: &VirtualMachine, route: &Route, record: &PyObjectRef) -> Result<Option<Vec<u8>>, String> {
    let key = match route {
        Route::ToInitiator => return Ok(None),
        Route::ByKey(extractor) => call_callback(vm, extractor, (record.clone(),)),
        Route::ByGroupKey => record.get_item(fields(vm).key, vm),
    };
    let (_, id) = key.and_then(|key| group_key(vm, key)).map_err(|e| error_text(vm, &e))?;
    Ok(Some(id))
}
