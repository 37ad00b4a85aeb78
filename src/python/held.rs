//! The Python callbacks of the registrations whose sessions live on this worker: their steps
//! (functions sharing their session's globals) and `onRegistered`. Thread-local because the
//! interpreter is; emptied when the interpreter goes, and rebuilt from the session's source
//! (`sessions::registered`) wherever one is missing.

use std::cell::RefCell;
use std::collections::HashMap;

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
    static HELD: RefCell<HashMap<String, Callbacks>> = RefCell::new(HashMap::new());
}

pub fn hold(id: &str, callbacks: Callbacks) {
    HELD.with_borrow_mut(|held| held.insert(id.to_owned(), callbacks));
}

pub fn get(id: &str) -> Option<Callbacks> {
    HELD.with_borrow(|held| held.get(id).cloned())
}

pub fn release(id: &str) {
    let callbacks = HELD.with_borrow_mut(|held| held.remove(id));
    drop(callbacks);
}

/// Drops every registration's callbacks (a load replaces them).
pub fn clear() {
    let all = HELD.take();
    drop(all);
}

/// Drops everything held: the interpreter it belongs to is going.
pub fn clear_all() {
    clear();
    let timers = TIMERS.take();
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
