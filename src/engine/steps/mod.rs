//! The steps of a plan and the pipeline that pushes records through them.
//!
//! Stateless steps (map, filter, ...) handle a record and pass it on at once; stateful ones
//! (accumulate, the group-by family) keep what they saw and emit when the input ends, in plan
//! order, so that what one emits still flows through the steps after it.
//!
//! A callback may make its record wait (it returns a `gearsFuture`, or a coroutine): the record
//! keeps its place in its step's output, later records flow past it into the step (up to
//! `MAX_WAITING` waiting, one at a time for accumulators and reducers) and wait behind it, and the
//! pipeline picks it up again when its future is continued.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rustpython_vm::{PyObjectRef, VirtualMachine};

use super::plan::Step;
use super::report::{self, StepReport};
use crate::python::error_text;
use crate::python::future::{Capability, FutureOutcome};

mod apply;

pub(super) use apply::group_key;
use apply::{flattened, group_records};

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

/// Records a step holds back while some of its records wait for their futures.
#[derive(Default)]
struct Waits {
    /// The step's output in input order: what a waiting record will emit keeps its place, and
    /// what later records emitted waits behind it.
    queue: VecDeque<Output>,
    /// Sequence number of `queue[0]`.
    base: u64,
    waiting: usize,
    /// Records that reached the step while it was at its bound of waiting ones.
    inbox: VecDeque<PyObjectRef>,
}

enum Output {
    Ready(Vec<PyObjectRef>),
    Waiting,
}

/// A record waiting for its future: the step and what the step needs to finish it.
struct WaitingRecord {
    step: usize,
    /// Its place in the step's queue (steps that pass records on).
    seq: u64,
    /// The record itself (filter and foreach pass it on).
    record: PyObjectRef,
    /// The group it is reduced into (group reducers).
    group: usize,
}

/// What one step did with one record.
enum Applied {
    Pass(PyObjectRef),
    /// Several records, in order (flatmap).
    Many(Vec<PyObjectRef>),
    /// Filtered out, failed, or absorbed by a stateful step.
    Stop,
    /// Waits for future `id`; `group`: the group a reducer reduces it into.
    Wait {
        id: u64,
        record: PyObjectRef,
        group: usize,
    },
}

/// Waiting records a step that passes records on may have (RedisGears' bound); accumulate and
/// the group reducers handle one record at a time.
const MAX_WAITING: usize = 1000;

/// Where the pipeline's Python callbacks may make records wait: the execution the futures they
/// create belong to, and whether it may go asynchronous at all.
#[derive(Clone, Copy)]
pub struct Waiting {
    pub owner: u64,
    pub allowed: bool,
}

pub struct Pipeline {
    steps: Vec<Step>,
    states: Vec<StepState>,
    waits: Vec<Waits>,
    pending: HashMap<u64, WaitingRecord>,
    waiting: Waiting,
    /// Time spent in each step, measured only when ProfileExecutions is on.
    durations: Option<Vec<Duration>>,
    pub results: Vec<PyObjectRef>,
    pub errors: Vec<String>,
    limit_reached: bool,
}

impl Pipeline {
    pub fn new(steps: Vec<Step>, profile: bool, waiting: Waiting) -> Pipeline {
        let states = steps
            .iter()
            .map(|s| match s {
                Step::Accumulate(_) => StepState::Accumulator(None),
                Step::LocalGroupBy { .. } => StepState::Reduced(Groups::default()),
                Step::BatchGroupBy { .. } => StepState::Batched(Groups::default()),
                Step::Limit { .. } => StepState::Seen(0),
                Step::Count { .. } | Step::MergeCount => StepState::Counted(0),
                Step::CountBy { .. } | Step::MergeCountBy => {
                    StepState::CountedBy { index: HashMap::new(), counts: Vec::new() }
                }
                _ => StepState::None,
            })
            .collect();
        let durations = profile.then(|| vec![Duration::ZERO; steps.len()]);
        let waits = steps.iter().map(|_| Waits::default()).collect();
        Pipeline {
            steps,
            states,
            waits,
            pending: HashMap::new(),
            waiting,
            durations,
            results: Vec::new(),
            errors: Vec::new(),
            limit_reached: false,
        }
    }

    /// The reader stops once an error has reached the end of the plan or a limit is satisfied.
    pub fn should_stop(&self) -> bool {
        self.limit_reached || !self.errors.is_empty()
    }

    /// True while records wait for their futures, or wait behind them.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty() || self.waits.iter().any(|w| !w.inbox.is_empty())
    }

    /// True when a step holds as many waiting records as it may: read no more for now.
    pub fn full(&self) -> bool {
        self.steps.iter().zip(&self.waits).any(|(step, w)| w.waiting >= bound(step) || !w.inbox.is_empty())
    }

    pub fn push(&mut self, vm: &VirtualMachine, record: PyObjectRef) {
        self.push_from(vm, record, 0);
    }

    /// Finishes the records whose futures were continued, and lets what waited behind them on.
    /// False if none was.
    pub fn take_resolved(&mut self, vm: &VirtualMachine) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let resolved = crate::python::future::take_resolved(self.waiting.owner);
        let any = !resolved.is_empty();
        for (id, outcome) in resolved {
            self.resolve(vm, id, outcome);
        }
        any
    }

    /// Stateful step `i` emits what it holds, once nothing before it waits (see `busy`).
    pub fn flush_step(&mut self, vm: &VirtualMachine, i: usize) {
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
                    match self.call(vm, Capability::BatchReducer, &reducer, (key.clone(), list)) {
                        Ok(value) => reduced.push((key, value)),
                        Err(text) => self.errors.push(text),
                    }
                }
                match group_records(vm, reduced) {
                    Ok(records) => records,
                    Err(e) => return self.errors.push(error_text(vm, &e)),
                }
            }
            _ => return,
        };
        for record in records {
            self.push_from(vm, record, i + 1);
        }
    }

    /// The execution whose records these are.
    pub fn owner(&self) -> u64 {
        self.waiting.owner
    }

    pub fn len(&self) -> usize {
        self.steps.len()
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

    /// Hands `record` to step `from`, or to its inbox while the step is at its bound (or
    /// records wait in the inbox already: they go first).
    fn push_from(&mut self, vm: &VirtualMachine, record: PyObjectRef, from: usize) {
        match self.steps.get(from) {
            None => self.results.push(record),
            Some(step) => {
                let waits = &mut self.waits[from];
                if waits.waiting >= bound(step) || !waits.inbox.is_empty() {
                    waits.inbox.push_back(record);
                } else {
                    self.enter(vm, from, record);
                }
            }
        }
    }

    /// Runs step `i` on `record` and passes on what it emits.
    fn enter(&mut self, vm: &VirtualMachine, i: usize, record: PyObjectRef) {
        let started = self.durations.is_some().then(Instant::now);
        let applied = self.apply(vm, i, record);
        if let (Some(started), Some(durations)) = (started, self.durations.as_mut()) {
            durations[i] += started.elapsed();
        }
        let waits = &mut self.waits[i];
        match applied {
            Applied::Pass(next) if waits.queue.is_empty() => self.push_from(vm, next, i + 1),
            Applied::Many(items) if waits.queue.is_empty() => {
                for item in items {
                    self.push_from(vm, item, i + 1);
                }
            }
            Applied::Pass(next) => waits.queue.push_back(Output::Ready(vec![next])),
            Applied::Many(items) => waits.queue.push_back(Output::Ready(items)),
            Applied::Stop => {}
            Applied::Wait { id, record, group } => {
                waits.waiting += 1;
                let seq = waits.base + waits.queue.len() as u64;
                if passes_on(&self.steps[i]) {
                    waits.queue.push_back(Output::Waiting);
                }
                self.pending.insert(id, WaitingRecord { step: i, seq, record, group });
            }
        }
    }

    /// Finishes the record that waited for future `id` as its step would have, had the callback
    /// returned the outcome; then lets on what waited behind it.
    fn resolve(&mut self, vm: &VirtualMachine, id: u64, outcome: FutureOutcome) {
        let Some(WaitingRecord { step: i, seq, record, group }) = self.pending.remove(&id) else { return };
        self.waits[i].waiting -= 1;
        let emitted = match outcome {
            Err(text) => {
                self.errors.push(text);
                self.finish_absorbed(i, group, None);
                Vec::new()
            }
            Ok(value) => match &self.steps[i] {
                Step::Map(_) => vec![value],
                Step::FlatMap(_) => flattened(value),
                Step::Filter(_) => match value.try_to_bool(vm) {
                    Ok(keep) => keep.then_some(record).into_iter().collect(),
                    Err(e) => {
                        self.errors.push(error_text(vm, &e));
                        Vec::new()
                    }
                },
                Step::ForEach(_) => vec![record],
                _ => {
                    self.finish_absorbed(i, group, Some(value));
                    Vec::new()
                }
            },
        };
        let waits = &mut self.waits[i];
        if let Some(slot) = seq.checked_sub(waits.base).and_then(|at| waits.queue.get_mut(at as usize)) {
            *slot = Output::Ready(emitted);
        }
        while let Some(Output::Ready(_)) = self.waits[i].queue.front() {
            let waits = &mut self.waits[i];
            waits.base += 1;
            if let Some(Output::Ready(items)) = waits.queue.pop_front() {
                for item in items {
                    self.push_from(vm, item, i + 1);
                }
            }
        }
        while self.waits[i].waiting < bound(&self.steps[i])
            && let Some(next) = self.waits[i].inbox.pop_front()
        {
            self.enter(vm, i, next);
        }
    }

    /// An accumulator's or a group's new value, once the record reduced into it stopped
    /// waiting (`None`: it failed, and the accumulator or group starts again).
    fn finish_absorbed(&mut self, i: usize, group: usize, value: Option<PyObjectRef>) {
        match &mut self.states[i] {
            StepState::Accumulator(acc) => *acc = value,
            StepState::Reduced(groups) => {
                if let Some(entry) = groups.entries.get_mut(group) {
                    entry.1 = value;
                }
            }
            _ => {}
        }
    }
}

/// How many records step `step` may have waiting at once.
fn bound(step: &Step) -> usize {
    if passes_on(step) { MAX_WAITING } else { 1 }
}

/// Steps that pass records on (in order) rather than absorb them.
fn passes_on(step: &Step) -> bool {
    matches!(step, Step::Map(_) | Step::FlatMap(_) | Step::Filter(_) | Step::ForEach(_))
}
