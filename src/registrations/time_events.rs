//! Time events (`registerTE`): timers calling a session's function every period, on its home.
//! A keyed one is also a key of module type `rg_timeev` holding `TimerKey`, so it survives
//! reloads and restarts; deleting the key stops it (docs/python-api.md#time-events).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::RunAs;
use crate::unpoisoned::Unpoisoned;

/// A running time event.
#[derive(Debug, Clone)]
pub struct TimeEvent {
    pub id: u64,
    pub home: usize,
    pub period: Duration,
    pub key: Option<Vec<u8>>,
    pub session: Option<String>,
    pub db: i32,
    /// Whom its function runs as: the user whose script started it.
    pub run_as: RunAs,
}

/// The value of a keyed time event's key: enough to bring it back after a restart (its session's
/// source is run again and its `registerTE` call finds the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerKey {
    pub id: u64,
    pub session: Option<String>,
    pub source: Option<String>,
    pub seconds: u64,
    /// The ACL user whose script started it; keys written before owners were recorded belong
    /// to `default`.
    #[serde(default = "super::persist::default_owner")]
    pub owner: String,
}

impl TimerKey {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Option<TimerKey> {
        serde_json::from_slice(bytes).ok()
    }
}

static NEXT_TIMER_ID: AtomicU64 = AtomicU64::new(1);
static ACTIVE: LazyLock<Mutex<HashMap<u64, TimeEvent>>> = LazyLock::new(Default::default);
/// Keyed time events loaded from an RDB, not yet running again.
static LOADED_TIMERS: LazyLock<Mutex<Vec<TimerKey>>> = LazyLock::new(Default::default);

fn active() -> MutexGuard<'static, HashMap<u64, TimeEvent>> {
    ACTIVE.locked()
}

fn loaded_timers() -> MutexGuard<'static, Vec<TimerKey>> {
    LOADED_TIMERS.locked()
}

pub fn next_id() -> u64 {
    NEXT_TIMER_ID.fetch_add(1, Ordering::AcqRel)
}

pub fn add(event: TimeEvent) {
    active().insert(event.id, event);
}

pub fn lookup(id: u64) -> Option<TimeEvent> {
    active().get(&id).cloned()
}

pub fn is_active(id: u64) -> bool {
    active().contains_key(&id)
}

pub fn stop(id: u64) -> Option<TimeEvent> {
    active().remove(&id)
}

/// A keyed time event read from an RDB: ids stay above it, and it waits to be brought back.
pub fn loaded_key(key: TimerKey) {
    NEXT_TIMER_ID.fetch_max(key.id + 1, Ordering::AcqRel);
    loaded_timers().push(key);
}

/// The loaded keyed time events not running yet.
pub fn take_loaded_timers() -> Vec<TimerKey> {
    std::mem::take(&mut *loaded_timers()).into_iter().filter(|k| !is_active(k.id)).collect()
}

/// Time events of `session` that are running (they keep it referenced).
pub fn count_of(session: &str) -> usize {
    active().values().filter(|e| e.session.as_deref() == Some(session)).count()
}

/// `count_of` of every session with time events, in one look (for listing many sessions).
pub fn counts() -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for session in active().values().filter_map(|e| e.session.as_ref()) {
        *counts.entry(session.clone()).or_insert(0) += 1;
    }
    counts
}
