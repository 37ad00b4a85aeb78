//! Stream registrations (docs/python-api.md#streamreader-registrations): entries are read through
//! the consumer group `__gears_consumer_group__` a batch at a time, one batch at a time per
//! stream, on the session's home; acknowledged (and trimmed) when processed, left pending when
//! the registration aborts, retried after its interval, or paused.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_module::Context;

use super::dispatch::{self, Input};
use crate::executions;
use crate::pool;
use crate::python::Runtime;
use crate::redis::gil::with_gil;
use crate::registrations::{self, FailurePolicy, Kind, Mode, Registration, Status};
use crate::reply::Reply;
use crate::stop::Abort;
use crate::store::Store;

mod existing;

pub use existing::{Found, existing, process_existing, scan_existing};

const GROUP: &[u8] = b"__gears_consumer_group__";
const CONSUMER: &[u8] = b"__gears_client__";

/// Entries read but not yet acknowledged by this consumer: what a retry processes again.
const PENDING: &[u8] = b"0";
/// Entries never delivered to the group.
const NEW: &[u8] = b">";

/// The stream registrations listening to `key`, with their batch sizes and durations.
fn stream_listeners(key: &[u8]) -> Vec<Arc<Registration>> {
    registrations::all()
        .into_iter()
        .filter(|r| matches!(&r.spec.kind, Kind::Stream { prefix, .. } if registrations::spec::prefix_matches(prefix.as_bytes(), key)))
        .collect()
}

fn batch_of(registration: &Registration) -> (u64, u64, FailurePolicy, u64, bool) {
    match &registration.spec.kind {
        Kind::Stream { batch, duration_ms, policy, retry_secs, trim, .. } => {
            (*batch, *duration_ms, *policy, *retry_secs, *trim)
        }
        _ => (1, 0, FailurePolicy::Continue, 1, false),
    }
}

/// An entry was added to stream `key` (the `xadd` keyspace event; the writer holds the lock).
pub fn on_xadd(ctx: &Context, key: &[u8], db: i32) {
    for registration in stream_listeners(key) {
        if registration.live.status() != Status::Ok {
            continue;
        }
        let (batch, duration, ..) = batch_of(&registration);
        let start = {
            let mut streams = registration.live.streams();
            let progress = streams.entry(key.to_vec()).or_default();
            progress.arrived += 1;
            progress.first_arrival.get_or_insert_with(Instant::now);
            if progress.running {
                false
            } else if progress.arrived >= batch {
                progress.running = true;
                true
            } else {
                if duration > 0 && !progress.timer {
                    progress.timer = true;
                    arm_timer(ctx, Duration::from_millis(duration), registration.clone(), key.to_vec(), db);
                }
                false
            }
        };
        if start {
            start_batch(Some(ctx), registration, key.to_vec(), db, false);
        }
    }
}

/// Processes `key`'s entries for `registration`: inline if it is `sync` and the caller holds the
/// lock, else on its home. `drain`: until none is left (a timer, a scan), not only full batches.
fn start_batch(ctx: Option<&Context>, registration: Arc<Registration>, key: Vec<u8>, db: i32, drain: bool) {
    let home = registration.home;
    match ctx {
        Some(ctx) if registration.spec.mode == Mode::Sync => {
            let _ = crate::jobs::call::call_on_home(ctx, home, Abort::new(), move |runtime, _| {
                process(runtime, &registration, &key, db, drain);
                Reply::ok()
            });
        }
        _ => pool::send(home, Box::new(move |runtime| process(runtime, &registration, &key, db, drain))),
    }
}

/// Starts a batch `after` from now, from the main thread's timer.
fn arm_timer(ctx: &Context, after: Duration, registration: Arc<Registration>, key: Vec<u8>, db: i32) {
    ctx.create_timer(after, on_timer, (registration, key, db));
}

fn on_timer(ctx: &Context, (registration, key, db): (Arc<Registration>, Vec<u8>, i32)) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if registration.live.gone() || !crate::redis::notify::fires(ctx) {
            return;
        }
        let start = {
            let mut streams = registration.live.streams();
            let progress = streams.entry(key.clone()).or_default();
            progress.timer = false;
            !std::mem::replace(&mut progress.running, true)
        };
        if start {
            start_batch(Some(ctx), registration, key, db, true);
        }
    }));
}

/// Runs batches until the stream has no full batch left (or, with `drain`, nothing left: a
/// `duration` timer).
fn process(runtime: &Runtime, registration: &Arc<Registration>, key: &[u8], db: i32, drain: bool) {
    let drain = if drain { Drain::Counted(u64::MAX) } else { Drain::Counted(0) };
    process_from(runtime, registration, key, db, drain, false)
}

/// Entries to process whatever the batch size, before going on by full batches only.
#[derive(Clone, Copy)]
enum Drain {
    /// Entries whose `xadd` events were counted (a timer's drain).
    Counted(u64),
    /// Entries a scan found, written before it (their events were not counted).
    Found(u64),
}

impl Drain {
    fn left(self) -> u64 {
        match self {
            Drain::Counted(n) | Drain::Found(n) => n,
        }
    }

    fn took(self, n: u64) -> Drain {
        match self {
            Drain::Counted(left) => Drain::Counted(left.saturating_sub(n)),
            Drain::Found(left) => Drain::Found(left.saturating_sub(n)),
        }
    }
}

/// `resume`: start with the entries read before and not acknowledged (a retry does too).
fn process_from(
    runtime: &Runtime,
    registration: &Arc<Registration>,
    key: &[u8],
    db: i32,
    mut drain: Drain,
    resume: bool,
) {
    // The stream is read and acknowledged as the registration's owner, who may not read it.
    let store = crate::jobs::host::store(db, registration.run_as.clone());
    let (batch, duration, policy, retry_secs, trim) = batch_of(registration);
    // Created at id 0 when missing: entries written before the registration are processed.
    let _ = store.call("XGROUP", &[b"CREATE", key, GROUP, b"0"]);
    let mut pending_first = resume || registration.live.status() == Status::WaitingForRetry;
    loop {
        let status = registration.live.status();
        if registration.live.gone() || !matches!(status, Status::Ok | Status::WaitingForRetry) {
            break;
        }
        // Past the drain, new entries are read only by full batches.
        if !pending_first && drain.left() == 0 && !more_batches(registration, key, batch) {
            return after_full_batches(registration, key, duration, db);
        }
        let want = if pending_first || drain.left() == 0 { batch } else { batch.min(drain.left()) };
        let entries = read(&*store, key, want.to_string().as_bytes(), if pending_first { PENDING } else { NEW });
        if entries.is_empty() {
            if pending_first {
                pending_first = false;
                registration.live.set_status(Status::Ok);
                continue;
            }
            break;
        }
        let counted = !pending_first && !matches!(drain, Drain::Found(left) if left > 0);
        let first_arrival = {
            let mut streams = registration.live.streams();
            let progress = streams.entry(key.to_vec()).or_default();
            let first = progress.first_arrival;
            if counted {
                progress.arrived = progress.arrived.saturating_sub(entries.len() as u64);
                progress.first_arrival = (progress.arrived > 0).then(Instant::now);
            }
            first
        };
        let ids: Vec<Vec<u8>> = entries.iter().map(|(id, _)| id.clone()).collect();
        if !pending_first {
            drain = drain.took(ids.len() as u64);
        }
        let batch = StreamBatch { ids, first_arrival, policy, retry_secs, trim };
        // A batch whose records wait goes on when its execution ends: one batch at a time.
        let Some(errors) = run_batch(runtime, registration, key, entries, db, drain, pending_first, &batch) else {
            return;
        };
        if !after_batch(registration, key, db, &errors, batch) {
            break;
        }
    }
    stop_processing(registration, key);
}

/// No batch of the stream is being processed any more.
fn stop_processing(registration: &Registration, key: &[u8]) {
    if let Some(progress) = registration.live.streams().get_mut(key) {
        progress.running = false;
    }
}

/// A batch being processed: its entries and what to do after it.
struct StreamBatch {
    ids: Vec<Vec<u8>>,
    first_arrival: Option<Instant>,
    policy: FailurePolicy,
    retry_secs: u64,
    trim: bool,
}

/// Acts on a batch's errors as the failure policy says; false if the stream's processing stops.
fn after_batch(registration: &Arc<Registration>, key: &[u8], db: i32, errors: &[String], batch: StreamBatch) -> bool {
    if let Some(first) = batch.first_arrival {
        registration.live.lag(first.elapsed().as_millis() as u64);
    }
    match errors.first() {
        Some(error) if error.starts_with("PAUSE") => {
            registration.live.set_status(Status::Paused);
            false
        }
        Some(_) if batch.policy == FailurePolicy::Abort => {
            registration.live.set_status(Status::Aborted);
            false
        }
        Some(_) if batch.policy == FailurePolicy::Retry => {
            registration.live.set_status(Status::WaitingForRetry);
            let (registration, key) = (registration.clone(), key.to_vec());
            with_gil(db, |ctx| arm_timer(ctx, Duration::from_secs(batch.retry_secs), registration, key, db));
            false
        }
        _ => {
            acknowledge(&*crate::jobs::host::store(db, registration.run_as.clone()), key, &batch.ids, batch.trim);
            true
        }
    }
}

/// Whether a full batch waits; if not, the stream is no longer running (decided under the same
/// lock an event takes, so no event is missed in between).
fn more_batches(registration: &Registration, key: &[u8], batch: u64) -> bool {
    let mut streams = registration.live.streams();
    let progress = streams.entry(key.to_vec()).or_default();
    if progress.arrived >= batch {
        return true;
    }
    progress.running = false;
    false
}

/// After the last full batch: fewer entries wait; `duration` starts them later.
fn after_full_batches(registration: &Arc<Registration>, key: &[u8], duration: u64, db: i32) {
    let arm = {
        let mut streams = registration.live.streams();
        let progress = streams.entry(key.to_vec()).or_default();
        let arm = duration > 0 && progress.arrived > 0 && !progress.timer && !progress.running;
        progress.timer |= arm;
        arm
    };
    if arm {
        let (registration, key) = (registration.clone(), key.to_vec());
        with_gil(db, |ctx| arm_timer(ctx, Duration::from_millis(duration), registration, key, db));
    }
}

/// One execution over a batch: its errors, or `None` if its records wait (its end then acts on
/// the batch and goes on processing the stream from `drain`).
#[allow(clippy::too_many_arguments)]
fn run_batch(
    runtime: &Runtime,
    registration: &Arc<Registration>,
    key: &[u8],
    entries: Vec<(Vec<u8>, Vec<Reply>)>,
    db: i32,
    drain: Drain,
    pending_first: bool,
    batch: &StreamBatch,
) -> Option<Vec<String>> {
    let abort = Abort::new();
    let execution = executions::create_registered(runtime.worker(), true, &registration.spec.id, abort);
    let session = with_gil(db, |_| registrations::hold_session(&registration.session));
    registration.live.started();
    let input = Input::Stream { key: key.to_vec(), entries };
    let now = Rc::new(Cell::new(true));
    let errors_now = Rc::new(RefCell::new(None));
    let (running_now, slot) = (now.clone(), errors_now.clone());
    let batch = StreamBatch { ids: batch.ids.clone(), ..*batch };
    let (later, key_later) = (registration.clone(), key.to_vec());
    let then: dispatch::Then = Box::new(move |runtime, _, errors| {
        if running_now.get() {
            *slot.borrow_mut() = Some(errors.to_vec());
        } else if after_batch(&later, &key_later, db, errors, batch) {
            process_from(runtime, &later, &key_later, db, drain, pending_first);
        } else {
            stop_processing(&later, &key_later);
        }
    });
    let execution = crate::jobs::Running::holding(execution, session);
    let started =
        dispatch::run_registration(runtime, registration.clone(), input, db, execution, dispatch::Place::Home, then);
    now.set(false);
    runtime.end_job();
    crate::jobs::defer_nested(runtime, db);
    // Aborted before it started: the batch counts as processed, as a batch without errors.
    if !started {
        return Some(Vec::new());
    }
    errors_now.take()
}

/// `XREADGROUP` of up to `count` entries from `from` (`>` new ones, `0` this consumer's pending).
fn read(store: &dyn Store, key: &[u8], count: &[u8], from: &[u8]) -> Vec<(Vec<u8>, Vec<Reply>)> {
    let args: [&[u8]; 8] = [b"GROUP", GROUP, CONSUMER, b"COUNT", count, b"STREAMS", key, from];
    let Reply::Array(mut streams) = store.call("XREADGROUP", &args) else { return Vec::new() };
    let Some(Reply::Array(mut stream)) = streams.pop() else { return Vec::new() };
    let Some(Reply::Array(entries)) = stream.pop() else { return Vec::new() };
    entries
        .into_iter()
        .filter_map(|entry| match entry {
            Reply::Array(mut parts) => match (parts.pop(), parts.pop()) {
                (Some(Reply::Array(fields)), Some(Reply::Bulk(id))) => Some((id, fields)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Acknowledges a processed batch; with `trim`, drops it from the stream (entries before the
/// next one to process).
fn acknowledge(store: &dyn Store, key: &[u8], ids: &[Vec<u8>], trim: bool) {
    let mut args: Vec<&[u8]> = vec![key, GROUP];
    args.extend(ids.iter().map(Vec::as_slice));
    store.call("XACK", &args);
    if trim && let Some(next) = ids.last().and_then(|id| next_stream_id(id)) {
        store.call("XTRIM", &[key, b"MINID", next.as_bytes()]);
    }
}

/// The smallest stream id after `id` (`ms-seq`).
fn next_stream_id(id: &[u8]) -> Option<String> {
    let id = std::str::from_utf8(id).ok()?;
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms + 1),
    })
}

/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS of the registrations `ids` that are here.
pub fn pause_here(ids: &[String], pause: bool) {
    for registration in ids.iter().filter_map(|id| crate::registrations::find(id)) {
        pause_one(&registration, pause);
    }
}

/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS of one stream registration.
fn pause_one(registration: &Arc<Registration>, pause: bool) {
    if pause {
        registration.live.set_status(Status::Paused);
    } else if registration.live.status() == Status::Paused {
        registration.live.set_status(Status::Ok);
        scan_existing(registration.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_ids() {
        assert_eq!(next_stream_id(b"5-3").as_deref(), Some("5-4"));
        assert_eq!(next_stream_id(b"5-18446744073709551615").as_deref(), Some("6-0"));
        assert_eq!(next_stream_id(b"junk"), None);
    }
}
