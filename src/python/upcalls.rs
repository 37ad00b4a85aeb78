//! What native functions ask of the layers above (sessions): installed once at load, so that
//! `python` does not depend on them. Until then (unit tests, fuzz targets) the functions say
//! they are unavailable.

use std::sync::OnceLock;

use super::held::Callbacks;
use crate::registrations::Spec;
use crate::registrations::hooks::Chain;
use crate::reply::Reply;

pub struct Upcalls {
    /// A hook's `call_next(*args)`: the next hook of the chain, or the command itself.
    pub call_next: fn(&Chain, Vec<Vec<u8>>) -> Reply,
    /// `register()` outside a script body: joins the running code's session (given its id and
    /// source) at once, and calls `onRegistered`. The error is raised to the script.
    pub join_session: fn(&str, &str, Spec, Callbacks) -> Result<(), String>,
    /// `registerTE()`: starts a time event whose function this worker holds.
    pub start_timer: fn(TimerRequest) -> Result<TimerStart, String>,
    /// A future of execution `owner` was continued: its home resumes it.
    pub wake: fn(u64),
    /// Runs `f` (a callback of the event loop) in the context of execution `owner` (`None`: of
    /// no execution); not at all if that execution has ended.
    pub within: fn(Option<u64>, &mut dyn FnMut()),
    /// This worker's interpreter is going: the executions waiting on it end first.
    pub abandon_waiting: fn(),
}

/// What `registerTE()` asks for.
pub struct TimerRequest {
    pub seconds: u64,
    pub key: Option<Vec<u8>>,
    pub session: Option<String>,
    pub source: Option<String>,
    /// Whom the script that asks runs as.
    pub run_as: crate::store::RunAs,
    /// The session is being rebuilt from its source: only keyed time events waiting for it
    /// start (the others never stopped, or ended with the process).
    pub restoring: bool,
}

pub enum TimerStart {
    /// Started with this id: hold its function under it.
    Started(u64),
    /// Its key exists already: nothing started.
    KeyExists,
    /// Nothing to start (see `TimerRequest::restoring`).
    Skipped,
}

static UPCALLS: OnceLock<Upcalls> = OnceLock::new();

pub fn install(upcalls: Upcalls) {
    let _ = UPCALLS.set(upcalls);
}

pub fn call_next(chain: &Chain, args: Vec<Vec<u8>>) -> Reply {
    match UPCALLS.get() {
        Some(u) => (u.call_next)(chain, args),
        None => Reply::Error("call_next is not available here".to_owned()),
    }
}

pub fn start_timer(request: TimerRequest) -> Result<TimerStart, String> {
    match UPCALLS.get() {
        Some(u) => (u.start_timer)(request),
        None => Err("time events are not available here".to_owned()),
    }
}

pub fn wake(owner: u64) {
    if let Some(u) = UPCALLS.get() {
        (u.wake)(owner);
    }
}

/// Without the layers above (unit tests), a callback runs as it is.
pub fn within(owner: Option<u64>, f: &mut dyn FnMut()) {
    match UPCALLS.get() {
        Some(u) => (u.within)(owner, f),
        None => f(),
    }
}

/// Without the layers above nothing waits; the interpreter's own tables are cleared.
pub fn abandon_waiting() {
    match UPCALLS.get() {
        Some(u) => (u.abandon_waiting)(),
        None => {
            super::future::clear();
            super::event_loop::clear();
        }
    }
}

pub fn join_session(session: &str, source: &str, spec: Spec, callbacks: Callbacks) -> Result<(), String> {
    match UPCALLS.get() {
        Some(u) => (u.join_session)(session, source, spec, callbacks),
        None => Err("registering outside a script is not available here".to_owned()),
    }
}
