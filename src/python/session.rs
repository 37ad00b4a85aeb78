//! What the native functions need to know about the job running on this worker thread: the
//! executions its script asked for. Thread-local because the VM is. (Its way into Redis is the
//! thread's current `store`.)

use std::cell::RefCell;

use rustpython_vm::PyObjectRef;

/// An execution requested by `run()`: the builder's reader, argument, steps and reader options,
/// still as Python objects. `engine::Plan` parses it.
pub struct RawPlan {
    pub reader: String,
    pub arg: PyObjectRef,
    pub steps: PyObjectRef,
    pub options: PyObjectRef,
}

#[derive(Default)]
pub struct Session {
    /// True while the script body runs; `run()` there is the script's own execution.
    pub in_body: bool,
    pub body_run: Option<RawPlan>,
    /// `run()` from callbacks: independent executions, run after the current one.
    pub nested: Vec<RawPlan>,
}

thread_local! {
    static SESSION: RefCell<Session> = RefCell::new(Session::default());
}

pub fn with<R>(f: impl FnOnce(&mut Session) -> R) -> R {
    SESSION.with_borrow_mut(f)
}

/// Sets up this thread for an execution.
pub fn begin_execution() {
    with(|s| *s = Session::default());
}

/// Starts a fresh session for one script; whatever the previous job left is dropped.
pub fn begin() {
    with(|s| *s = Session { in_body: true, ..Session::default() });
}

/// The session of a job that a visit preempted, set aside until the visit ends.
pub struct Nested(Option<Session>);

pub fn nest() -> Nested {
    Nested(Some(with(std::mem::take)))
}

impl Drop for Nested {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            with(|s| *s = outer);
        }
    }
}
