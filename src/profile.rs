//! RG.PYPROFILE: per session, the Python functions its executions called, with call counts, own
//! time and cumulative time. Collected while `ProfileExecutions` is 1 (docs/commands.md#rgpyprofile).

use crate::unpoisoned::Unpoisoned;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, Copy)]
struct Calls {
    count: u64,
    own: Duration,
    cumulative: Duration,
}

type Profiles = HashMap<String, HashMap<String, Calls>>;

static PROFILES: LazyLock<Mutex<Profiles>> = LazyLock::new(Default::default);

fn profiles() -> MutexGuard<'static, Profiles> {
    PROFILES.locked()
}

/// A call in progress on this thread: its function, start, and the time spent in its callees.
struct Frame {
    name: String,
    started: Instant,
    callees: Duration,
}

thread_local! {
    /// The session profiled on this thread now, and its calls in progress.
    static PROFILING: RefCell<Option<(String, Vec<Frame>)>> = const { RefCell::new(None) };
}

/// Profiles what runs on this thread for `session` until the guard is dropped.
pub fn begin_profiling(session: &str) -> Profiling {
    PROFILING.set(Some((session.to_owned(), Vec::new())));
    Profiling(())
}

pub struct Profiling(());

impl Drop for Profiling {
    fn drop(&mut self) {
        PROFILING.set(None);
    }
}

pub fn called(name: &str) {
    PROFILING.with_borrow_mut(|current| {
        if let Some((_, stack)) = current {
            stack.push(Frame { name: name.to_owned(), started: Instant::now(), callees: Duration::ZERO });
        }
    });
}

pub fn returned() {
    let ended = PROFILING.with_borrow_mut(|current| {
        let (session, stack) = current.as_mut()?;
        let frame = stack.pop()?;
        let elapsed = frame.started.elapsed();
        if let Some(caller) = stack.last_mut() {
            caller.callees += elapsed;
        }
        Some((session.clone(), frame.name, elapsed, elapsed.saturating_sub(frame.callees)))
    });
    if let Some((session, name, cumulative, own)) = ended {
        let mut profiles = profiles();
        let calls = profiles.entry(session).or_default().entry(name).or_default();
        calls.count += 1;
        calls.own += own;
        calls.cumulative += cumulative;
    }
}

pub fn reset(session: &str) {
    profiles().remove(session);
}

/// The report of `session`: one line per function, by cumulative time; `None` if nothing was
/// collected.
pub fn summary(session: &str) -> Option<String> {
    let profiles = profiles();
    let calls = profiles.get(session).filter(|c| !c.is_empty())?;
    let mut rows: Vec<(&String, &Calls)> = calls.iter().collect();
    rows.sort_by(|a, b| b.1.cumulative.cmp(&a.1.cumulative).then(a.0.cmp(b.0)));
    let mut out = format!("{:>10} {:>12} {:>12}  function\n", "ncalls", "tottime(s)", "cumtime(s)");
    for (name, c) in rows {
        let _ =
            writeln!(out, "{:>10} {:>12.6} {:>12.6}  {name}", c.count, c.own.as_secs_f64(), c.cumulative.as_secs_f64());
    }
    Some(out)
}
