//! The steps of a plan and the pipeline that pushes records through them.
//!
//! Stateless steps (map, filter, ...) handle a record and pass it on at once; stateful ones
//! (accumulate, the group-by family) keep what they saw and emit when the input ends, in plan
//! order, so that what one emits still flows through the steps after it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rustpython_vm::builtins::{PyList, PyStr};
use rustpython_vm::{PyObjectRef, PyResult, VirtualMachine};

use super::plan::Step;
use super::report::{self, StepReport};
use crate::python::{call_callback, error_text, fields};

/// Groups in first-seen order. A group whose reducer failed is discarded (`None`) until another
/// record of its key starts it again.
#[derive(Default)]
struct Groups {
    index: HashMap<Vec<u8>, usize>,
    entries: Vec<(PyObjectRef, Option<PyObjectRef>)>,
}

impl Groups {
    fn slot(&mut self, id: Vec<u8>, key: &PyObjectRef) -> usize {
        let next = self.entries.len();
        let slot = *self.index.entry(id).or_insert(next);
        if slot == next {
            self.entries.push((key.clone(), None));
        }
        slot
    }

    fn into_values(self) -> impl Iterator<Item = (PyObjectRef, PyObjectRef)> {
        self.entries.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

enum StepState {
    None,
    /// `Some` once a record arrived: no input, no output.
    Accumulator(Option<PyObjectRef>),
    Reduced(Groups),
    Batched(Groups),
    Seen(usize),
    Counted(usize),
    /// Counts per group key, in first-seen order.
    CountedBy {
        index: HashMap<Vec<u8>, usize>,
        counts: Vec<(PyObjectRef, i64)>,
    },
}

pub struct Pipeline {
    steps: Vec<Step>,
    states: Vec<StepState>,
    /// Time spent in each step, measured only when ProfileExecutions is on.
    durations: Option<Vec<Duration>>,
    pub results: Vec<PyObjectRef>,
    pub errors: Vec<String>,
    limit_reached: bool,
}

impl Pipeline {
    pub fn new(steps: Vec<Step>, profile: bool) -> Pipeline {
        let states = steps
            .iter()
            .map(|s| match s {
                Step::Accumulate(_) => StepState::Accumulator(None),
                Step::LocalGroupBy { .. } => StepState::Reduced(Groups::default()),
                Step::BatchGroupBy { .. } => StepState::Batched(Groups::default()),
                Step::Limit { .. } => StepState::Seen(0),
                Step::Count { .. } => StepState::Counted(0),
                Step::CountBy { .. } => StepState::CountedBy { index: HashMap::new(), counts: Vec::new() },
                _ => StepState::None,
            })
            .collect();
        let durations = profile.then(|| vec![Duration::ZERO; steps.len()]);
        Pipeline { steps, states, durations, results: Vec::new(), errors: Vec::new(), limit_reached: false }
    }

    /// The reader stops once an error has reached the end of the plan or a limit is satisfied.
    pub fn should_stop(&self) -> bool {
        self.limit_reached || !self.errors.is_empty()
    }

    pub fn push(&mut self, vm: &VirtualMachine, record: PyObjectRef) {
        self.push_from(vm, record, 0);
    }

    /// Input has ended: stateful steps emit, first to last.
    pub fn flush(&mut self, vm: &VirtualMachine) {
        for i in 0..self.steps.len() {
            let state = std::mem::replace(&mut self.states[i], StepState::None);
            let records = match (state, &self.steps[i]) {
                (StepState::Accumulator(Some(acc)), _) => vec![acc],
                (StepState::Counted(n), _) if n > 0 => vec![vm.ctx.new_int(n).into()],
                (StepState::CountedBy { counts, .. }, _) => {
                    let counts = counts.into_iter().map(|(key, n)| (key, vm.ctx.new_int(n).into()));
                    match group_records(vm, counts) {
                        Ok(records) => records,
                        Err(e) => return self.errors.push(error_text(vm, &e)),
                    }
                }
                (StepState::Reduced(groups), _) => match group_records(vm, groups.into_values()) {
                    Ok(records) => records,
                    Err(e) => return self.errors.push(error_text(vm, &e)),
                },
                (StepState::Batched(groups), Step::BatchGroupBy { reducer, .. }) => {
                    let reducer = reducer.clone();
                    let mut reduced = Vec::with_capacity(groups.entries.len());
                    for (key, list) in groups.into_values() {
                        match call_callback(vm, &reducer, (key.clone(), list)) {
                            Ok(value) => reduced.push((key, value)),
                            Err(e) => self.errors.push(error_text(vm, &e)),
                        }
                    }
                    match group_records(vm, reduced) {
                        Ok(records) => records,
                        Err(e) => return self.errors.push(error_text(vm, &e)),
                    }
                }
                _ => continue,
            };
            for record in records {
                self.push_from(vm, record, i + 1);
            }
        }
    }

    /// The steps as RG.GETEXECUTION reports them, with their measured durations.
    pub fn describe(&self, vm: &VirtualMachine) -> Vec<StepReport> {
        let mut reports = vec![report::reader_step()];
        for (i, step) in self.steps.iter().enumerate() {
            let duration = self.durations.as_ref().map_or(Duration::ZERO, |d| d[i]);
            reports.extend(report::describe(vm, step, duration));
        }
        reports
    }

    fn push_from(&mut self, vm: &VirtualMachine, record: PyObjectRef, from: usize) {
        let mut record = record;
        for i in from..self.steps.len() {
            let started = self.durations.is_some().then(Instant::now);
            let next = self.apply(vm, i, record);
            if let (Some(started), Some(durations)) = (started, self.durations.as_mut()) {
                durations[i] += started.elapsed();
            }
            match next {
                Some(next) => record = next,
                None => return,
            }
        }
        self.results.push(record);
    }

    /// Runs step `i` on one record: the record to pass on, or `None` if it stops here (filtered
    /// out, failed, absorbed by a stateful step, or already pushed on by flatmap).
    fn apply(&mut self, vm: &VirtualMachine, i: usize, record: PyObjectRef) -> Option<PyObjectRef> {
        let outcome = match &self.steps[i] {
            Step::Map(f) => call_callback(vm, f, (record,)).map(Some),
            Step::Filter(f) => call_callback(vm, f, (record.clone(),))
                .and_then(|keep| keep.try_to_bool(vm))
                .map(|keep| keep.then_some(record)),
            Step::ForEach(f) => call_callback(vm, f, (record.clone(),)).map(|_| Some(record)),
            Step::Repartition(f) => call_callback(vm, f, (record.clone(),)).map(|_| Some(record)),
            Step::Collect => Ok(Some(record)),
            Step::FlatMap(f) => match call_callback(vm, f, (record,)) {
                Ok(value) => match value.downcast_ref::<PyList>() {
                    Some(list) => {
                        // RedisGears emits a returned list last element first.
                        let items: Vec<PyObjectRef> = list.borrow_vec().iter().rev().cloned().collect();
                        for item in items {
                            self.push_from(vm, item, i + 1);
                        }
                        return None;
                    }
                    None => Ok(Some(value)),
                },
                Err(e) => Err(e),
            },
            Step::Accumulate(f) => {
                let StepState::Accumulator(acc) = &mut self.states[i] else { return None };
                let previous = acc.take().unwrap_or_else(|| vm.ctx.none());
                match call_callback(vm, f, (previous, record)) {
                    Ok(value) => *acc = Some(value),
                    Err(e) => self.errors.push(error_text(vm, &e)),
                }
                return None;
            }
            Step::LocalGroupBy { extractor, reducer, .. } => {
                let (extractor, reducer) = (extractor.clone(), reducer.clone());
                if let Err(e) = self.reduce(vm, i, &extractor, &reducer, record) {
                    self.errors.push(error_text(vm, &e));
                }
                return None;
            }
            Step::BatchGroupBy { extractor, .. } => {
                let extractor = extractor.clone();
                if let Err(e) = self.batch(vm, i, &extractor, record) {
                    self.errors.push(error_text(vm, &e));
                }
                return None;
            }
            Step::Count { .. } => {
                if let StepState::Counted(n) = &mut self.states[i] {
                    *n += 1;
                }
                return None;
            }
            Step::CountBy { extractor, .. } => {
                let extractor = extractor.clone();
                if let Err(e) = self.count_by(vm, i, &extractor, record) {
                    self.errors.push(error_text(vm, &e));
                }
                return None;
            }
            Step::Limit { length, offset } => {
                let (length, offset) = (*length, *offset);
                let StepState::Seen(seen) = &mut self.states[i] else { return None };
                let index = *seen;
                *seen += 1;
                let end = offset.saturating_add(length);
                if index + 1 >= end {
                    self.limit_reached = true;
                }
                Ok((index >= offset && index < end).then_some(record))
            }
        };
        match outcome {
            Ok(next) => next,
            Err(e) => {
                self.errors.push(error_text(vm, &e));
                None
            }
        }
    }

    fn reduce(
        &mut self,
        vm: &VirtualMachine,
        i: usize,
        extractor: &PyObjectRef,
        reducer: &PyObjectRef,
        record: PyObjectRef,
    ) -> PyResult<()> {
        let (key, id) = group_key(vm, call_callback(vm, extractor, (record.clone(),))?)?;
        let StepState::Reduced(groups) = &mut self.states[i] else { return Ok(()) };
        let slot = groups.slot(id, &key);
        let acc = groups.entries[slot].1.take().unwrap_or_else(|| vm.ctx.none());
        groups.entries[slot].1 = Some(call_callback(vm, reducer, (key, acc, record))?);
        Ok(())
    }

    fn count_by(
        &mut self,
        vm: &VirtualMachine,
        i: usize,
        extractor: &PyObjectRef,
        record: PyObjectRef,
    ) -> PyResult<()> {
        let (key, id) = group_key(vm, call_callback(vm, extractor, (record,))?)?;
        if let StepState::CountedBy { index, counts } = &mut self.states[i] {
            let next = counts.len();
            let slot = *index.entry(id).or_insert(next);
            if slot == next {
                counts.push((key, 0));
            }
            counts[slot].1 += 1;
        }
        Ok(())
    }

    /// Records counted by the reader itself, for a plan that starts with `count()`.
    pub fn add_to_count(&mut self, n: usize) {
        if let Some(StepState::Counted(count)) = self.states.first_mut() {
            *count += n;
        }
    }

    fn batch(&mut self, vm: &VirtualMachine, i: usize, extractor: &PyObjectRef, record: PyObjectRef) -> PyResult<()> {
        let (key, id) = group_key(vm, call_callback(vm, extractor, (record.clone(),))?)?;
        let StepState::Batched(groups) = &mut self.states[i] else { return Ok(()) };
        let slot = groups.slot(id, &key);
        let list = groups.entries[slot].1.get_or_insert_with(|| vm.ctx.new_list(Vec::new()).into());
        if let Some(list) = list.downcast_ref::<PyList>() {
            list.borrow_vec_mut().push(record);
        }
        Ok(())
    }
}

/// A group key is the extractor's `str` as is, anything else its `repr()`.
fn group_key(vm: &VirtualMachine, key: PyObjectRef) -> PyResult<(PyObjectRef, Vec<u8>)> {
    let key = match key.downcast_ref::<PyStr>() {
        Some(_) => key,
        None => key.repr(vm)?.into(),
    };
    let id = key.downcast_ref::<PyStr>().map(|s| s.as_wtf8().as_bytes().to_vec()).unwrap_or_default();
    Ok((key, id))
}

/// `{'key': k, 'value': v}` records, key first.
fn group_records(
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
