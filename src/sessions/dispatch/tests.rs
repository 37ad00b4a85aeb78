//! Executions of registrations over the thread's `MemoryStore` (`jobs::host`): how `dispatch`
//! chooses to run each mode, and every way one execution ends: success, a failing step, writes
//! through `execute()`, records that may not wait, callbacks that are gone, and an abort before
//! it started. The same paths run against Redis in tests/test_registrations_*.py.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{Caller, Input, Place, Then, run_registration, runs_inline};
use crate::error::GearsError;
use crate::executions::{self, State, Wants};
use crate::jobs::{self, Running};
use crate::python::testing::on_runtime;
use crate::python::{ScriptOutcome, held};
use crate::registrations::{Mode, Registration, Stats};
use crate::reply::Reply;
use crate::stop::Abort;
use crate::store::{KeyValue, RunAs, Store};

/// What one execution of a registration left.
struct Fired {
    /// Whether it ran (false: aborted before it started).
    started: bool,
    /// What its `then` was given: its reply and errors, if it ended.
    ended: Option<(Reply, Vec<String>)>,
    stats: Stats,
    state: Option<State>,
    /// The key `seen` of the store, after it.
    seen: Option<Vec<u8>>,
}

/// How the execution is set up before it runs.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    Plain,
    /// The registration's callbacks are gone from the worker (and its session cannot be rebuilt).
    Forgotten,
    /// RG.ABORTEXECUTION reached it while it was `created`.
    Aborted,
}

/// Runs `script` (which registers one thing) as a session's body, holds its callbacks on the
/// worker as applying the session does, then runs one execution of it for `input`.
fn fire(script: &str, input: Input, async_allowed: bool, setup: Setup) -> Fired {
    let script = script.to_owned();
    on_runtime(move |runtime| {
        let store = jobs::host::store(0, RunAs::Module);
        let outcome = runtime.run_script(&script, store, Abort::new(), Some("session-1".to_owned()), None);
        assert!(matches!(outcome, ScriptOutcome::Done), "the body runs");
        let pending = runtime.take_registrations().pop().expect("the script registers");
        runtime.end_job();
        let id = pending.spec.id.clone();
        if setup != Setup::Forgotten {
            held::keep_callbacks(&id, pending.callbacks);
        }
        let registration = Arc::new(Registration {
            spec: pending.spec,
            session: "session-1".to_owned(),
            run_as: RunAs::Module,
            home: 0,
            live: Default::default(),
        });
        registration.live.started();
        let key = executions::create_registered(runtime.worker(), true, &id, Abort::new());
        if setup == Setup::Aborted {
            let refused = || Err(GearsError::Internal("no client here".to_owned()));
            executions::abort(&key.id, refused).expect("a created execution aborts");
        }
        let ended = Rc::new(RefCell::new(None));
        let slot = ended.clone();
        let then: Then = Box::new(move |_, reply, errors| *slot.borrow_mut() = Some((reply.clone(), errors.to_vec())));
        let execution = Running::holding(key.clone(), None);
        let started =
            run_registration(runtime, registration.clone(), input, 0, execution, Place::Inline { async_allowed }, then);
        runtime.end_job();
        held::drop_callbacks(&id);
        let seen = match jobs::host::memory().read(b"seen", true).value {
            Some(KeyValue::String(bytes)) => Some(bytes),
            _ => None,
        };
        let state = executions::report(&key.id).ok().map(|(state, _)| state);
        let _ = executions::drop_execution(&key.id);
        let _ = jobs::host::memory().call("DEL", &[b"seen"]);
        Fired { started, ended: ended.take(), stats: registration.live.stats(), state, seen }
    })
}

fn trigger(args: &[&str]) -> Input {
    Input::Command(args.iter().map(|a| a.as_bytes().to_vec()).collect())
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

#[test]
fn each_mode_runs_where_its_caller_needs_it() {
    let free = || true;
    let full = || false;
    let nobody = Caller::Nobody;
    // Asynchronous modes queue on the home while a pending slot is free...
    assert!(!runs_inline(&Mode::Async, &nobody, free));
    assert!(!runs_inline(&Mode::AsyncLocal, &nobody, free));
    assert!(!runs_inline(&Mode::Async, &Caller::Block(Wants::Trigger), free));
    // ...and run inline, slowing the writer, once MaxPendingEventsPerRegistration wait.
    assert!(runs_inline(&Mode::Async, &nobody, full));
    // `sync`, and a caller that cannot block, run inline without taking a slot.
    let untouched = || panic!("no pending slot is taken");
    assert!(runs_inline(&Mode::Sync, &nobody, untouched));
    assert!(runs_inline(&Mode::Async, &Caller::Inline(Wants::Results), untouched));
}

#[test]
fn a_trigger_execution_ends_with_its_results_and_is_counted() {
    let fired =
        fire("GB('CommandReader').map(lambda x: x[1]).register(trigger='t')", trigger(&["t", "a"]), true, Setup::Plain);
    assert!(fired.started);
    let (reply, errors) = fired.ended.expect("it ended");
    assert_eq!(reply, Reply::Array(vec![Reply::Array(vec![bulk("a")]), Reply::Array(vec![])]));
    assert!(errors.is_empty());
    assert_eq!((fired.stats.triggered, fired.stats.success, fired.stats.failures), (1, 1, 0));
    assert_eq!(fired.state, Some(State::Done));
}

#[test]
fn a_failing_step_counts_a_failure_with_its_error() {
    let fired =
        fire("GB('CommandReader').map(lambda x: 1/0).register(trigger='t')", trigger(&["t"]), true, Setup::Plain);
    let (_, errors) = fired.ended.expect("it ended");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("ZeroDivisionError"), "{errors:?}");
    assert_eq!((fired.stats.success, fired.stats.failures), (0, 1));
    assert!(fired.stats.last_error.is_some_and(|e| e.contains("ZeroDivisionError")));
}

#[test]
fn a_key_event_execution_writes_through_execute() {
    let script = "GB().foreach(lambda r: execute('SET', 'seen', r['key'])).register(prefix='user:*')";
    let input = Input::Key { key: b"user:1".to_vec(), event: b"set".to_vec(), read_value: false, link: None };
    let fired = fire(script, input, true, Setup::Plain);
    assert!(fired.ended.is_some_and(|(_, errors)| errors.is_empty()));
    assert_eq!(fired.seen.as_deref(), Some(&b"user:1"[..]));
    assert_eq!(fired.stats.success, 1);
}

#[test]
fn records_that_may_not_wait_fail_the_execution() {
    // Run inline for a caller that cannot block: a step's future is an error, not a wait.
    let script = "GB('CommandReader').map(lambda x: gearsFuture()).register(trigger='t')";
    let fired = fire(script, trigger(&["t"]), false, Setup::Plain);
    let (_, errors) = fired.ended.expect("it ended at once");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(fired.stats.failures, 1);
}

#[test]
fn a_registration_whose_callbacks_are_gone_fails_with_a_clear_error() {
    let fired = fire("GB('CommandReader').register(trigger='t')", trigger(&["t"]), true, Setup::Forgotten);
    assert!(fired.started);
    let (_, errors) = fired.ended.expect("it ended");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("session-1"), "{errors:?}");
    assert_eq!(fired.stats.failures, 1);
}

#[test]
fn an_execution_aborted_before_it_started_never_runs() {
    let fired = fire(
        "GB('CommandReader').foreach(lambda x: execute('SET', 'seen', 'ran')).register(trigger='t')",
        trigger(&["t"]),
        true,
        Setup::Aborted,
    );
    assert!(!fired.started);
    assert!(fired.ended.is_none(), "`then` follows only executions that ran");
    assert_eq!(fired.seen, None);
    assert_eq!(fired.state, Some(State::Aborted));
}
