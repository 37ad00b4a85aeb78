//! What native functions ask of the layers above (sessions): installed once at load, so that
//! `python` does not depend on them. Until then (unit tests, fuzz targets) the functions say
//! they are unavailable, or do what an interpreter alone would.

use std::sync::OnceLock;

use super::held::Callbacks;
use crate::registrations::Spec;
use crate::registrations::hooks::Chain;
use crate::reply::Reply;

/// Each default is what the interpreter does without the layers above.
pub trait Upcalls: Sync {
    /// A hook's `call_next(*args)`: the next hook of the chain, or the command itself.
    fn call_next(&self, _chain: &Chain, _args: Vec<Vec<u8>>) -> Reply {
        Reply::Error("call_next is not available here".to_owned())
    }

    /// `register()` outside a script body: joins the running code's session (given its id and
    /// source) at once, and calls `onRegistered`. The error is raised to the script.
    fn join_session(&self, _session: &str, _source: &str, _spec: Spec, _callbacks: Callbacks) -> Result<(), String> {
        Err("registering outside a script is not available here".to_owned())
    }

    /// `registerTE()`: starts a time event whose function this worker holds.
    fn start_timer(&self, _request: TimerRequest) -> Result<TimerStart, String> {
        Err("time events are not available here".to_owned())
    }

    /// A future of execution `owner` was continued: its home resumes it.
    fn wake(&self, _owner: u64) {}

    /// Runs `f` (a callback of the event loop) in the context of execution `owner` (`None`: of
    /// no execution); not at all if that execution has ended. Alone, it runs as it is.
    fn within(&self, _owner: Option<u64>, f: &mut dyn FnMut()) {
        f()
    }

    /// This worker's interpreter is going: the executions waiting on it end first. Alone,
    /// nothing waits; the interpreter's own tables are cleared.
    fn abandon_waiting(&self) {
        super::future::drop_futures();
        super::event_loop::close_loop();
    }
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

/// The interpreter without the layers above.
struct Alone;

impl Upcalls for Alone {}

static UPCALLS: OnceLock<&'static dyn Upcalls> = OnceLock::new();

pub fn provide_upcalls(upcalls: &'static dyn Upcalls) {
    let _ = UPCALLS.set(upcalls);
}

pub fn upcalls() -> &'static dyn Upcalls {
    UPCALLS.get().copied().unwrap_or(&Alone)
}
