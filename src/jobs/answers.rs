//! Who is waiting for a script body or a main-thread call while it runs. A body has no
//! execution yet, so this is where the watchdog finds its client when the worker is stuck in
//! native code.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use super::call::Handoff;
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;
use crate::stop::Abort;
use crate::unpoisoned::Unpoisoned;

pub enum Answer {
    /// A blocked RG.PYEXECUTE client.
    Client(BlockedClient),
    /// The main thread, waiting in a call on its behalf.
    MainThread(Arc<Handoff>),
}

impl Answer {
    fn send(self, reply: Reply) {
        match self {
            Answer::Client(client) => client.reply(Arc::new(reply)),
            Answer::MainThread(handoff) => handoff.finish(reply),
        }
    }
}

/// The answers of running bodies and calls, by their stop request.
type Listing = Vec<(Arc<Abort>, Answer)>;

static LISTED: LazyLock<Mutex<Listing>> = LazyLock::new(|| Mutex::new(Vec::new()));

fn listing() -> MutexGuard<'static, Listing> {
    LISTED.locked()
}

fn take(abort: &Arc<Abort>) -> Option<Answer> {
    let mut listed = listing();
    let at = listed.iter().position(|(a, _)| Arc::ptr_eq(a, abort))?;
    Some(listed.swap_remove(at).1)
}

/// Answers what `abort` stops with `error`; false if nothing was listed for it.
pub fn answer_stopped(abort: &Arc<Abort>, error: &str) -> bool {
    match take(abort) {
        Some(answer) => {
            answer.send(Reply::Error(error.to_owned()));
            true
        }
        None => false,
    }
}

/// A body or call running on this worker, its answer listed. If the worker unwinds, the answer
/// is dropped, which answers it with an error.
pub struct Listed(Arc<Abort>);

impl Listed {
    pub fn enter(abort: Arc<Abort>, answer: Answer) -> Listed {
        listing().push((abort.clone(), answer));
        Listed(abort)
    }

    /// The answer, unless the watchdog took it.
    pub fn leave(self) -> Option<Answer> {
        take(&self.0)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        drop(take(&self.0));
    }
}
