//! `gearsFuture`: a record that waits. A step callback creates one for the record it handles and
//! returns it; whoever holds it later continues it (`continueRun` / `continueFailed`), and the
//! outcome goes to the execution that waits for it, which its home resumes.
//!
//! All of it lives on one worker thread: a future is a Python object of its interpreter, and only
//! the code of that interpreter can reach it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use rustpython_vm::{AsObject, PyObjectRef, PyResult, VirtualMachine};

use super::errors::error_text;
use crate::error::GearsError;

/// What continuing a future gave: the value it was continued with, or the error its record
/// becomes.
pub type FutureOutcome = Result<PyObjectRef, String>;

/// What the step running a callback allows its record to do.
#[derive(Clone, Copy)]
pub enum Capability {
    /// Wait: map, flatmap, filter, foreach, accumulate and the group reducers.
    Wait,
    /// Never: extractors (and repartition's).
    Extractor,
    /// Never: batchgroupby reducers.
    BatchReducer,
    /// Not here: the execution may not go asynchronous (a sync trigger in MULTI, Lua, ...).
    Forbidden,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FutureState {
    /// Created by the callback running now, which has not returned it yet.
    Created,
    /// Returned: its record waits for it.
    Returned,
    Continued,
}

struct FutureEntry {
    owner: u64,
    state: FutureState,
}

/// The callback that runs now, and the future it created.
struct Call {
    owner: u64,
    capability: Capability,
    created: Option<(u64, PyObjectRef)>,
}

thread_local! {
    static FUTURES: RefCell<HashMap<u64, FutureEntry>> = RefCell::new(HashMap::new());
    static NEXT_FUTURE_ID: Cell<u64> = const { Cell::new(1) };
    /// Innermost last: a callback may run an execution of its own (a sync trigger through
    /// `execute()`), whose callbacks run above it.
    static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
    /// Outcomes by the execution waiting for them, in the order they came.
    static RESOLVED: RefCell<HashMap<u64, Vec<(u64, FutureOutcome)>>> = RefCell::new(HashMap::new());
    /// The execution whose code runs now (its steps, or a callback of the event loop for it).
    static RUNNING_OWNER: Cell<Option<u64>> = const { Cell::new(None) };
    /// A record started waiting since the last sweep (see `sweep`).
    static SWEEP: Cell<bool> = const { Cell::new(false) };
}

/// Runs the cycle collector if a record started waiting since it last ran: a future dropped in a
/// reference cycle is freed only by it (which fails its record), and an idle interpreter does not
/// run it by itself. The worker calls this before it sleeps; true if it ran.
pub fn sweep(runtime: &super::Runtime) -> bool {
    let due = SWEEP.replace(false);
    if due {
        runtime.enter(|vm| vm.state.gc.collect_force(2));
    }
    due
}

/// The execution whose code runs now.
pub fn running_owner() -> Option<u64> {
    RUNNING_OWNER.get()
}

/// Makes `owner` the execution whose code runs now; returns the previous one.
pub fn replace_running_owner(owner: Option<u64>) -> Option<u64> {
    RUNNING_OWNER.replace(owner)
}

/// Makes `owner` the execution whose code runs now, until the guard is dropped.
pub fn own(owner: Option<u64>) -> Owning {
    Owning(replace_running_owner(owner))
}

pub struct Owning(Option<u64>);

impl Drop for Owning {
    fn drop(&mut self) {
        RUNNING_OWNER.set(self.0);
    }
}

/// A step callback running for execution `owner`; ended by `Calling::settle`.
pub struct Calling(());

impl Calling {
    pub fn enter(owner: u64, capability: Capability) -> Calling {
        CALLS.with_borrow_mut(|c| c.push(Call { owner, capability, created: None }));
        Calling(())
    }

    /// What the callback's `value` means for its record. A coroutine becomes a future continued
    /// by it (`start` runs it on the event loop and returns that future).
    pub fn settle(self, vm: &VirtualMachine, value: PyResult, start: impl FnOnce(PyObjectRef) -> PyResult) -> Settled {
        // A refused coroutine is the record's error as it is: RedisGears finds it in C, not in
        // Python, so no traceback comes with it.
        let value = match value {
            Ok(value) if value.class().is(vm.ctx.types.coroutine_type.as_object()) => match self.capability() {
                Capability::Wait => start(value).map_err(|e| error_text(vm, &e)),
                Capability::Extractor => Err(GearsError::CoroutineOnExtractor.to_string()),
                Capability::BatchReducer => Err(GearsError::CoroutineOnReduce.to_string()),
                Capability::Forbidden => Err(GearsError::AsyncNotAllowed.to_string()),
            },
            other => other.map_err(|e| error_text(vm, &e)),
        };
        let created = CALLS.with_borrow_mut(|c| c.last_mut().and_then(|call| call.created.take()));
        drop(self);
        match (value, created) {
            (Ok(value), Some((id, future))) if value.is(&future) => {
                FUTURES.with_borrow_mut(|f| f.get_mut(&id).map(|e| e.state = FutureState::Returned));
                SWEEP.set(true);
                Settled::Wait(id)
            }
            (value, created) => {
                let discarded = created.map(|(id, _)| FUTURES.with_borrow_mut(|f| f.remove(&id))).is_some();
                match value {
                    Ok(value) => Settled::Value { value, discarded },
                    Err(e) => Settled::Failed { error: e, discarded },
                }
            }
        }
    }

    fn capability(&self) -> Capability {
        CALLS.with_borrow(|c| c.last().map_or(Capability::Forbidden, |call| call.capability))
    }
}

impl Drop for Calling {
    fn drop(&mut self) {
        let popped = CALLS.with_borrow_mut(Vec::pop);
        drop(popped);
    }
}

/// What became of a record a callback handled.
pub enum Settled {
    /// It waits for future `id`.
    Wait(u64),
    /// `discarded`: a future was created and not returned (RedisGears then sets an accumulator
    /// to `None`).
    Value {
        value: PyObjectRef,
        discarded: bool,
    },
    Failed {
        error: String,
        discarded: bool,
    },
}

/// `gearsFuture()`: a future for the record of the callback running now; `future` is the object.
pub fn new_future(future: PyObjectRef) -> Result<u64, GearsError> {
    CALLS.with_borrow_mut(|c| {
        let Some(call) = c.last_mut() else { return Err(GearsError::FutureOutsideStep) };
        match call.capability {
            Capability::Extractor | Capability::BatchReducer => return Err(GearsError::StepNotAsync),
            Capability::Forbidden => return Err(GearsError::AsyncNotAllowed),
            Capability::Wait => {}
        }
        if call.created.is_some() {
            return Err(GearsError::FutureTwice);
        }
        let id = NEXT_FUTURE_ID.get();
        NEXT_FUTURE_ID.set(id + 1);
        FUTURES.with_borrow_mut(|f| f.insert(id, FutureEntry { owner: call.owner, state: FutureState::Created }));
        call.created = Some((id, future));
        Ok(id)
    })
}

/// `continueRun` / `continueFailed`. A future whose record no longer waits (its execution ended,
/// or the callback did not return it) is continued to no effect.
pub fn resolve(id: u64, outcome: FutureOutcome) -> Result<(), GearsError> {
    let owner = FUTURES.with_borrow_mut(|f| {
        let Some(entry) = f.get_mut(&id) else { return Ok(None) };
        match entry.state {
            FutureState::Created => Err(GearsError::FutureNotReturned),
            FutureState::Continued => Err(GearsError::FutureContinuedTwice),
            FutureState::Returned => {
                entry.state = FutureState::Continued;
                Ok(Some(entry.owner))
            }
        }
    })?;
    if let Some(owner) = owner {
        RESOLVED.with_borrow_mut(|r| r.entry(owner).or_default().push((id, outcome)));
        super::upcalls::upcalls().wake(owner);
    }
    Ok(())
}

/// The future object was freed. One whose record still waits fails it: nothing can continue it
/// any more.
pub fn dropped(id: u64) {
    let Ok(Some(entry)) = FUTURES.try_with(|f| f.borrow_mut().remove(&id)) else { return };
    if entry.state == FutureState::Returned {
        let error = GearsError::FutureDropped.to_string();
        RESOLVED.with_borrow_mut(|r| r.entry(entry.owner).or_default().push((id, Err(error))));
        super::upcalls::upcalls().wake(entry.owner);
    }
}

/// The execution `owner` of a future, while its record waits.
pub fn owner_of(id: u64) -> Option<u64> {
    FUTURES.with_borrow(|f| f.get(&id).map(|e| e.owner))
}

/// The outcomes that came for `owner`'s records since it last looked.
pub fn take_resolved(owner: u64) -> Vec<(u64, FutureOutcome)> {
    RESOLVED.with_borrow_mut(|r| r.remove(&owner)).unwrap_or_default()
}

/// True if outcomes wait for `owner`.
pub fn has_resolved(owner: u64) -> bool {
    RESOLVED.with_borrow(|r| r.contains_key(&owner))
}

/// `owner` ended: its futures are continued to no effect from now on.
pub fn owner_ended(owner: u64) {
    FUTURES.with_borrow_mut(|f| f.retain(|_, e| e.owner != owner));
    let outcomes = RESOLVED.with_borrow_mut(|r| r.remove(&owner));
    drop(outcomes);
}

/// The interpreter is going: what refers to its objects goes first.
pub fn drop_futures() {
    let _ = FUTURES.try_with(|f| f.borrow_mut().clear());
    let calls = CALLS.try_with(|c| std::mem::take(&mut *c.borrow_mut()));
    drop(calls);
    let outcomes = RESOLVED.try_with(|r| std::mem::take(&mut *r.borrow_mut()));
    drop(outcomes);
}
