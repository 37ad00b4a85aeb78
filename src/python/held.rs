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

/// Drops every callback: the interpreter they belong to is going.
pub fn clear() {
    let all = HELD.take();
    drop(all);
}
