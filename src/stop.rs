//! Stop requests: RG.ABORTEXECUTION, a client that disconnected, the wall-time limit and the
//! memory budget all end up as a `Reason` on an `Abort`, the stop request of one script body or
//! execution. Whoever may stop it (the table, a disconnecting client, the watchdog) and the worker
//! that runs it share the request.
//!
//! How a request reaches running Python is `python::interrupt`'s business (an `Interrupt`); this
//! module only keeps the state machine: not armed → armed on a worker → ended, with the reason set
//! once (the first one wins) and a bounded number of deliveries in flight.

use crate::unpoisoned::Unpoisoned;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use crate::error::Reason;

/// One worker thread: the home it serves and which of that home's threads it is (a home gets a
/// new thread when its worker is stuck in native code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerId {
    pub home: usize,
    pub generation: u64,
}

/// Delivers a stop request to the worker running it (into its interpreter).
pub trait Interrupt: Send + Sync {
    fn interrupt(&self, abort: &Arc<Abort>);
}

/// Deliveries allowed in flight per request: enough to survive crosstalk, bounded while a worker
/// is stuck in native code and drains nothing.
const MAX_QUEUED: usize = 4;

/// The worker running an armed request.
struct Runner {
    interrupt: Arc<dyn Interrupt>,
    worker: WorkerId,
    started: Instant,
}

/// One script body's or execution's stop request.
#[derive(Default)]
pub struct Abort {
    reason: AtomicU8,
    requested_at: Mutex<Option<Instant>>,
    runner: Mutex<Option<Runner>>,
    ended: AtomicBool,
    queued: AtomicUsize,
    stuck: AtomicBool,
    /// Shared with the allocator, which sets it when this job's worker goes over its budget.
    over_memory: Arc<AtomicBool>,
    /// Requests armed above this one on its worker (a visit preempting it): it cannot be raised
    /// into until they end.
    covered: AtomicUsize,
    /// A time limit of its own, in ms (0: only `ExecutionTimeLimit`).
    limit_ms: AtomicU64,
}

impl Abort {
    pub fn new() -> Arc<Abort> {
        Arc::new(Abort::default())
    }

    /// A request the watchdog makes itself after `limit` of running, whatever
    /// `ExecutionTimeLimit` says (code that must not hold a worker for ever, like `onRegistered`).
    pub fn with_limit(limit: std::time::Duration) -> Arc<Abort> {
        let abort = Abort::default();
        abort.limit_ms.store(limit.as_millis().max(1) as u64, Ordering::Release);
        Arc::new(abort)
    }

    pub fn own_limit(&self) -> Option<std::time::Duration> {
        let ms = self.limit_ms.load(Ordering::Acquire);
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    pub fn reason(&self) -> Option<Reason> {
        Reason::from_u8(self.reason.load(Ordering::Acquire))
    }

    pub fn requested(&self) -> bool {
        self.reason().is_some()
    }

    /// Asks the execution to stop (the first reason wins). If it runs Python, the Python is
    /// interrupted; if it has not started, it will not.
    pub fn request(self: &Arc<Abort>, reason: Reason) {
        if self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            *self.requested_at.locked() = Some(Instant::now());
        }
        self.poke();
    }

    /// Sends one more delivery to the worker, unless it ended or enough are in flight.
    pub fn poke(self: &Arc<Abort>) {
        if self.queued.load(Ordering::Acquire) >= MAX_QUEUED {
            return;
        }
        self.poke_anyway();
    }

    /// Sends one more delivery even with `MAX_QUEUED` in flight: the ones in flight may wait for
    /// an eval-breaker bit that another worker's VM cleared, and then nothing else wakes this
    /// worker's VM. Not to a worker given up as stuck (it drains nothing).
    pub fn poke_anyway(self: &Arc<Abort>) {
        if self.ended.load(Ordering::Acquire) || self.stuck.load(Ordering::Acquire) {
            return;
        }
        if let Some(runner) = self.runner.locked().as_ref() {
            self.queued.fetch_add(1, Ordering::AcqRel);
            runner.interrupt.interrupt(self);
        }
    }

    /// The worker drained one delivery. Returns the reason to raise if the request is what this
    /// worker runs now (the innermost armed one); a delivery for anything else is stale.
    pub fn delivered(self: &Arc<Abort>) -> Option<Reason> {
        // Counted off whatever happens next: a delivery drained while its execution was not
        // running (between a script body and its execution) must not use up the allowance.
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let current = ARMED_HERE.with_borrow(|c| c.last().is_some_and(|a| Arc::ptr_eq(a, self)));
        if !current {
            return None;
        }
        let reason = self.reason()?;
        // Deliver again, so the next instruction raises again wherever the script caught this.
        self.poke();
        Some(reason)
    }

    /// When it was armed and on which worker, while it is armed.
    pub fn runner(&self) -> Option<(Instant, WorkerId)> {
        self.runner.locked().as_ref().map(|r| (r.started, r.worker))
    }

    pub fn requested_at(&self) -> Option<Instant> {
        *self.requested_at.locked()
    }

    pub fn over_memory(&self) -> bool {
        self.over_memory.load(Ordering::Relaxed)
    }

    /// True while a request armed above it on its worker (a preempting visit) runs.
    pub fn covered(&self) -> bool {
        self.covered.load(Ordering::Acquire) > 0
    }

    /// Restarts the clock of a pending request: it could not be delivered, through no fault of
    /// its worker (it is covered).
    pub fn restart_clock(&self) {
        if self.requested() {
            *self.requested_at.locked() = Some(Instant::now());
        }
    }

    /// Marks the request as abandoned on a stuck worker; true the first time.
    pub fn mark_stuck(&self) -> bool {
        !self.stuck.swap(true, Ordering::AcqRel)
    }
}

/// Every armed request, for the watchdog.
static ARMED: Mutex<Vec<Arc<Abort>>> = Mutex::new(Vec::new());

thread_local! {
    /// The requests armed on this worker, innermost last: a script body that preempted an
    /// execution runs above it, and only the innermost can be raised into.
    static ARMED_HERE: RefCell<Vec<Arc<Abort>>> = const { RefCell::new(Vec::new()) };
}

/// Marks `abort` as what this worker runs until the returned guard is dropped.
pub fn arm(abort: Arc<Abort>, interrupt: Arc<dyn Interrupt>, worker: WorkerId) -> Armed {
    // The same request may arm twice: a script's body, then the execution it started.
    abort.ended.store(false, Ordering::Release);
    *abort.runner.locked() = Some(Runner { interrupt, worker, started: Instant::now() });
    ARMED_HERE.with_borrow_mut(|here| {
        if let Some(outer) = here.last() {
            outer.covered.fetch_add(1, Ordering::AcqRel);
        }
        here.push(abort.clone());
    });
    crate::memory::point_at(Some(abort.over_memory.clone()));
    ARMED.locked().push(abort.clone());
    if abort.requested() {
        abort.poke(); // asked to stop before it got here
    }
    Armed(abort)
}

pub struct Armed(Arc<Abort>);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
        ARMED.locked().retain(|a| !Arc::ptr_eq(a, &self.0));
        let outer = ARMED_HERE.with_borrow_mut(|here| {
            let innermost = here.last().is_some_and(|a| Arc::ptr_eq(a, &self.0));
            here.retain(|a| !Arc::ptr_eq(a, &self.0));
            if innermost && let Some(outer) = here.last() {
                outer.covered.fetch_sub(1, Ordering::AcqRel);
            }
            here.last().cloned()
        });
        match outer {
            Some(outer) => crate::memory::point_at(Some(outer.over_memory.clone())),
            None => crate::memory::point_at(None),
        }
    }
}

/// Every armed request (the watchdog's view).
pub fn armed() -> Vec<Arc<Abort>> {
    ARMED.locked().clone()
}

/// What this worker runs now, if it was asked to stop: why.
pub fn stop_reason() -> Option<Reason> {
    ARMED_HERE.with_borrow(|here| here.last().and_then(|a| a.reason()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Interrupt for Counting {
        fn interrupt(&self, _: &Arc<Abort>) {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
    }

    #[test]
    fn first_reason_wins_and_is_raised_only_where_armed() {
        let abort = Abort::new();
        abort.request(Reason::TimedOut);
        abort.request(Reason::Aborted);
        assert_eq!(abort.reason(), Some(Reason::TimedOut));
        assert_eq!(stop_reason(), None, "not armed on this thread");
        let counting = Arc::new(Counting::default());
        let armed = arm(abort.clone(), counting.clone(), WorkerId::default());
        assert_eq!(counting.0.load(Ordering::Acquire), 1, "requested before it was armed: delivered at once");
        assert_eq!(stop_reason(), Some(Reason::TimedOut));
        assert_eq!(abort.delivered(), Some(Reason::TimedOut));
        assert_eq!(counting.0.load(Ordering::Acquire), 2, "raising delivers again");
        drop(armed);
        assert_eq!(abort.delivered(), None, "stale after it ended");
        abort.poke();
        assert_eq!(counting.0.load(Ordering::Acquire), 2, "an ended request is not delivered");
    }

    #[test]
    fn deliveries_in_flight_are_bounded() {
        let abort = Abort::new();
        let counting = Arc::new(Counting::default());
        let _armed = arm(abort.clone(), counting.clone(), WorkerId::default());
        abort.request(Reason::Aborted);
        for _ in 0..10 {
            abort.poke();
        }
        assert_eq!(counting.0.load(Ordering::Acquire), MAX_QUEUED);
    }

    #[test]
    fn a_request_armed_again_for_the_execution_is_delivered_again() {
        let abort = Abort::new();
        let counting = Arc::new(Counting::default());
        let body = arm(abort.clone(), counting.clone(), WorkerId { home: 0, generation: 1 });
        abort.request(Reason::Aborted);
        let first_asked = abort.requested_at();
        drop(body);
        assert_eq!(abort.delivered(), None, "drained after the body ended: stale");
        let _execution = arm(abort.clone(), counting.clone(), WorkerId { home: 1, generation: 1 });
        assert_eq!(counting.0.load(Ordering::Acquire), 2, "the execution gets a delivery of its own");
        assert_eq!(abort.runner().map(|(_, worker)| worker.home), Some(1));
        abort.request(Reason::TimedOut);
        assert_eq!(abort.requested_at(), first_asked, "the first request's time is kept");
        assert_eq!(abort.delivered(), Some(Reason::Aborted));
        assert!(abort.mark_stuck(), "found stuck once");
        assert!(!abort.mark_stuck());
    }

    #[test]
    fn nested_requests_raise_innermost_first() {
        let outer = Abort::new();
        let inner = Abort::new();
        let counting = Arc::new(Counting::default());
        let _outer_armed = arm(outer.clone(), counting.clone(), WorkerId::default());
        outer.request(Reason::Aborted);
        {
            let _inner_armed = arm(inner.clone(), counting.clone(), WorkerId::default());
            assert_eq!(stop_reason(), None, "the inner one was not asked to stop");
            assert_eq!(outer.delivered(), None, "the outer one waits until the inner one ends");
        }
        assert_eq!(stop_reason(), Some(Reason::Aborted));
    }
}
