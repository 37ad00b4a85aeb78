//! Time events on their session's home: each period the main thread's timer calls the function
//! there as a call on its behalf (like a `sync` execution, the only Redis client meanwhile), then
//! arms the next period. A function that raises stops its timer; so does deleting a keyed time
//! event's key.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use redis_module::Context;

use crate::pool;
use crate::python::held;
use crate::python::job::JobContext;
use crate::python::session::{JobState, Origin};
use crate::python::upcalls::{TimerRequest, TimerStart};
use crate::python::{Runtime, call_callback, error_text};
use crate::redis::gil::with_gil;
use crate::redis::{log, notify, rdb};
use crate::registrations::time_events::{TimeEvent, TimerKey};
use crate::registrations::{self, time_events};
use crate::reply::Reply;
use crate::stop::Abort;
use crate::store::RunAs;
use std::sync::Arc;

/// `registerTE()` on this worker (its home is the time event's).
pub fn start_timer(request: TimerRequest) -> Result<TimerStart, String> {
    let Some(home) = pool::this_home() else { return Err("time events start on a worker".to_owned()) };
    let db = 0;
    with_gil(db, |ctx| {
        let id = match &request.key {
            Some(key) => match rdb::read_key(ctx, key) {
                // The key of a time event waiting to come back (a load brought it): it resumes.
                rdb::Slot::Ours(bytes) => match TimerKey::parse(&bytes) {
                    Some(saved)
                        if request.restoring
                            && saved.session == request.session
                            && !time_events::is_active(saved.id) =>
                    {
                        saved.id
                    }
                    _ => return Ok(TimerStart::KeyExists),
                },
                rdb::Slot::Other => return Ok(TimerStart::KeyExists),
                rdb::Slot::Missing => {
                    let id = time_events::next_id();
                    let saved = TimerKey {
                        id,
                        session: request.session.clone(),
                        source: request.source.clone(),
                        seconds: request.seconds,
                        owner: request.run_as.name().unwrap_or("default").to_owned(),
                    };
                    if !rdb::write_key(ctx, key, saved.to_bytes()) {
                        return Err("could not create the time event's key".to_owned());
                    }
                    id
                }
            },
            None if request.restoring => return Ok(TimerStart::Skipped),
            None => time_events::next_id(),
        };
        let period = Duration::from_secs(request.seconds);
        time_events::add(TimeEvent {
            id,
            home,
            period,
            key: request.key.clone(),
            session: request.session.clone(),
            db,
            run_as: request.run_as.clone(),
        });
        ctx.create_timer(period, fire, id);
        Ok(TimerStart::Started(id))
    })
}

/// A period has passed (main thread).
fn fire(ctx: &Context, id: u64) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(event) = time_events::lookup(id) else { return };
        if let Some(key) = &event.key {
            let still = matches!(rdb::read_key(ctx, key), rdb::Slot::Ours(bytes) if TimerKey::parse(&bytes).is_some_and(|k| k.id == id));
            if !still {
                return end(&event);
            }
        }
        // Only masters run them; a replica keeps the timer for when it is promoted.
        if notify::fires(ctx) {
            let db = event.db;
            let (session, run_as) = (event.session.clone(), event.run_as.clone());
            let reply = crate::jobs::call::call_on_home(ctx, event.home, Abort::new(), move |runtime, abort| {
                run_time_event(runtime, id, session, db, run_as, abort)
            });
            if let Ok(Reply::Error(text)) | Err(text) = reply.map_err(|e| e.to_string()) {
                log::warning(&format!("rustgears: time event stopped: {text}"));
                return end(&event);
            }
        }
        ctx.create_timer(event.period, fire, id);
    }));
}

/// Calls the time event's function; an error reply if it raised (or is gone).
fn run_time_event(
    runtime: &Runtime,
    id: u64,
    session: Option<String>,
    db: i32,
    run_as: RunAs,
    abort: Arc<Abort>,
) -> Reply {
    let Some(function) = held::timer(id) else {
        return Reply::Error("its function is gone (its worker was rebuilt)".to_owned());
    };
    let result = {
        let state = JobState::execution(Origin { session, run_as: run_as.clone(), ..Origin::default() }, false);
        let store = crate::jobs::host::store(db, run_as);
        let _job = runtime.enter_job(JobContext { state: Some(state), store, abort, owner: None });
        runtime.enter(|vm| call_callback(vm, &function, ()).map(drop).map_err(|e| error_text(vm, &e)))
    };
    runtime.end_job();
    crate::jobs::defer_nested(runtime, db);
    match result {
        Ok(()) => Reply::ok(),
        Err(text) => Reply::Error(text),
    }
}

fn end(event: &TimeEvent) {
    time_events::stop(event.id);
    let id = event.id;
    pool::send(event.home, Box::new(move |_| held::release_timer(id)));
}

/// After a load: keyed time events whose sessions have no registrations come back by running
/// their sources again (the others come back with their sessions).
pub fn resume_loaded() {
    for saved in time_events::take_loaded_timers() {
        let registered = saved.session.as_deref().is_some_and(|s| registrations::session(s).is_some());
        if registered {
            continue;
        }
        let Some(source) = saved.source.clone() else {
            log::warning(&format!("rustgears: time event {} cannot resume: it was not started by a script", saved.id));
            continue;
        };
        let Ok(home) = pool::choose_home() else { return };
        pool::send(
            home,
            Box::new(move |runtime| {
                let run_as = RunAs::user(&saved.owner);
                if let Err(text) =
                    super::persisted::rerun(runtime, saved.session.clone(), &source, Default::default(), run_as)
                {
                    log::warning(&format!("rustgears: time event {} did not resume: {text}", saved.id));
                }
            }),
        );
    }
}
