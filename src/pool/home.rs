//! One home of the pool: its channels (main-thread calls, executions sent to it), what its
//! worker is doing, and how the worker takes its next piece of work.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, unbounded};

use super::Visit;
use crate::python::Interrupter;

/// How many times an idle worker looks for a visit (yielding in between) before it sleeps.
const IDLE_SPINS: usize = 16;

/// What a home's worker is doing, for choosing homes and deciding whether to preempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Activity {
    Idle = 0,
    /// Running a visit (a script body, a main-thread call): short, not preempted by bodies.
    Visiting = 1,
    /// Running a deferred job (an execution): preempted by visits.
    Executing = 2,
    /// Its worker is stuck in native code and was not replaced (over the cap): nothing reaches it.
    Lost = 3,
}

pub(super) struct Home {
    /// Main-thread calls: served before the visits queued ahead of them.
    pub(super) calls: Sender<Visit>,
    pub(super) call_queue: Receiver<Visit>,
    /// Executions sent to this home (`send`).
    pub(super) jobs: Sender<Visit>,
    pub(super) job_queue: Receiver<Visit>,
    /// The thread serving this home now (a new one when it is replaced).
    pub(super) generation: AtomicU64,
    pub(super) activity: AtomicU8,
    /// Visits queued or running plus deferred jobs: how busy the home is.
    pub(super) load: AtomicUsize,
    /// Main-thread calls queued or running: they preempt whatever the worker runs.
    pub(super) pending_calls: AtomicUsize,
    /// Preemptions sent and not yet drained by the worker's interpreter.
    pub(super) preempting: AtomicUsize,
    /// The interrupter of the interpreter serving this home now.
    pub(super) interrupter: Mutex<Option<Arc<Interrupter>>>,
    /// The retirement flag of the thread serving this home now.
    pub(super) retired: Mutex<Arc<AtomicBool>>,
}

impl Home {
    pub(super) fn new() -> Home {
        let (calls, call_queue) = unbounded::<Visit>();
        let (jobs, job_queue) = unbounded::<Visit>();
        Home {
            calls,
            call_queue,
            jobs,
            job_queue,
            generation: AtomicU64::new(0),
            activity: AtomicU8::new(Activity::Idle as u8),
            load: AtomicUsize::new(0),
            pending_calls: AtomicUsize::new(0),
            preempting: AtomicUsize::new(0),
            interrupter: Mutex::new(None),
            retired: Mutex::new(Arc::new(AtomicBool::new(false))),
        }
    }
}

/// Where `next_visit` took its work from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Call,
    Body,
    /// An execution sent to the home: not a visit, taken only by an idle worker.
    Job,
}

impl Home {
    /// The next visit: main-thread calls first, then (if `bodies` is given) bodies of new
    /// sessions, then (if `jobs`) executions sent here; waits up to `timeout` (`None`: for
    /// ever). `None` when nothing came.
    pub(super) fn next_visit(
        &self,
        bodies: Option<&Receiver<Visit>>,
        jobs: bool,
        timeout: Option<Duration>,
    ) -> Option<(Visit, Source)> {
        let queues: Vec<(&Receiver<Visit>, Source)> = [(&self.call_queue, Source::Call)]
            .into_iter()
            .chain(bodies.map(|b| (b, Source::Body)))
            .chain(jobs.then_some((&self.job_queue, Source::Job)))
            .collect();
        let ready = || queues.iter().find_map(|(q, source)| q.try_recv().ok().map(|v| (v, *source)));
        if let Some(visit) = ready() {
            return Some(visit);
        }
        if timeout == Some(Duration::ZERO) {
            return None;
        }
        // Under load the next visit is usually a few microseconds away: look again a few times
        // before registering with the channels and sleeping, which costs more than the wait.
        for _ in 0..IDLE_SPINS {
            thread::yield_now();
            if let Some(visit) = ready() {
                return Some(visit);
            }
        }
        let mut select = Select::new();
        for (queue, _) in &queues {
            select.recv(queue);
        }
        let ready = match timeout {
            Some(timeout) => select.select_timeout(timeout).ok()?,
            None => select.select(),
        };
        let (queue, source) = queues[ready.index()];
        ready.recv(queue).ok().map(|v| (v, source))
    }
}
