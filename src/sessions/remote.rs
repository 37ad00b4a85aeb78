//! This master's part of a distributed execution another master started
//! (docs/architecture.md#cluster-mode): its plan rebuilt here from what `Start` names, the
//! script's source run again as persistence rebuilds sessions, or the registration every
//! master holds, then run by `jobs::distributed`.

use crate::cluster::message::{Start, Work};
use crate::jobs::distributed;
use crate::pool;
use crate::python::session::Origin;
use crate::python::{RawPlan, Runtime, ScriptOutcome};
use crate::registrations;
use crate::store::RunAs;

use super::dispatch::{self, Input};

/// The initiator `sender` asks this master to run its part of execution `id` (main thread).
pub fn on_start(sender: &str, id: String, start: Start) {
    let Some(joining) = distributed::accept(sender, &id, &start) else { return };
    let db = i32::try_from(start.db).unwrap_or(0);
    pool::send(
        joining.home(),
        Box::new(move |runtime| match rebuild_plan(runtime, &start, db, &joining) {
            Ok((plan, origin)) => joining.join(runtime, plan, db, origin, start.keep),
            Err(why) => joining.refuse(why),
        }),
    );
}

fn rebuild_plan(
    runtime: &Runtime,
    start: &Start,
    db: i32,
    joining: &distributed::Joining,
) -> Result<(RawPlan, Origin), String> {
    let run_as = match &start.user {
        None => RunAs::Module,
        Some(name) => RunAs::user(name),
    };
    match &start.work {
        Work::Script { session, source } => {
            let store = crate::jobs::host::store(db, run_as.clone());
            let outcome = runtime.run_script(source, store, joining.abort(), Some(session.clone()), None);
            // What the body registers reaches this master on its own.
            drop(runtime.take_registrations());
            drop(runtime.take_nested());
            runtime.end_job();
            let origin = Origin {
                session: Some(session.clone()),
                source: Some(source.as_str().into()),
                run_as,
                ..Origin::default()
            };
            match outcome {
                ScriptOutcome::Run(plan) => Ok((plan, origin)),
                ScriptOutcome::Failed(text) => Err(text),
                ScriptOutcome::Done => Err("the script starts no execution here".to_owned()),
            }
        }
        Work::Registration { id, args } => {
            let registration = registrations::find(id).ok_or_else(|| format!("registration {id} is not here"))?;
            let callbacks = dispatch::callbacks(runtime, &registration)?;
            let input = match args {
                Some(args) => Input::Command(args.clone()),
                None => Input::Nothing,
            };
            let plan = runtime.enter(|vm| dispatch::raw_plan(vm, input, callbacks));
            let origin = Origin { session: Some(registration.session.clone()), run_as, ..Origin::default() };
            Ok((plan, origin))
        }
    }
}
