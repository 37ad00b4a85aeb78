//! Executions that wait, on their home: records waiting for futures, coroutines sleeping on the
//! event loop. A waiting execution is data on its worker (its reader, its pipeline, what ends
//! it), not a thread: the worker runs other jobs meanwhile and resumes it, as a job, when a future
//! of it is continued. The event loop's callbacks run in the context of the execution that
//! scheduled them (`within`). The watchdog reaches waiting executions through `WAITING`: aborts
//! and the time limit stop them as they stop running ones.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustpython_vm::VirtualMachine;

use crate::engine::{Ended, Execution, Waiting};
use crate::executions::{self, ExecutionKey};
use crate::pool;
use crate::python::job::JobContext;
use crate::python::session::{self, JobState, Origin};
use crate::python::{RawPlan, Runtime, event_loop, future};
use crate::stop::{Abort, Reason};
use crate::store::{self, Store};
use crate::unpoisoned::Unpoisoned;

/// What an execution's code runs with, whenever it runs: its database, its stop request, where
/// it comes from, and whether it may go asynchronous.
pub struct ExecutionContext {
    /// The execution, once listed (a registration's, a script's, a nested `run()`).
    pub key: Option<ExecutionKey>,
    pub db: i32,
    pub abort: Arc<Abort>,
    pub origin: Origin,
    pub async_allowed: bool,
    /// A stage of a distributed execution whose records go on as Python objects.
    pub unreplied: bool,
}

/// What ends an execution, on its home: given its outcome and whether it was stopped.
pub type Done = Box<dyn FnOnce(&Runtime, Ended, bool)>;

/// A callback of the event loop that belongs to no execution may run this long.
const FREE_CALLBACK_LIMIT: Duration = Duration::from_secs(5);

/// An execution running or waiting on this worker.
struct Owner {
    context: ExecutionContext,
    store: Rc<dyn Store>,
    started: Instant,
}

struct Parked {
    execution: Execution,
    done: Done,
    /// A resume is queued already.
    scheduled: bool,
}

/// A waiting execution, as the watchdog sees it.
struct ResumeWaiter {
    owner: u64,
    home: usize,
    abort: Arc<Abort>,
    started: Instant,
    /// Its home was asked to end it.
    ending: bool,
}

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);
static WAITING: Mutex<Vec<ResumeWaiter>> = Mutex::new(Vec::new());

fn waiting() -> MutexGuard<'static, Vec<ResumeWaiter>> {
    WAITING.locked()
}

thread_local! {
    static OWNERS: RefCell<HashMap<u64, Rc<Owner>>> = RefCell::new(HashMap::new());
    static PARKED: RefCell<HashMap<u64, Parked>> = RefCell::new(HashMap::new());
    /// Whom the callbacks that ended executions left on this worker's loop run as: the user of
    /// those executions while they all had one user, else nobody (a callback of no execution
    /// cannot tell whose it was, so it fails closed).
    static FREED_BY: RefCell<Option<store::RunAs>> = const { RefCell::new(None) };
}

/// An execution that ran as `run_as` left callbacks on the loop.
fn freed_by(run_as: &store::RunAs) {
    FREED_BY.with_borrow_mut(|freed| match freed {
        None => *freed = Some(run_as.clone()),
        Some(user) if user == run_as => {}
        Some(user) => *user = store::RunAs::Nobody,
    });
}

/// Runs an execution of `plan` on this worker as far as it goes; `done` ends it, now or when
/// its last waiting record has been continued.
pub fn run_parked(runtime: &Runtime, plan: RawPlan, context: ExecutionContext, done: Done) {
    let owner = NEXT_OWNER.fetch_add(1, Ordering::AcqRel);
    let store: Rc<dyn Store> = super::host::store(context.db, context.origin.run_as.clone());
    let this = Rc::new(Owner { context, store, started: Instant::now() });
    OWNERS.with_borrow_mut(|o| o.insert(owner, this.clone()));
    let profile = crate::config::with(|c| c.profile_executions != 0);
    let waiting = Waiting { owner, allowed: this.context.async_allowed };
    let (execution, ended) = entered(runtime, owner, &this, |vm| {
        let mut execution = Execution::start(vm, plan, this.store.clone(), profile, waiting);
        if this.context.unreplied {
            execution = execution.unreplied();
        }
        let ended = execution.drive(vm);
        (execution, ended)
    });
    settle(runtime, owner, &this, execution, ended, done);
}

/// Ends the execution, or parks it until one of its futures is continued.
fn settle(runtime: &Runtime, owner: u64, this: &Rc<Owner>, execution: Execution, ended: Option<Ended>, done: Done) {
    let Some(ended) = ended else {
        PARKED.with_borrow_mut(|p| p.insert(owner, Parked { execution, done, scheduled: false }));
        let mut waiting = waiting();
        if !waiting.iter().any(|w| w.owner == owner) {
            let home = runtime.worker().home;
            let abort = this.context.abort.clone();
            waiting.push(ResumeWaiter { owner, home, abort, started: this.started, ending: false });
        }
        drop(waiting);
        // Continued while it ran (by one of its own callbacks): resume it.
        if future::has_resolved(owner) {
            wake(owner);
        }
        return;
    };
    OWNERS.with_borrow_mut(|o| o.remove(&owner));
    waiting().retain(|w| w.owner != owner);
    let stopped = this.context.abort.requested();
    // Its Python objects are freed in the interpreter, counted as its memory.
    runtime.enter(|vm| {
        drop(execution);
        future::owner_ended(owner);
        if event_loop::release_owner(vm, owner, stopped) && !stopped {
            freed_by(&this.context.origin.run_as);
        }
    });
    done(runtime, ended, stopped);
}

/// A future of `owner` was continued: its home resumes it after what it is doing now.
pub fn wake(owner: u64) {
    let schedule =
        PARKED.with_borrow_mut(|p| p.get_mut(&owner).is_some_and(|p| !std::mem::replace(&mut p.scheduled, true)));
    if schedule {
        pool::defer(Box::new(move |runtime| resume(runtime, owner)));
    }
}

fn resume(runtime: &Runtime, owner: u64) {
    let Some(parked) = PARKED.with_borrow_mut(|p| p.remove(&owner)) else { return };
    let Some(this) = OWNERS.with_borrow(|o| o.get(&owner).cloned()) else { return };
    let Parked { mut execution, done, .. } = parked;
    if this.context.abort.requested()
        && let Some(key) = &this.context.key
    {
        executions::stopped_waiting(key);
    }
    let ended = entered(runtime, owner, &this, |vm| execution.drive(vm));
    settle(runtime, owner, &this, execution, ended, done);
    runtime.end_job();
    super::defer_nested(runtime, this.context.db);
}

/// Runs `f` in the context of execution `owner`.
fn entered<R>(runtime: &Runtime, owner: u64, this: &Owner, f: impl FnOnce(&VirtualMachine) -> R) -> R {
    let profiled =
        this.context.origin.session.as_deref().filter(|_| crate::config::with(|c| c.profile_executions == 1));
    let _profiling = profiled.map(|session| runtime.profile(session));
    let _job = runtime.enter_job(this.job(Some(owner)));
    runtime.enter(f)
}

impl Owner {
    /// The job its code runs in: its session state, its stop request, its store.
    fn job(&self, owner: Option<u64>) -> JobContext {
        let context = &self.context;
        JobContext {
            state: Some(JobState::execution(context.origin.clone(), context.async_allowed)),
            store: self.store.clone(),
            abort: context.abort.clone(),
            owner,
        }
    }
}

/// Runs a callback of the event loop (`f`) in the context of execution `owner`, or in a context
/// of its own if it belongs to none; not at all if that execution has ended or is being stopped.
pub fn within(owner: Option<u64>, f: &mut dyn FnMut()) {
    let Some(runtime) = pool::this_runtime() else { return };
    let this = match owner {
        Some(owner) => match OWNERS.with_borrow(|o| o.get(&owner).cloned()) {
            Some(this) => this,
            None => return,
        },
        None => Rc::new(Owner {
            context: ExecutionContext {
                key: None,
                db: 0,
                abort: Abort::with_limit(FREE_CALLBACK_LIMIT),
                origin: Origin { run_as: FREED_BY.with_borrow(Clone::clone).unwrap_or_default(), ..Origin::default() },
                async_allowed: true,
                unreplied: false,
            },
            store: super::host::store(0, FREED_BY.with_borrow(Clone::clone).unwrap_or_default()),
            started: Instant::now(),
        }),
    };
    if this.context.abort.requested() {
        return;
    }
    // The turn of the loop runs callbacks of different executions, one after the other.
    let _turn = session::nest();
    let job = runtime.enter_job(this.job(None));
    f();
    drop(job);
    super::defer_nested(&runtime, this.context.db);
}

/// The watchdog's pass over waiting executions: applies the time limit (counted from the
/// execution's start) and asks the home of each one that must stop to end it.
pub fn enforce_limits(time_limit: Option<Duration>) {
    let mut waiting = waiting();
    for waiter in waiting.iter_mut() {
        if waiter.abort.own_limit().or(time_limit).is_some_and(|limit| waiter.started.elapsed() > limit) {
            waiter.abort.request(Reason::TimedOut);
        }
        if waiter.abort.requested() && !waiter.ending {
            waiter.ending = true;
            let owner = waiter.owner;
            pool::send(waiter.home, Box::new(move |runtime| resume(runtime, owner)));
        }
    }
}

/// The interpreter of this worker is going: the executions waiting here end with it (dropping
/// what ends them answers their clients), before the objects they hold go.
pub fn abandon_all() {
    let parked = PARKED.try_with(|p| std::mem::take(&mut *p.borrow_mut())).unwrap_or_default();
    let owners: Vec<u64> = parked.keys().copied().collect();
    waiting().retain(|w| !owners.contains(&w.owner));
    drop(parked);
    let _ = OWNERS.try_with(|o| o.borrow_mut().clear());
    let _ = FREED_BY.try_with(|f| f.take());
    future::drop_futures();
    event_loop::close_loop();
}
