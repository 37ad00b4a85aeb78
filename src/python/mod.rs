//! The Python side of a worker: one sandboxed RustPython interpreter, built on the worker's own
//! thread and kept for the thread's life (VMs and Python objects are `!Send`).

mod convert;
mod errors;
mod guard;
mod interpreter;
pub mod interrupt;
mod native;
pub mod session;

pub use convert::{redis_string, to_python, to_reply};
pub use errors::error_text;
pub use interpreter::{Runtime, ScriptOutcome};
pub use session::RawPlan;
