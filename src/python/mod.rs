//! The Python side of a worker: one sandboxed RustPython interpreter, built on the worker's own
//! thread and kept for the thread's life (VMs and Python objects are `!Send`).

mod convert;
mod errors;
pub mod event_loop;
pub mod future;
mod guard;
pub mod held;
mod inflate;
mod interpreter;
pub mod interrupt;
pub mod job;
mod native;
mod nesting;
mod power;
mod pristine;
mod register;
pub mod session;
#[cfg(test)]
pub mod testing;
pub mod transfer;
pub mod upcalls;

/// The highest recursion limit a script may set (`sys.setrecursionlimit` lowers larger ones):
/// 100,000 frames peak at about 90 MB, and leave about 8 MB in the worker's caches.
pub const MAX_RECURSION_LIMIT: usize = 100_000;

pub use convert::{fields, redis_string, to_python, to_reply};
pub use errors::{call_callback, error_text};
pub use event_loop::await_coroutine;
pub use interpreter::{Runtime, ScriptOutcome};
pub use interrupt::Interrupter;
pub use native::gears_error;
pub use session::RawPlan;
