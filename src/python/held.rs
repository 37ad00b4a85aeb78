//! The Python callbacks of the registrations whose sessions live on this worker: their steps
//! (functions sharing their session's globals) and `onRegistered`. Thread-local because the
//! interpreter is; emptied when the interpreter goes, and rebuilt from the session's source
//! (`sessions::registered`) wherever one is missing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rustpython_vm::PyObjectRef;

use crate::registrations::Spec;

/// A registration's Python side.
#[derive(Clone)]
pub struct Callbacks {
    /// The plan's steps, final ones included, as `run()` would pass them.
    pub steps: PyObjectRef,
    pub on_registered: Option<PyObjectRef>,
}

/// A registration recorded by `register()`, not applied yet.
pub struct Pending {
    pub spec: Spec,
    pub callbacks: Callbacks,
}

thread_local! {
    /// By registration id, with the load generation they were made in.
    static HELD: RefCell<HashMap<String, (u64, Callbacks)>> = RefCell::new(HashMap::new());
}

/// Bumped when a load replaces every registration: callbacks held from before are stale on
/// every worker at once (ids are reused, and a loaded session's globals start afresh).
static GENERATION: AtomicU64 = AtomicU64::new(0);

pub fn keep_callbacks(id: &str, callbacks: Callbacks) {
    let generation = GENERATION.load(Ordering::Acquire);
    let stale = HELD.with_borrow_mut(|held| held.insert(id.to_owned(), (generation, callbacks)));
    drop(stale);
}

pub fn callbacks_of(id: &str) -> Option<Callbacks> {
    let generation = GENERATION.load(Ordering::Acquire);
    HELD.with_borrow(|held| held.get(id).filter(|(g, _)| *g == generation).map(|(_, c)| c.clone()))
}

/// Makes every worker's callbacks stale (a load starts); each worker drops its own with
/// `drop_stale` or as they are replaced.
pub fn invalidate_all() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

pub fn drop_callbacks(id: &str) {
    let callbacks = HELD.with_borrow_mut(|held| held.remove(id));
    drop(callbacks);
}

/// Drops the callbacks made before the last load (`invalidate_all`).
pub fn drop_stale() {
    let generation = GENERATION.load(Ordering::Acquire);
    let stale: Vec<(u64, Callbacks)> = HELD.with_borrow_mut(|held| {
        let ids: Vec<String> = held.iter().filter(|(_, (g, _))| *g != generation).map(|(id, _)| id.clone()).collect();
        ids.iter().filter_map(|id| held.remove(id)).collect()
    });
    drop(stale);
}

/// Drops everything held: the interpreter it belongs to is going (maybe as the thread exits,
/// when these thread-locals may be gone already).
pub fn clear_all() {
    let all = HELD.try_with(|held| held.take());
    drop(all);
    let timers = TIMERS.try_with(|timers| timers.take());
    drop(timers);
}

thread_local! {
    /// Time events' functions, by time event id. Not emptied by a load (a running time event
    /// outlives DEBUG RELOAD); emptied with the interpreter.
    static TIMERS: RefCell<HashMap<u64, PyObjectRef>> = RefCell::new(HashMap::new());
}

pub fn hold_timer(id: u64, function: PyObjectRef) {
    TIMERS.with_borrow_mut(|timers| timers.insert(id, function));
}

pub fn timer(id: u64) -> Option<PyObjectRef> {
    TIMERS.with_borrow(|timers| timers.get(&id).cloned())
}

pub fn release_timer(id: u64) {
    let function = TIMERS.with_borrow_mut(|timers| timers.remove(&id));
    drop(function);
}
