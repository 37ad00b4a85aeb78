//! A worker thread's side of its home: the loop that runs visits and jobs, serving visits
//! nested in a job (the idle hook), and what happens after a panic or a stuck native call.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::home::Source;
use super::{Activity, DEFERRED, NESTED_PANIC, POOL, Pool, Visit, WORKER, preempt_for_bodies};
use crate::python::{Runtime, event_loop, future};
use crate::redis::log;
use crate::stop::WorkerId;
use crate::unpoisoned::Unpoisoned;

/// Runs the visits waiting for this worker, nested in whatever it is doing. Not inside an
/// `atomic()` block: a visit would run, and write, inside another script's atomic section, so
/// visits wait for the block's end there.
pub(super) fn serve_now() {
    serve(Duration::ZERO);
}

/// The idle hook (`crate::idle`): waits up to `timeout` for a visit and runs what arrives.
fn serve(timeout: Duration) {
    let Some((home, runtime)) = WORKER.with_borrow(Clone::clone) else {
        thread::sleep(timeout);
        return;
    };
    let Some(pool) = POOL.get() else { return };
    if crate::redis::gil::holding() {
        thread::sleep(timeout);
        return;
    }
    let home_ref = &pool.homes[home];
    // A body taken here would defer its execution behind the job this worker is in the middle
    // of: only when no worker is idle to take it, and by the least loaded (a preemption can
    // arrive late, after another home took the body it was sent for).
    let mut bodies = pool.should_take_body(home).then_some(&pool.body_queue);
    let mut next = home_ref.next_visit(bodies, false, Some(timeout));
    while let Some((visit, source)) = next {
        if run_visit(pool, home, &runtime, visit, true) {
            // Logged now: the interpreter is rebuilt only when the preempted job ends, and the
            // executions deferred here are dropped with it.
            log::warning("rustgears: a visit panicked; this worker's interpreter is rebuilt after its current job");
            NESTED_PANIC.set(true);
        }
        if source == Source::Body {
            // One per preemption: the next one goes to whichever home is least loaded now.
            bodies = None;
            preempt_for_bodies(pool, false);
        }
        next = home_ref.next_visit(bodies, false, Some(Duration::ZERO));
    }
}

/// Runs one visit, at the top of the worker's loop or `nested` in what the worker was doing;
/// true if it panicked.
fn run_visit(pool: &Pool, home: usize, runtime: &Runtime, visit: Visit, nested: bool) -> bool {
    let activity = &pool.homes[home].activity;
    let outer = activity.swap(Activity::Visiting as u8, Ordering::AcqRel);
    let nesting = nested.then(|| runtime.nest());
    // A visit that panics must not unwind through the job it preempted.
    let panicked = catch_unwind(AssertUnwindSafe(|| visit(runtime))).is_err();
    drop(nesting);
    activity.store(outer, Ordering::Release);
    panicked
}

fn build(worker: WorkerId) -> Result<Runtime, String> {
    // Counted: the interpreter's own start-up memory is part of what RG.PYSTATS reports.
    catch_unwind(|| crate::memory::counted(|| Runtime::new(worker)))
        .unwrap_or_else(|_| Err("building the interpreter panicked".to_owned()))
}

/// A worker's life: builds its interpreter and runs its home's visits and jobs until the pool
/// goes; a job that panicked costs the interpreter, rebuilt at once.
pub(super) fn work(pool: &'static Pool, worker: WorkerId, retired: Arc<AtomicBool>) {
    let home = worker.home;
    let home_ref = &pool.homes[home];
    let mut runtime = match build(worker) {
        Ok(runtime) => Rc::new(runtime),
        Err(e) => {
            log::warning(&format!("rustgears: worker {home} could not build a Python interpreter: {e}"));
            // Still take visits, so none waits forever: dropping one answers its client.
            while let Some((visit, _)) = home_ref.next_visit(None, true, None) {
                drop(visit);
            }
            return;
        }
    };
    crate::idle::set_hook(serve);
    loop {
        WORKER.set(Some((home, runtime.clone())));
        *home_ref.interrupter.locked() = Some(runtime.interrupter());
        let Some(panicked) = turn(pool, home, &runtime) else { return };
        let panicked = panicked || NESTED_PANIC.take() || runtime.poisoned();
        if retired.load(Ordering::Acquire) && !back_from_native(pool, home, &retired) {
            return;
        }
        if panicked {
            rebuild(worker, &mut runtime);
        }
    }
}

/// Runs the next thing this worker should: a visit, a turn of the event loop, a deferred or
/// queued job; else sleeps until one comes. True if it panicked; `None` when the pool is gone.
fn turn(pool: &'static Pool, home: usize, runtime: &Runtime) -> Option<bool> {
    let home_ref = &pool.homes[home];
    let deferred = || DEFERRED.with_borrow_mut(VecDeque::pop_front);
    // Bodies of new sessions only when no execution waits here: they would defer theirs
    // behind it while another worker may be free.
    let waiting = !DEFERRED.with_borrow(VecDeque::is_empty) || !home_ref.job_queue.is_empty() || event_loop::is_due();
    let bodies = (!waiting).then_some(&pool.body_queue);
    let executing = |job: Box<dyn FnOnce(&Runtime) + '_>| {
        home_ref.activity.store(Activity::Executing as u8, Ordering::Release);
        let panicked = contain(|| job(runtime));
        home_ref.activity.store(Activity::Idle as u8, Ordering::Release);
        panicked
    };
    // A turn of the event loop is a job like an execution: the callbacks ready when it starts.
    Some(if let Some((visit, _)) = home_ref.next_visit(bodies, false, Some(Duration::ZERO)) {
        run_visit(pool, home, runtime, visit, false)
    } else if event_loop::is_due() {
        executing(Box::new(event_loop::run_ready))
    } else if let Some(job) = deferred() {
        executing(job)
    } else if let Ok(job) = home_ref.job_queue.try_recv() {
        executing(job)
    } else if future::sweep(runtime) {
        // What the sweep freed may have continued futures: look again before sleeping.
        false
    } else {
        // Sleeps until work comes or the loop is due.
        let due = event_loop::due().map(|due| due.saturating_duration_since(Instant::now()));
        match home_ref.next_visit(Some(&pool.body_queue), true, due) {
            Some((job, Source::Job)) => executing(job),
            Some((visit, _)) => run_visit(pool, home, runtime, visit, false),
            None if due.is_some() => false,
            None => return None,
        }
    })
}

/// A retired worker whose native call returned: exits if its home has a replacement (false),
/// else serves its home again (the cap of stuck workers was reached).
fn back_from_native(pool: &Pool, home: usize, retired: &Arc<AtomicBool>) -> bool {
    let home_ref = &pool.homes[home];
    pool.stuck.fetch_sub(1, Ordering::AcqRel);
    // Its deferred executions were answered by the watchdog; dropping them is all.
    DEFERRED.with_borrow_mut(VecDeque::clear);
    let current = home_ref.retired.locked().clone();
    if !Arc::ptr_eq(&current, retired) {
        log::notice(&format!("rustgears: stuck worker {home} returned and exits"));
        WORKER.set(None);
        return false;
    }
    log::notice(&format!("rustgears: stuck worker {home} returned and serves its home again"));
    retired.store(false, Ordering::Release);
    home_ref.activity.store(Activity::Idle as u8, Ordering::Release);
    true
}

/// After a panic: a fresh interpreter for this worker.
fn rebuild(worker: WorkerId, runtime: &mut Rc<Runtime>) {
    log::warning("rustgears: a job panicked; rebuilding this worker's interpreter");
    // Executions left deferred hold objects of the old interpreter: drop them (each answers its
    // clients) before it goes.
    DEFERRED.with_borrow_mut(VecDeque::clear);
    WORKER.set(None);
    match build(worker) {
        Ok(fresh) => {
            let old = std::mem::replace(runtime, Rc::new(fresh));
            // Tearing down a VM left mid-panic may panic again: contain it, leak if so.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(old)));
        }
        Err(e) => log::warning(&format!("rustgears: could not rebuild the interpreter: {e}")),
    }
}

/// Runs `f`; true if it panicked.
fn contain(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}
