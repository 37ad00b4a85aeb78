//! One step applied to one record: the callbacks' calls (where their records may wait), and
//! what stateful steps keep of what they see.

use rustpython_vm::builtins::{PyInt, PyList, PyStr};
use rustpython_vm::function::IntoFuncArgs;
use rustpython_vm::{PyObjectRef, PyResult, VirtualMachine};

use super::{Applied, Pipeline, StepState};
use crate::engine::plan::Step;
use crate::error::GearsError;
use crate::python::future::{Calling, Capability, Settled};
use crate::python::{call_callback, error_text, fields};

impl Pipeline {
    /// Calls a step callback for execution `waiting.owner`: the record may wait where `capability`
    /// allows (and the execution may go asynchronous).
    pub(super) fn call_settled(
        &self,
        vm: &VirtualMachine,
        capability: Capability,
        f: &PyObjectRef,
        args: impl IntoFuncArgs,
    ) -> Settled {
        let capability = match capability {
            Capability::Wait if !self.waiting.allowed => Capability::Forbidden,
            other => other,
        };
        let calling = Calling::enter(self.waiting.owner, capability);
        let value = call_callback(vm, f, args);
        calling.settle(vm, value, |coroutine| crate::python::await_coroutine(vm, coroutine))
    }

    /// Calls a callback whose record cannot wait: its value or its error's text.
    pub(super) fn call(
        &self,
        vm: &VirtualMachine,
        capability: Capability,
        f: &PyObjectRef,
        args: impl IntoFuncArgs,
    ) -> Result<PyObjectRef, String> {
        match self.call_settled(vm, capability, f, args) {
            Settled::Value { value, .. } => Ok(value),
            Settled::Failed { error, .. } => Err(error),
            Settled::Wait(_) => Err(GearsError::StepNotAsync.to_string()),
        }
    }

    /// The group key of `record` (`extractor`'s value): as stored, and as compared.
    pub(super) fn key_of(
        &self,
        vm: &VirtualMachine,
        extractor: &PyObjectRef,
        record: PyObjectRef,
    ) -> Result<(PyObjectRef, Vec<u8>), String> {
        let key = self.call(vm, Capability::Extractor, extractor, (record,))?;
        group_key(vm, key).map_err(|e| error_text(vm, &e))
    }

    /// Runs step `i` on one record.
    pub(super) fn apply(&mut self, vm: &VirtualMachine, i: usize, record: PyObjectRef) -> Applied {
        let settled = match &self.steps[i] {
            Step::Map(f) | Step::FlatMap(f) => self.call_settled(vm, Capability::Wait, f, (record.clone(),)),
            Step::Filter(f) | Step::ForEach(f) => self.call_settled(vm, Capability::Wait, f, (record.clone(),)),
            Step::Repartition(f) => match self.call(vm, Capability::Extractor, f, (record.clone(),)) {
                Ok(_) => return Applied::Pass(record),
                Err(error) => Settled::Failed { error, discarded: false },
            },
            Step::Collect => return Applied::Pass(record),
            Step::Accumulate(f) => {
                let f = f.clone();
                let StepState::Accumulator(acc) = &mut self.states[i] else { return Applied::Stop };
                let previous = acc.take().unwrap_or_else(|| vm.ctx.none());
                let settled = self.call_settled(vm, Capability::Wait, &f, (previous, record.clone()));
                return self.absorbed(vm, i, 0, record, settled);
            }
            Step::LocalGroupBy { extractor: e, reducer, .. } => {
                let (e, reducer) = (e.clone(), reducer.clone());
                return self.reduce(vm, i, &e, &reducer, record);
            }
            Step::BatchGroupBy { extractor: e, .. } => {
                let e = e.clone();
                if let Err(text) = self.batch(vm, i, &e, record) {
                    self.errors.push(text);
                }
                return Applied::Stop;
            }
            Step::Count { .. } => {
                if let StepState::Counted(n) = &mut self.states[i] {
                    *n += 1;
                }
                return Applied::Stop;
            }
            Step::CountBy { extractor: e, .. } => {
                let e = e.clone();
                if let Err(text) = self.count_by(vm, i, &e, record) {
                    self.errors.push(text);
                }
                return Applied::Stop;
            }
            Step::MergeCount => {
                let n = record.downcast_ref::<PyInt>().and_then(|n| n.try_to_primitive::<usize>(vm).ok());
                if let (StepState::Counted(count), Some(n)) = (&mut self.states[i], n) {
                    *count += n;
                }
                return Applied::Stop;
            }
            Step::MergeCountBy => {
                if let Err(e) = self.merge_count_by(vm, i, record) {
                    self.errors.push(error_text(vm, &e));
                }
                return Applied::Stop;
            }
            Step::Limit { length, offset } => {
                let (length, offset) = (*length, *offset);
                return self.limit(i, length, offset, record);
            }
        };
        self.settled(vm, i, record, settled)
    }

    /// `limit(length, offset)`: passes the records in its window; the last one stops the reader.
    pub(super) fn limit(&mut self, i: usize, length: usize, offset: usize, record: PyObjectRef) -> Applied {
        let StepState::Seen(seen) = &mut self.states[i] else { return Applied::Stop };
        let index = *seen;
        *seen += 1;
        let end = offset.saturating_add(length);
        if index + 1 >= end {
            self.limit_reached = true;
        }
        if index >= offset && index < end { Applied::Pass(record) } else { Applied::Stop }
    }

    /// What a passing step (map, flatmap, filter, foreach) does with its callback's outcome.
    pub(super) fn settled(&mut self, vm: &VirtualMachine, i: usize, record: PyObjectRef, settled: Settled) -> Applied {
        match settled {
            Settled::Wait(id) => Applied::Wait { id, record, group: 0 },
            Settled::Failed { error, .. } => {
                self.errors.push(error);
                Applied::Stop
            }
            Settled::Value { value, .. } => match &self.steps[i] {
                Step::Map(_) => Applied::Pass(value),
                Step::FlatMap(_) => Applied::Many(flattened(value)),
                Step::Filter(_) => match value.try_to_bool(vm) {
                    Ok(true) => Applied::Pass(record),
                    Ok(false) => Applied::Stop,
                    Err(e) => {
                        self.errors.push(error_text(vm, &e));
                        Applied::Stop
                    }
                },
                _ => Applied::Pass(record),
            },
        }
    }

    pub(super) fn reduce(
        &mut self,
        vm: &VirtualMachine,
        i: usize,
        extractor: &PyObjectRef,
        reducer: &PyObjectRef,
        record: PyObjectRef,
    ) -> Applied {
        let (key, id) = match self.key_of(vm, extractor, record.clone()) {
            Ok(key) => key,
            Err(text) => {
                self.errors.push(text);
                return Applied::Stop;
            }
        };
        let StepState::Reduced(groups) = &mut self.states[i] else { return Applied::Stop };
        let slot = groups.slot(id, &key);
        let acc = groups.entries[slot].1.take().unwrap_or_else(|| vm.ctx.none());
        let settled = self.call_settled(vm, Capability::Wait, reducer, (key, acc, record.clone()));
        self.absorbed(vm, i, slot, record, settled)
    }

    /// What an accumulator or a group reducer (step `i`, group `group`) did with a record: its
    /// new value, or the wait for it. RedisGears' quirk: when the callback made a future and did
    /// not return it, the value becomes `None`, also when it then raised.
    pub(super) fn absorbed(
        &mut self,
        vm: &VirtualMachine,
        i: usize,
        group: usize,
        record: PyObjectRef,
        settled: Settled,
    ) -> Applied {
        match settled {
            Settled::Wait(id) => return Applied::Wait { id, record, group },
            Settled::Value { value, discarded } => {
                let value = if discarded { vm.ctx.none() } else { value };
                self.finish_absorbed(i, group, Some(value));
            }
            Settled::Failed { error, discarded } => {
                self.errors.push(error);
                self.finish_absorbed(i, group, discarded.then(|| vm.ctx.none()));
            }
        }
        Applied::Stop
    }

    pub(super) fn count_by(
        &mut self,
        vm: &VirtualMachine,
        i: usize,
        extractor: &PyObjectRef,
        record: PyObjectRef,
    ) -> Result<(), String> {
        let (key, id) = self.key_of(vm, extractor, record)?;
        self.add_to_group_count(i, key, id, 1);
        Ok(())
    }

    /// One shard's count of a key (`{'key': k, 'value': n}`), added to the others'.
    pub(super) fn merge_count_by(&mut self, vm: &VirtualMachine, i: usize, record: PyObjectRef) -> PyResult<()> {
        let names = fields(vm);
        let key = record.get_item(names.key, vm)?;
        let n = record.get_item(names.value, vm)?.try_into_value::<i64>(vm)?;
        let (key, id) = group_key(vm, key)?;
        self.add_to_group_count(i, key, id, n);
        Ok(())
    }

    fn add_to_group_count(&mut self, i: usize, key: PyObjectRef, id: Vec<u8>, n: i64) {
        if let StepState::CountedBy { index, counts } = &mut self.states[i] {
            let next = counts.len();
            let slot = *index.entry(id).or_insert(next);
            if slot == next {
                counts.push((key, 0));
            }
            counts[slot].1 += n;
        }
    }

    /// Records counted by the reader itself, for a plan that starts with `count()`.
    pub fn add_to_count(&mut self, n: usize) {
        if let Some(StepState::Counted(count)) = self.states.first_mut() {
            *count += n;
        }
    }

    pub(super) fn batch(
        &mut self,
        vm: &VirtualMachine,
        i: usize,
        extractor: &PyObjectRef,
        record: PyObjectRef,
    ) -> Result<(), String> {
        let (key, id) = self.key_of(vm, extractor, record.clone())?;
        let StepState::Batched(groups) = &mut self.states[i] else { return Ok(()) };
        let slot = groups.slot(id, &key);
        let list = groups.entries[slot].1.get_or_insert_with(|| vm.ctx.new_list(Vec::new()).into());
        if let Some(list) = list.downcast_ref::<PyList>() {
            list.borrow_vec_mut().push(record);
        }
        Ok(())
    }
}

/// What a flatmap callback's value emits: a list's items, last first (as RedisGears does), or
/// the value itself.
pub(super) fn flattened(value: PyObjectRef) -> Vec<PyObjectRef> {
    match value.downcast_ref::<PyList>() {
        Some(list) => list.borrow_vec().iter().rev().cloned().collect(),
        None => vec![value],
    }
}

/// A group key is the extractor's `str` as is, anything else its `repr()`.
pub(in crate::engine) fn group_key(vm: &VirtualMachine, key: PyObjectRef) -> PyResult<(PyObjectRef, Vec<u8>)> {
    let key = match key.downcast_ref::<PyStr>() {
        Some(_) => key,
        None => key.repr(vm)?.into(),
    };
    let id = key.downcast_ref::<PyStr>().map(|s| s.as_wtf8().as_bytes().to_vec()).unwrap_or_default();
    Ok((key, id))
}

/// `{'key': k, 'value': v}` records, key first.
pub(super) fn group_records(
    vm: &VirtualMachine,
    entries: impl IntoIterator<Item = (PyObjectRef, PyObjectRef)>,
) -> PyResult<Vec<PyObjectRef>> {
    let names = fields(vm);
    entries
        .into_iter()
        .map(|(key, value)| {
            let dict = vm.ctx.new_dict();
            dict.set_item(names.key, key, vm)?;
            dict.set_item(names.value, value, vm)?;
            Ok(dict.into())
        })
        .collect()
}
