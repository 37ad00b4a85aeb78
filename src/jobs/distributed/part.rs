//! One shard's part of a distributed execution, on its home: the plan's stages and the records
//! kept for the next one. A stage runs as a parked execution (its records may wait for futures,
//! aborts and time limits stop it as any execution); when it ends its records are routed (kept,
//! or framed to their shard) and the part waits for its peers' records of that phase.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rustpython_vm::{PyObjectRef, VirtualMachine};

use super::{Shared, forget_execution};
use crate::cluster::bus::Bus;
use crate::cluster::exchange::Outbox;
use crate::cluster::message::{Event, Message};
use crate::cluster::wire::Writer;
use crate::engine::stages::{self, Route, Stage};
use crate::engine::{Ended, Report};
use crate::error::GearsError;
use crate::executions::ExecutionKey;
use crate::jobs::parked::{self, Done, ExecutionContext};
use crate::python::session::Origin;
use crate::python::transfer::encode_record;
use crate::python::{RawPlan, Runtime};
use crate::reply::Reply;
use crate::report::StepReport;
use crate::stop::Reason;
use crate::unpoisoned::Unpoisoned;

struct Part {
    shared: Arc<Shared>,
    stages: Vec<Stage>,
    /// The first stage's reader: name, argument, options.
    reader: Option<(String, PyObjectRef, PyObjectRef)>,
    /// The stage that runs next (`stages.len()` once the last has run).
    next: usize,
    running: bool,
    /// Records routed to this shard by itself, and the frames its peers sent, for the next stage.
    kept: Vec<PyObjectRef>,
    arrived: Vec<Vec<u8>>,
    db: i32,
    origin: Origin,
    errors: Vec<String>,
    /// The execution as this shard lists it (the initiator's, or this shard's copy) and what its
    /// report gathers.
    listed: Option<Listed>,
}

struct Listed {
    key: ExecutionKey,
    done: Done,
    started: Instant,
    read_ms: u64,
    steps: Vec<StepReport>,
    results: Vec<Reply>,
}

thread_local! {
    static PARTS: RefCell<HashMap<String, Part>> = RefCell::new(HashMap::new());
}

fn take_part(id: &str) -> Option<Part> {
    PARTS.with_borrow_mut(|p| p.remove(id))
}

fn put_part(id: &str, part: Part) {
    PARTS.with_borrow_mut(|p| p.insert(id.to_owned(), part));
}

/// Runs this shard's part of `plan`, from its first stage.
pub(super) fn begin(
    runtime: &Runtime,
    shared: Arc<Shared>,
    plan: RawPlan,
    db: i32,
    origin: Origin,
    listed: Option<(ExecutionKey, Done)>,
) {
    let cut = runtime.enter(|vm| stages::stages(vm, &plan.steps));
    let listed = listed.map(|(key, done)| Listed {
        key,
        done,
        started: Instant::now(),
        read_ms: 0,
        steps: Vec::new(),
        results: Vec::new(),
    });
    let id = shared.id.clone();
    let part = Part {
        shared,
        stages: Vec::new(),
        reader: Some((plan.reader, plan.arg, plan.options)),
        next: 0,
        running: false,
        kept: Vec::new(),
        arrived: Vec::new(),
        db,
        origin,
        errors: Vec::new(),
        listed,
    };
    match cut {
        Ok(stages) => {
            put_part(&id, Part { stages, ..part });
            run_stage(runtime, &id);
        }
        Err(text) => end_part(runtime, part, Some(text)),
    }
}

/// Runs the part's next stage over what it kept (its reader's records, for the first).
fn run_stage(runtime: &Runtime, id: &str) {
    let Some(mut part) = take_part(id) else { return };
    let Some(stage) = part.stages.get(part.next) else { return put_part(id, part) };
    let steps = stage.steps.clone();
    let last = part.next + 1 == part.stages.len();
    let plan = match part.reader.take() {
        Some((reader, arg, options)) => RawPlan { reader, arg, steps, options },
        None => {
            let (kept, arrived) = (std::mem::take(&mut part.kept), std::mem::take(&mut part.arrived));
            runtime.enter(|vm| {
                let frames = arrived.into_iter().map(|frame| vm.ctx.new_bytes(frame).into()).collect();
                let input = vec![crate::engine::records_arg(vm, kept), vm.ctx.new_list(frames).into()];
                RawPlan {
                    reader: "Frames".to_owned(),
                    arg: vm.ctx.new_tuple(input).into(),
                    steps,
                    options: vm.ctx.new_dict().into(),
                }
            })
        }
    };
    let context = ExecutionContext {
        key: part.listed.as_ref().map(|listed| listed.key.clone()),
        db: part.db,
        abort: part.shared.abort.clone(),
        origin: part.origin.clone(),
        async_allowed: true,
        unreplied: !last,
    };
    part.running = true;
    part.shared.busy.store(true, Ordering::Release);
    put_part(id, part);
    let id = id.to_owned();
    parked::run_parked(runtime, plan, context, Box::new(move |runtime, ended, _| stage_ended(runtime, &id, ended)));
}

fn stage_ended(runtime: &Runtime, id: &str, ended: Ended) {
    let Some(mut part) = take_part(id) else { return };
    part.running = false;
    part.shared.busy.store(false, Ordering::Release);
    part.shared.inbox.locked().heard_now();
    let stage = part.next;
    part.next += 1;
    if let Some(listed) = &mut part.listed {
        let steps = ended.report.steps.iter().skip(usize::from(stage > 0)).cloned();
        listed.steps.extend(steps);
        listed.read_ms += ended.report.read_ms;
    }
    part.errors.extend(ended.report.errors.iter().cloned());
    if part.shared.abort.requested() {
        let stopped = || part.shared.abort.reason().unwrap_or(Reason::Aborted).message().to_owned();
        let failure = part.shared.failure().unwrap_or_else(stopped);
        return end_part(runtime, part, Some(failure));
    }
    match part.stages[stage].route.take() {
        None => {
            if let (Some(listed), Reply::Array(mut halves)) = (&mut part.listed, ended.reply)
                && let Some(Reply::Array(results)) = halves.drain(..).next()
            {
                listed.results = results;
            }
            drop(ended.records);
            put_part(id, part);
            go_on(runtime, id);
        }
        Some(route) => {
            let records = ended.records.take();
            match route_records(runtime, &mut part, stage, &route, records) {
                Ok(()) => {
                    put_part(id, part);
                    go_on(runtime, id);
                }
                Err(error) => end_part(runtime, part, Some(error)),
            }
        }
    }
}

/// Sends stage `stage`'s records where `route` says (this shard's are kept), then tells every
/// peer the phase is done here. A record that cannot be routed or sent is an error of the
/// execution; the error returned ends it (no credit for ExecutionMaxIdleTime, an abort).
fn route_records(
    runtime: &Runtime,
    part: &mut Part,
    stage: usize,
    route: &Route,
    records: Vec<PyObjectRef>,
) -> Result<(), String> {
    let shared = part.shared.clone();
    let peers: Vec<String> = shared.peers().cloned().collect();
    let max_idle = std::time::Duration::from_millis(crate::config::with(|c| c.execution_max_idle_time).max(1) as u64);
    let waiting_since = Instant::now();
    let give_up = || {
        if shared.abort.requested() {
            return Some(shared.failure().unwrap_or_else(|| Reason::Aborted.message().to_owned()));
        }
        (waiting_since.elapsed() > max_idle).then(|| GearsError::ExecutionMaxIdle.to_string())
    };
    let mut outbox = Outbox::new(&shared.id, stage as u32, peers.clone(), &Bus, &shared.credits, &give_up);
    let (kept, errors) = (&mut part.kept, &mut part.errors);
    runtime.enter(|vm: &VirtualMachine| {
        for record in records {
            let to = match stages::route_key(vm, route, &record) {
                Ok(key) => shared.target(key.as_deref()),
                Err(text) => {
                    errors.push(text);
                    continue;
                }
            };
            if to == shared.me {
                kept.push(record);
                continue;
            }
            let mut bytes = Writer::default();
            if let Err(text) = encode_record(vm, &record, &mut bytes) {
                errors.push(text);
                continue;
            }
            let peer = peers.iter().position(|p| p == to).unwrap_or(0);
            outbox.push(peer, &bytes.bytes)?;
        }
        Ok::<(), String>(())
    })?;
    outbox.finish()
}

/// The part goes on if it can: its next stage once its peers' records of the phase are all
/// here; the execution's end once every stage ran (at the initiator: and every peer finished).
pub(super) fn go_on(runtime: &Runtime, id: &str) {
    let Some(mut part) = take_part(id) else { return orphaned(id) };
    if part.running {
        return put_part(id, part);
    }
    if let Some(failure) = part.shared.failure() {
        return end_part(runtime, part, Some(failure));
    }
    if part.next == part.stages.len() {
        let finished = !part.shared.is_initiator() || part.shared.inbox.locked().all_finished();
        return if finished { end_part(runtime, part, None) } else { put_part(id, part) };
    }
    let phase = (part.next - 1) as u32;
    let frames = {
        let mut inbox = part.shared.inbox.locked();
        if !inbox.phase_complete(phase) {
            drop(inbox);
            return put_part(id, part);
        }
        inbox.take_phase(phase)
    };
    part.arrived = frames;
    put_part(id, part);
    run_stage(runtime, id);
}

/// No part of `id` is on this worker (its worker was replaced, stuck in native code, or the part
/// is not built yet): once the execution has failed, nothing will end it but this.
fn orphaned(id: &str) {
    if let Some(shared) = super::shared(id)
        && let Some(failure) = shared.failure()
    {
        forget_execution(id);
        shared.tell_peers(Event::Abort { error: failure });
    }
}

/// Ends the part: with `failure` everywhere (its peers are told), or done. The initiator
/// answers with every shard's errors; a peer tells the initiator its own.
fn end_part(runtime: &Runtime, part: Part, failure: Option<String>) {
    let Part { shared, listed, mut errors, kept, stages, .. } = part;
    forget_execution(&shared.id);
    if let Some(failure) = &failure {
        // A stopped stage reported its stop; the reason replaces it.
        errors.retain(|e| e != Reason::Aborted.message() && e != failure);
        errors.push(failure.clone());
        shared.tell_peers(Event::Abort { error: failure.clone() });
    }
    // Their Python objects are freed in the interpreter, counted as its memory.
    runtime.enter(|_| drop((kept, stages)));
    let initiator = shared.is_initiator();
    if failure.is_none() && initiator {
        errors.extend(shared.inbox.locked().take_errors());
    }
    if failure.is_none() && !initiator {
        let finished = Message::Execution { id: shared.id.clone(), event: Event::Finished { errors: errors.clone() } };
        crate::cluster::bus::send_to_node(&shared.participants[0], &finished);
    }
    if let Some(listed) = listed {
        let results = if failure.is_none() { listed.results } else { Vec::new() };
        let report = Report {
            results: results.len(),
            errors: errors.clone(),
            total_ms: crate::engine::report::millis(listed.started.elapsed()),
            read_ms: listed.read_ms,
            steps: listed.steps,
        };
        let reply = Reply::results(results, &errors);
        let stopped = failure.as_deref() == Some(Reason::Aborted.message());
        (listed.done)(runtime, Ended { reply, report, records: Default::default() }, stopped);
    }
}
