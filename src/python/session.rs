//! What the native functions need to know about the job running on this worker thread: its
//! database and the executions its script asked for. Thread-local because the VM is.

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
    pub db: i32,
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

pub fn db() -> i32 {
    with(|s| s.db)
}

/// Sets up this thread for an execution of a script that ran against database `db`.
pub fn begin_execution(db: i32) {
    with(|s| *s = Session { db, ..Session::default() });
}

/// Starts a fresh session for one script; whatever the previous job left is dropped.
pub fn begin(db: i32) {
    with(|s| *s = Session { db, in_body: true, ..Session::default() });
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
