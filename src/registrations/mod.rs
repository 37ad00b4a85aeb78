//! Registrations: plans bound to events, and the sessions that own them.
//!
//! This is the Rust side only: what each registration listens to (`Spec`), its statistics, and
//! the session table (ids, descriptions, script sources, home workers). The Python callbacks of
//! a session live in its home worker's interpreter (`python::held`), and are rebuilt from the
//! session's source wherever they are missing (a restart, a replaced worker).
//!
//! Lock discipline: the registry's definitions change only while the Redis lock is held (on the
//! main thread, or on a worker inside `with_gil`). A fork (BGSAVE, AOF rewrite) happens on the
//! main thread with the lock held, so the child always finds the registry's mutex free and its
//! content whole (`persist`). Statistics have their own locks and are never persisted.

pub mod hooks;
pub mod keys;
pub mod persist;
pub mod queue;
pub mod spec;
pub mod time_events;
pub mod triggers;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

pub use spec::{FailurePolicy, Kind, Mode, Spec};

use crate::error::GearsError;
use crate::store::RunAs;

/// Counters and durations of one registration (RG.DUMPREGISTRATIONS).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub triggered: u64,
    pub success: u64,
    pub failures: u64,
    pub aborted: u64,
    pub last_ms: u64,
    pub total_ms: u64,
    pub last_error: Option<String>,
    pub last_lag_ms: u64,
    pub total_lag_ms: u64,
    pub lags: u64,
}

impl Stats {
    pub fn avg_ms(&self) -> f64 {
        let finished = self.success + self.failures;
        if finished == 0 { 0.0 } else { self.total_ms as f64 / finished as f64 }
    }

    pub fn avg_lag_ms(&self) -> f64 {
        if self.lags == 0 { 0.0 } else { self.total_lag_ms as f64 / self.lags as f64 }
    }
}

/// How an execution of a registration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The first error.
    Failure(String),
    Aborted,
}

/// Where a stream registration is (RG.DUMPREGISTRATIONS's `status`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    #[default]
    Ok,
    WaitingForRetry,
    Aborted,
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::WaitingForRetry => "WAITING_FOR_RETRY_ON_FAILURE",
            Status::Aborted => "ABORTED",
            Status::Paused => "PAUSED",
        }
    }
}

/// One stream's progress under a stream registration.
#[derive(Debug, Default)]
pub struct StreamProgress {
    /// Entries added since the last batch was read (an estimate: events counted).
    pub arrived: u64,
    /// When the first of them arrived.
    pub first_arrival: Option<std::time::Instant>,
    /// A batch of this stream is being processed (one at a time per stream).
    pub running: bool,
    /// A timer will start a batch (`duration`, or a retry).
    pub timer: bool,
}

/// The state of one registration that changes as it runs.
#[derive(Debug, Default)]
pub struct Live {
    status: Mutex<Status>,
    /// Stream registrations: progress per stream key.
    pub streams: Mutex<std::collections::HashMap<Vec<u8>, StreamProgress>>,
    stats: Mutex<Stats>,
    /// Events accepted and not yet run (async modes): bounded by MaxPendingEventsPerRegistration.
    pending: AtomicUsize,
    /// Finished executions still listed, oldest first (MaxExecutionsPerRegistration).
    finished: Mutex<VecDeque<String>>,
    /// Executions created and not yet finished.
    running: AtomicUsize,
    /// Set when unregistered: queued events are dropped, running ones are left to end.
    gone: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Live {
    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub fn status(&self) -> Status {
        *lock(&self.status)
    }

    pub fn set_status(&self, status: Status) {
        *lock(&self.status) = status;
    }

    pub fn streams(&self) -> MutexGuard<'_, std::collections::HashMap<Vec<u8>, StreamProgress>> {
        lock(&self.streams)
    }

    pub fn clear_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Counts an execution started.
    pub fn started(&self) {
        lock(&self.stats).triggered += 1;
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts how an execution ended, after `ms` (before its caller is answered, so that the
    /// counters it reads afterwards include it).
    pub fn count(&self, outcome: Outcome, ms: u64) {
        {
            let mut stats = lock(&self.stats);
            match outcome {
                Outcome::Success => {
                    stats.success += 1;
                    stats.last_error = None;
                }
                Outcome::Failure(error) => {
                    stats.failures += 1;
                    stats.last_error = Some(error);
                }
                Outcome::Aborted => stats.aborted += 1,
            }
            stats.last_ms = ms;
            stats.total_ms += ms;
        }
    }

    /// An execution (`id`, finished) joins the finished ones; returns the oldest beyond
    /// MaxExecutionsPerRegistration, to drop.
    pub fn ended(&self, id: String) -> Vec<String> {
        self.running.fetch_sub(1, Ordering::AcqRel);
        let limit = crate::config::with(|c| c.max_executions_per_registration).max(0) as usize;
        let mut finished = lock(&self.finished);
        finished.push_back(id);
        let mut dropped = Vec::new();
        while finished.len() > limit {
            dropped.extend(finished.pop_front());
        }
        // Unregistered: nothing of it stays listed once none of its executions runs.
        if self.gone() && self.running.load(Ordering::Acquire) == 0 {
            dropped.extend(finished.drain(..));
        }
        dropped
    }

    /// A stream batch's lag: from its first entry's arrival to its completion.
    pub fn lag(&self, ms: u64) {
        let mut stats = lock(&self.stats);
        stats.last_lag_ms = ms;
        stats.total_lag_ms += ms;
        stats.lags += 1;
    }

    /// Takes one pending slot, unless `bound` are taken.
    pub fn try_pend(&self, bound: usize) -> bool {
        self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < bound).then_some(n + 1)).is_ok()
    }

    pub fn unpend(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// The finished executions listed, for dropping on unregistration.
    fn take_finished(&self) -> Vec<String> {
        if self.running.load(Ordering::Acquire) > 0 {
            return Vec::new();
        }
        lock(&self.finished).drain(..).collect()
    }
}

/// One registration: what it listens to, whose it is, where its callbacks live.
#[derive(Debug)]
pub struct Registration {
    pub spec: Spec,
    pub session: String,
    /// Its session's owner, whom its executions run as.
    pub run_as: RunAs,
    pub home: usize,
    pub live: Live,
}

/// A session that owns registrations (or did, and is still referenced: dead).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: String,
    pub desc: Option<String>,
    pub source: String,
    pub home: usize,
    /// The ACL user that registered it (docs/sandbox.md#security-model).
    pub owner: String,
    pub registrations: Vec<String>,
    /// Unfinished executions and time events of the session.
    pub refs: Arc<AtomicUsize>,
}

impl SessionRecord {
    pub fn ref_count(&self) -> usize {
        self.registrations.len() + self.refs.load(Ordering::Acquire) + time_events::count_of(&self.id)
    }

    /// `ref_count`, with the time events of every session counted beforehand (`time_events::counts`).
    fn ref_count_of(&self, time_events: &HashMap<String, usize>) -> usize {
        self.registrations.len() + self.refs.load(Ordering::Acquire) + time_events.get(&self.id).copied().unwrap_or(0)
    }
}

#[derive(Default)]
struct Registry {
    /// In creation order.
    registrations: Vec<Arc<Registration>>,
    /// Live sessions, by id (listed in id order).
    sessions: BTreeMap<String, SessionRecord>,
    /// Replaced by an upgrade, still referenced.
    dead: BTreeMap<String, SessionRecord>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

fn registry() -> MutexGuard<'static, Registry> {
    lock(&REGISTRY)
}

/// What applying one script's registrations needs.
#[derive(Debug, Clone)]
pub struct ApplyBatch {
    pub session: String,
    pub desc: Option<String>,
    pub source: String,
    pub home: usize,
    pub owner: String,
    pub specs: Vec<Spec>,
    /// The session whose registrations the batch replaces (UPGRADE, REPLACE_WITH).
    pub replaces: Option<String>,
}

/// RG.PYEXECUTE's session checks, in RedisGears' order (docs/commands.md#rgpyexecute).
pub fn check_new_session(id: Option<&str>, upgrade: bool, replace_with: Option<&str>) -> Result<(), GearsError> {
    let registry = registry();
    let exists = |id: &str| registry.sessions.contains_key(id);
    if let Some(old) = replace_with {
        if let Some(id) = id.filter(|id| exists(id)) {
            return Err(GearsError::CanNotReplaceExisting(id.to_owned(), old.to_owned()));
        }
        if !exists(old) {
            return Err(GearsError::NoSessionToReplace(old.to_owned()));
        }
        return Ok(());
    }
    match id {
        Some(id) if exists(id) && !upgrade => Err(GearsError::SessionExists(id.to_owned())),
        _ => Ok(()),
    }
}

/// Applies a script's registrations at once, or nothing (the first conflict's text). The
/// caller holds the Redis lock. Returns the registrations it replaced.
pub fn apply(batch: &ApplyBatch) -> Result<Vec<Arc<Registration>>, String> {
    let mut registry = registry();
    let replaced: HashSet<String> = batch
        .replaces
        .as_ref()
        .and_then(|old| registry.sessions.get(old))
        .map_or_else(Default::default, |s| s.registrations.iter().cloned().collect());
    // One pass over the others (not one per spec): a session of thousands of registrations is
    // applied, or upgraded, in time linear in the registrations.
    let mut triggers = HashSet::new();
    let mut unsynced_hooks = HashSet::new();
    for r in registry.registrations.iter().filter(|r| !replaced.contains(&r.spec.id)) {
        triggers.extend(r.spec.kind.trigger());
        if r.spec.mode != Mode::Sync {
            unsynced_hooks.extend(r.spec.kind.hook());
        }
    }
    for spec in &batch.specs {
        if spec.kind.trigger().is_some_and(|t| triggers.contains(t)) {
            return Err("trigger already registered".to_owned());
        }
        if spec.kind.hook().is_some_and(|h| unsynced_hooks.contains(h)) {
            return Err("Can not override a none sync registration".to_owned());
        }
    }
    let mut gone = Vec::new();
    if let Some(old) = &batch.replaces {
        let (out, kept) =
            std::mem::take(&mut registry.registrations).into_iter().partition(|r| replaced.contains(&r.spec.id));
        registry.registrations = kept;
        for registration in &out {
            registration.live.gone.store(true, Ordering::Release);
        }
        gone = out;
        if let Some(session) = registry.sessions.remove(old) {
            let session = SessionRecord { registrations: Vec::new(), ..session };
            if session.ref_count() > 0 {
                registry.dead.insert(session.id.clone(), session);
            }
        }
    }
    if batch.specs.is_empty() {
        recount(&registry.registrations);
        return Ok(gone);
    }
    // A registration made outside a script body joins its session's.
    let (refs, mut ids) = registry
        .sessions
        .get(&batch.session)
        .map_or_else(Default::default, |s| (s.refs.clone(), s.registrations.clone()));
    ids.extend(batch.specs.iter().map(|s| s.id.clone()));
    for spec in &batch.specs {
        registry.registrations.push(Arc::new(Registration {
            spec: spec.clone(),
            session: batch.session.clone(),
            run_as: RunAs::user(&batch.owner),
            home: batch.home,
            live: Live::default(),
        }));
    }
    registry.sessions.insert(
        batch.session.clone(),
        SessionRecord {
            id: batch.session.clone(),
            desc: batch.desc.clone(),
            source: batch.source.clone(),
            home: batch.home,
            owner: batch.owner.clone(),
            registrations: ids,
            refs,
        },
    );
    recount(&registry.registrations);
    Ok(gone)
}

/// Removes registration `id` (with the Redis lock held); its session goes with its last
/// registration. Returns the
/// registration (for aborting its executions) and the finished executions to drop now.
pub fn unregister(id: &str) -> Result<(Arc<Registration>, Vec<String>), GearsError> {
    let mut registry = registry();
    let index = registry.registrations.iter().position(|r| r.spec.id == id).ok_or(GearsError::NotRegistered)?;
    let registration = registry.registrations.remove(index);
    registration.live.gone.store(true, Ordering::Release);
    let session_id = registration.session.clone();
    if let Some(session) = registry.sessions.get_mut(&session_id) {
        session.registrations.retain(|r| r != id);
        if session.ref_count() == 0 {
            registry.sessions.remove(&session_id);
        }
    }
    recount(&registry.registrations);
    let finished = registration.live.take_finished();
    Ok((registration, finished))
}

/// Keeps the counts that let events and commands pass by quickly when nothing listens.
fn recount(registrations: &[Arc<Registration>]) {
    hooks::recount(registrations);
    keys::recount(registrations);
}

/// Every registration, in creation order.
pub fn all() -> Vec<Arc<Registration>> {
    registry().registrations.clone()
}

pub fn find(id: &str) -> Option<Arc<Registration>> {
    registry().registrations.iter().find(|r| r.spec.id == id).cloned()
}

/// The sessions in id order, each with whether it is dead: the live ones, the dead ones, or both.
pub fn sessions(live: bool, dead: bool) -> Vec<(SessionRecord, bool)> {
    let mut registry = registry();
    forget_unreferenced(&mut registry);
    let live_ones = registry.sessions.values().filter(|_| live).map(|s| (s.clone(), false));
    let dead_ones = registry.dead.values().filter(|_| dead).map(|s| (s.clone(), true));
    live_ones.chain(dead_ones).collect()
}

pub fn session(id: &str) -> Option<(SessionRecord, bool)> {
    let mut registry = registry();
    forget_unreferenced(&mut registry);
    registry.sessions.get(id).map(|s| (s.clone(), false)).or_else(|| registry.dead.get(id).map(|s| (s.clone(), true)))
}

/// Sessions whose last reference (an execution, a time event) went since they lost their last
/// registration. Returns the time events counted per session, for the caller's ref counts.
fn forget_unreferenced(registry: &mut Registry) -> HashMap<String, usize> {
    let time_events = time_events::counts();
    registry.sessions.retain(|_, s| s.ref_count_of(&time_events) > 0);
    registry.dead.retain(|_, s| s.ref_count_of(&time_events) > 0);
    time_events
}

/// Every registration, in creation order, each with what `describe` makes of its session (called
/// once per session, with whether it is dead and its ref count): replies that list every
/// registration stay linear in them, however many a session has or however many sessions there
/// are. None for a registration whose session is missing.
pub fn all_described<T: Clone>(
    mut describe: impl FnMut(&SessionRecord, bool, usize) -> T,
) -> Vec<(Arc<Registration>, Option<T>)> {
    let mut registry = registry();
    let time_events = forget_unreferenced(&mut registry);
    let mut made: HashMap<&str, Option<T>> = HashMap::new();
    let registry = &*registry;
    registry
        .registrations
        .iter()
        .map(|r| {
            let described = made
                .entry(r.session.as_str())
                .or_insert_with(|| {
                    let found = registry.sessions.get(&r.session).map(|s| (s, false));
                    found
                        .or_else(|| registry.dead.get(&r.session).map(|s| (s, true)))
                        .map(|(s, dead)| describe(s, dead, s.ref_count_of(&time_events)))
                })
                .clone();
            (r.clone(), described)
        })
        .collect()
}

/// What `describe` makes of each session (as `all_described`), in id order: the live ones, the
/// dead ones, or both. Nothing of the sessions is copied.
pub fn sessions_described<T>(
    live: bool,
    dead: bool,
    mut describe: impl FnMut(&SessionRecord, bool, usize) -> T,
) -> Vec<T> {
    let mut registry = registry();
    let time_events = forget_unreferenced(&mut registry);
    let live_ones = registry.sessions.values().filter(|_| live).map(|s| (s, false));
    let dead_ones = registry.dead.values().filter(|_| dead).map(|s| (s, true));
    live_ones.chain(dead_ones).map(|(s, dead)| describe(s, dead, s.ref_count_of(&time_events))).collect()
}

/// A reference to a session held by an execution or a time event. Dropped on any thread, so it
/// only counts: a dead session with no references left is forgotten the next time sessions are
/// listed.
pub struct SessionRef(Arc<AtomicUsize>);

/// Called with the Redis lock held.
pub fn hold_session(id: &str) -> Option<SessionRef> {
    let registry = registry();
    let refs = registry.sessions.get(id).or_else(|| registry.dead.get(id))?.refs.clone();
    refs.fetch_add(1, Ordering::AcqRel);
    Some(SessionRef(refs))
}

impl Drop for SessionRef {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Forgets every registration and session (a replica's full resync, a load replacing the data).
/// Returns the finished executions they listed, to drop (the history is not kept).
pub fn clear() -> Vec<String> {
    let mut registry = registry();
    let mut finished = Vec::new();
    for registration in registry.registrations.drain(..) {
        registration.live.gone.store(true, Ordering::Release);
        finished.extend(registration.live.take_finished());
    }
    registry.sessions.clear();
    recount(&registry.registrations);
    finished
}

pub fn count() -> usize {
    registry().registrations.len()
}
