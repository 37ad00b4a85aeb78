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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

mod live;

use crate::unpoisoned::Unpoisoned;

pub use live::{Live, Outcome, Stats, Status, StreamProgress};
pub use spec::{FailurePolicy, Kind, Mode, Spec};

use crate::error::GearsError;
use crate::store::RunAs;

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
    REGISTRY.locked()
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
    conflicts(&registry, &replaced, &batch.specs)?;
    let gone = match &batch.replaces {
        Some(old) => registry.replace_session(old, &replaced),
        None => Vec::new(),
    };
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

/// The first conflict of `specs` with the registrations that stay (all but `replaced`). One
/// pass over them (not one per spec): a session of thousands of registrations is applied, or
/// upgraded, in time linear in the registrations.
fn conflicts(registry: &Registry, replaced: &HashSet<String>, specs: &[Spec]) -> Result<(), String> {
    let mut triggers = HashSet::new();
    let mut unsynced_hooks = HashSet::new();
    for r in registry.registrations.iter().filter(|r| !replaced.contains(&r.spec.id)) {
        triggers.extend(r.spec.kind.trigger());
        if r.spec.mode != Mode::Sync {
            unsynced_hooks.extend(r.spec.kind.hook());
        }
    }
    for spec in specs {
        if spec.kind.trigger().is_some_and(|t| triggers.contains(t)) {
            return Err("trigger already registered".to_owned());
        }
        if spec.kind.hook().is_some_and(|h| unsynced_hooks.contains(h)) {
            return Err("Can not override a none sync registration".to_owned());
        }
    }
    Ok(())
}

impl Registry {
    /// Takes out session `old`'s registrations (`replaced`), marked gone; the session is kept
    /// as dead while executions of it still run.
    fn replace_session(&mut self, old: &str, replaced: &HashSet<String>) -> Vec<Arc<Registration>> {
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.registrations).into_iter().partition(|r| replaced.contains(&r.spec.id));
        self.registrations = kept;
        for registration in &gone {
            registration.live.mark_gone();
        }
        if let Some(session) = self.sessions.remove(old) {
            let session = SessionRecord { registrations: Vec::new(), ..session };
            if session.ref_count() > 0 {
                self.dead.insert(session.id.clone(), session);
            }
        }
        gone
    }
}

/// Removes registration `id` (with the Redis lock held); its session goes with its last
/// registration. Returns the
/// registration (for aborting its executions) and the finished executions to drop now.
pub fn unregister(id: &str) -> Result<(Arc<Registration>, Vec<String>), GearsError> {
    let mut registry = registry();
    let index = registry.registrations.iter().position(|r| r.spec.id == id).ok_or(GearsError::NotRegistered)?;
    let registration = registry.registrations.remove(index);
    registration.live.mark_gone();
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
    hooks::recount_hooks(registrations);
    keys::recount_keys(registrations);
}

/// Every registration, in creation order.
pub fn all() -> Vec<Arc<Registration>> {
    registry().registrations.clone()
}

/// RG.CLEARREGISTRATIONSSTATS: every registration's counters start again.
pub fn clear_all_stats() {
    for registration in all() {
        registration.live.clear_stats();
    }
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
        registration.live.mark_gone();
        finished.extend(registration.live.take_finished());
    }
    registry.sessions.clear();
    recount(&registry.registrations);
    finished
}

pub fn count() -> usize {
    registry().registrations.len()
}
