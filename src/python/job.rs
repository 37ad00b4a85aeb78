//! Entering a job on a worker. What the native functions see of it (`session::JobState`), the
//! store its `execute()` reaches, the stop request that ends it and the execution its futures
//! belong to are set together by `Runtime::enter_job`, and put back together when it leaves: a
//! visit that preempts a job enters its own on top of it (`Runtime::nest` has set the preempted
//! job's state aside), so leaving restores exactly what the preempted job had.
//!
//! The job's state stays once it has left: what it asked for (its registrations, the executions
//! its callbacks started) is taken after it ends.

use std::rc::Rc;
use std::sync::Arc;

use super::future::{self, Owning};
use super::interpreter::Runtime;
use super::session::{self, JobState};
use crate::stop::{Abort, Armed};
use crate::store::{self, Installed, Store};

/// The job a worker runs.
pub struct JobContext {
    /// Its state for the native functions; `None` keeps the one set (`onRegistered`, a callback
    /// of the script body that has just run).
    pub state: Option<JobState>,
    pub store: Rc<dyn Store>,
    pub abort: Arc<Abort>,
    /// The execution whose records its futures belong to.
    pub owner: Option<u64>,
}

/// A job entered; leaving it (on drop) puts back what ran before, in reverse order: its
/// futures stop belonging to its execution, its stop request is disarmed, its store (and an
/// atomic block its code left open) is let go.
#[must_use]
pub struct InJob {
    _owning: Option<Owning>,
    _armed: Armed,
    _installed: Installed,
}

impl Runtime {
    pub fn enter_job(&self, job: JobContext) -> InJob {
        if let Some(state) = job.state {
            session::with_job(|s| *s = state);
        }
        let installed = store::install(job.store);
        let armed = self.arm(job.abort);
        let owning = job.owner.map(|owner| future::own(Some(owner)));
        InJob { _owning: owning, _armed: armed, _installed: installed }
    }
}
