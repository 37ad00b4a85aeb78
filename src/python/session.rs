//! What the native functions need to know about the job running on this worker thread: the
//! executions its script asked for. Thread-local because the VM is. (Its way into Redis is the
//! thread's current `store`.)

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use rustpython_vm::PyObjectRef;

use super::held::Pending;
use crate::registrations::hooks::{Chain, CommandLink};
use crate::store::RunAs;

/// An execution requested by `run()`: the builder's reader, argument, steps and reader options,
/// still as Python objects. `engine::Plan` parses it.
pub struct RawPlan {
    pub reader: String,
    pub arg: PyObjectRef,
    pub steps: PyObjectRef,
    pub options: PyObjectRef,
}

#[derive(Default)]
pub struct JobState {
    /// True while the script body runs; `run()` there is the script's own execution.
    pub in_body: bool,
    pub body_run: Option<RawPlan>,
    /// `run()` from callbacks: independent executions, run after the current job, and the
    /// asyncio future that gets their `[results, errors]` (`await run()`).
    pub nested: Vec<(RawPlan, Option<PyObjectRef>)>,
    /// An execution that may go asynchronous (see docs/python-api.md#isasyncallow).
    pub async_allowed: bool,
    /// `register()` in the script body: applied when it has finished.
    pub registrations: Vec<Pending>,
    /// The session the job belongs to, once it has one that owns registrations.
    pub session_id: Option<String>,
    /// Rebuilding a session from its source: the ids its `register()` calls had, in order.
    /// Its `execute()` writes and `run()` calls are not repeated.
    pub restoring: Option<VecDeque<String>>,
    /// The session's source: a registration made outside the body joins the session with it,
    /// a keyed time event keeps it (both outlive restarts by running it again).
    pub source: Option<Arc<str>>,
    /// A hook's execution: where `call_next` goes.
    pub hook: Option<Arc<Chain>>,
    /// An execution fired by a command a KeysReader registration follows (`get_command`,
    /// `override_reply`).
    pub link: Option<Arc<CommandLink>>,
    /// Whom the job runs as: the executions its callbacks start run as that user too.
    pub run_as: RunAs,
}

/// Where an execution comes from, for the functions that depend on it.
#[derive(Default, Clone)]
pub struct Origin {
    /// The session it belongs to (its script's, or its registration's), and its source.
    pub session: Option<String>,
    pub source: Option<Arc<str>>,
    pub hook: Option<Arc<Chain>>,
    pub link: Option<Arc<CommandLink>>,
    /// Whom it runs as (docs/sandbox.md#security-model).
    pub run_as: RunAs,
}

impl JobState {
    /// A script body's: a fresh session (whatever the previous job left is dropped).
    /// `restoring`: the registration ids of a session rebuilt from its source.
    pub fn body(
        session_id: Option<String>,
        restoring: Option<VecDeque<String>>,
        run_as: RunAs,
        source: &str,
    ) -> JobState {
        JobState { in_body: true, session_id, restoring, run_as, source: Some(source.into()), ..JobState::default() }
    }

    /// An execution's (a plain `run()`'s has no origin).
    pub fn execution(origin: Origin, async_allowed: bool) -> JobState {
        JobState {
            session_id: origin.session,
            source: origin.source,
            hook: origin.hook,
            link: origin.link,
            run_as: origin.run_as,
            async_allowed,
            ..JobState::default()
        }
    }
}

thread_local! {
    static JOB_STATE: RefCell<JobState> = RefCell::new(JobState::default());
}

pub fn with_job<R>(f: impl FnOnce(&mut JobState) -> R) -> R {
    JOB_STATE.with_borrow_mut(f)
}

/// Drops what the last job left, if this thread still has its session (an interpreter dropped
/// as its thread exits may find it gone).
pub fn forget() {
    let left = JOB_STATE.try_with(|s| s.take());
    drop(left);
}

/// True while a session is rebuilt from its source.
pub fn restoring() -> bool {
    with_job(|s| s.restoring.is_some())
}

/// The session of a job that a visit preempted, set aside until the visit ends.
pub struct SavedJob(Option<JobState>);

pub fn nest() -> SavedJob {
    SavedJob(Some(with_job(std::mem::take)))
}

impl Drop for SavedJob {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            with_job(|s| *s = outer);
        }
    }
}
