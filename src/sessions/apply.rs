//! Applying what a script registered on its session's home (all or nothing, an upgrade
//! replacing its old session), `register()` joining a session from a callback, and
//! `onRegistered`.

use std::sync::Arc;
use std::time::Duration;

use rustpython_vm::AsObject;

use crate::executions;
use crate::pool;
use crate::python::Runtime;
use crate::python::held::{self, Callbacks, Pending};
use crate::redis::gil::with_gil;
use crate::redis::log;
use crate::registrations::persist;
use crate::registrations::{self, ApplyBatch, Kind, Registration, Spec};
use crate::stop::Abort;
use crate::store::RunAs;

/// How long `onRegistered` may run: it holds the session's worker.
pub(super) const ON_REGISTERED_LIMIT: Duration = Duration::from_secs(5);

/// The session options of the RG.PYEXECUTE that runs a script.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub id: String,
    pub desc: Option<String>,
    pub upgrade: bool,
    pub replace_with: Option<String>,
    /// The client's ACL user: the body and everything the session registers run as it.
    pub run_as: RunAs,
}

impl NewSession {
    fn replaces(&self) -> Option<String> {
        self.replace_with.clone().or_else(|| self.upgrade.then(|| self.id.clone()))
    }
}

/// After a script body has run without error: applies what it registered (and, for an upgrade,
/// unregisters what it replaces), all or nothing. `Ok(false)`: it registered nothing.
pub fn apply_script(
    runtime: &Runtime,
    session: &NewSession,
    source: &str,
    db: i32,
    pending: Vec<Pending>,
) -> Result<bool, String> {
    let replaces = session.replaces();
    if pending.is_empty() && replaces.is_none() {
        return Ok(false);
    }
    let batch = ApplyBatch {
        session: session.id.clone(),
        desc: session.desc.clone(),
        source: source.to_owned(),
        home: runtime.worker().home,
        owner: owner_name(&session.run_as),
        specs: pending.iter().map(|p| p.spec.clone()).collect(),
        replaces,
    };
    for p in &pending {
        held::keep_callbacks(&p.spec.id, p.callbacks.clone());
    }
    let applied = with_gil(db, |ctx| {
        // An upgrade that registers nothing of a session that does not exist changes nothing.
        if batch.specs.is_empty() && batch.replaces.as_deref().and_then(registrations::session).is_none() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Applying uses up an id of each counter, even if it fails (docs/commands.md#ids).
        executions::skip_id();
        executions::next_plan_id();
        let replaced = registrations::apply(&batch)?;
        persist::share_batch(ctx, &batch);
        Ok((replaced, new_streams(ctx, &batch)))
    });
    let replaced = match applied {
        Ok((replaced, streams)) => {
            for (registration, found) in streams {
                super::streams::process_existing(registration, found);
            }
            replaced
        }
        Err(text) => {
            pending.iter().for_each(|p| held::drop_callbacks(&p.spec.id));
            return Err(text);
        }
    };
    release_elsewhere(replaced);
    for p in &pending {
        on_registered(runtime, &session.id, &p.callbacks, &session.run_as);
    }
    Ok(!pending.is_empty())
}

/// The new stream registrations of `batch`, with what their streams hold now: processed
/// whatever the batch size.
fn new_streams(ctx: &redis_module::Context, batch: &ApplyBatch) -> Vec<(Arc<Registration>, super::streams::Found)> {
    batch
        .specs
        .iter()
        .filter(|s| matches!(s.kind, Kind::Stream { .. }))
        .filter_map(|s| registrations::find(&s.id))
        .map(|r| {
            let found = super::streams::existing(ctx, &r);
            (r, found)
        })
        .collect()
}

/// The owner a session records: a module's own RG.PYEXECUTE (no user) registers as `default`.
fn owner_name(run_as: &RunAs) -> String {
    run_as.name().unwrap_or("default").to_owned()
}

/// `register()` outside a script body (a callback, a time event): joins `session` at once.
pub fn join_session(session: &str, source: &str, spec: Spec, callbacks: Callbacks) -> Result<(), String> {
    let home = pool::this_home().unwrap_or_default();
    let run_as = crate::store::current().map(|s| s.run_as()).unwrap_or_default();
    let owner = with_gil(0, |ctx| {
        // A session that had no registrations enters the session table now.
        let batch = match registrations::session(session) {
            Some((existing, _)) => ApplyBatch {
                session: existing.id.clone(),
                desc: existing.desc.clone(),
                source: existing.source.clone(),
                home: existing.home,
                owner: existing.owner.clone(),
                specs: vec![spec],
                replaces: None,
            },
            None => ApplyBatch {
                session: session.to_owned(),
                desc: None,
                source: source.to_owned(),
                home,
                owner: owner_name(&run_as),
                specs: vec![spec],
                replaces: None,
            },
        };
        registrations::apply(&batch)?;
        persist::share_batch(ctx, &batch);
        Ok::<String, String>(batch.owner)
    })?;
    if let Some(runtime) = pool::this_runtime() {
        on_registered(&runtime, session, &callbacks, &RunAs::user(&owner));
    }
    Ok(())
}

/// Drops, on their homes, the callbacks of registrations that are gone.
pub fn release_elsewhere(gone: Vec<Arc<Registration>>) {
    for registration in gone {
        let id = registration.spec.id.clone();
        pool::send(registration.home, Box::new(move |_| held::drop_callbacks(&id)));
    }
}

/// Calls a registration's `onRegistered`: its failures are only logged, and it is stopped if it
/// runs too long.
pub fn on_registered(runtime: &Runtime, session: &str, callbacks: &Callbacks, run_as: &RunAs) {
    let Some(function) = &callbacks.on_registered else { return };
    let _profiled = crate::config::with(|c| c.profile_executions == 1).then(|| runtime.profile(session));
    // It may call `execute()`, in database 0 as RedisGears does.
    let store = crate::jobs::host::store(0, run_as.clone());
    let abort = Abort::with_limit(ON_REGISTERED_LIMIT);
    let _job = runtime.enter_job(crate::python::job::JobContext { state: None, store, abort, owner: None });
    runtime.enter(|vm| match crate::python::call_callback(vm, function, ()) {
        Err(exc) => log::warning(&format!("onRegistered failed: {}", crate::python::error_text(vm, &exc))),
        Ok(value) if &*value.class().name() == "coroutine" => {
            log::warning("onRegistered returned a coroutine, which is not supported there");
        }
        Ok(_) => {}
    });
}
