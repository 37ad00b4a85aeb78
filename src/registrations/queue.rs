//! The keyspace events queued for asynchronous registrations, as the RDB saves them
//! (docs/python-api.md#durability): an event is journaled when it is queued on its home and
//! leaves the journal when its execution ends, so that an RDB written meanwhile (a graceful
//! SHUTDOWN, SAVE, BGSAVE) holds every event its data has seen but no execution has finished.
//! Loading that RDB at start-up queues them again: what the snapshot's data missed, it replays.
//!
//! Lock discipline as the registry's: entries are added, pruned and read only with the Redis
//! lock held, so a forked child finds the mutex free. Workers only mark an entry done (an
//! atomic), which never blocks a fork nor tears what the child reads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::unpoisoned::Unpoisoned;
use serde::{Deserialize, Serialize};

/// A keyspace event waiting for (or in) an execution of an asynchronous registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub registration: String,
    pub db: i32,
    pub key: Vec<u8>,
    pub event: Vec<u8>,
}

struct QueueEntry {
    event: QueuedEvent,
    done: AtomicBool,
}

static JOURNAL: Mutex<Vec<Arc<QueueEntry>>> = Mutex::new(Vec::new());
/// Entries not yet done: the journal is pruned when it holds twice as many.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Whether this process ever queued an event: only a load before that replays a saved queue.
static EVER: AtomicBool = AtomicBool::new(false);
/// Whether the load under way may replay its queue: an RDB file's, not an AOF's.
static REPLAYABLE: AtomicBool = AtomicBool::new(false);
/// What the RDB being loaded had queued, until loading ends.
static LOADED_EVENTS: Mutex<Vec<QueuedEvent>> = Mutex::new(Vec::new());

/// Journals `event` until the returned guard is dropped (its execution ended or was dropped
/// unrun). Only with the Redis lock held.
pub fn journal(event: QueuedEvent) -> Journaled {
    EVER.store(true, Ordering::Relaxed);
    let entry = Arc::new(QueueEntry { event, done: AtomicBool::new(false) });
    let live = LIVE.fetch_add(1, Ordering::AcqRel) + 1;
    let mut journal = JOURNAL.locked();
    // Amortized: each prune at least halves what it walks.
    if journal.len() >= 2 * live + 64 {
        journal.retain(|e| !e.done.load(Ordering::Acquire));
    }
    journal.push(entry.clone());
    Journaled(entry)
}

/// An event in the journal; dropping it takes it out.
pub struct Journaled(Arc<QueueEntry>);

impl Drop for Journaled {
    fn drop(&mut self) {
        if !self.0.done.swap(true, Ordering::AcqRel) {
            LIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The events an RDB saves: queued or running, oldest first. Only with the Redis lock held
/// (the fork child included).
pub fn queued_snapshot() -> Vec<QueuedEvent> {
    let journal = JOURNAL.locked();
    journal.iter().filter(|e| !e.done.load(Ordering::Acquire)).map(|e| e.event.clone()).collect()
}

/// An RDB being loaded had these events queued.
pub fn loaded(events: Vec<QueuedEvent>) {
    LOADED_EVENTS.locked().extend(events);
}

/// Loading ended: the saved events to queue again. None unless the load was of an RDB file
/// (`loading`) and nothing was queued by this process before (a start-up load; a DEBUG RELOAD
/// or a replica's sync would run them twice).
pub fn take_loaded() -> Vec<QueuedEvent> {
    let events = std::mem::take(&mut *LOADED_EVENTS.locked());
    let replay = REPLAYABLE.swap(false, Ordering::Relaxed) && !EVER.load(Ordering::Relaxed);
    if replay { events } else { Vec::new() }
}

/// A load starts; `snapshot`: of an RDB file (an AOF's preamble was saved before the commands
/// that follow it, so its queue is stale).
pub fn loading(snapshot: bool) {
    LOADED_EVENTS.locked().clear();
    REPLAYABLE.store(snapshot, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str) -> QueuedEvent {
        QueuedEvent { registration: "r".to_owned(), db: 0, key: key.as_bytes().to_vec(), event: b"set".to_vec() }
    }

    // One test: the journal is global.
    #[test]
    fn an_event_is_saved_until_its_execution_ends_and_replayed_only_on_a_first_load() {
        let a = journal(event("a"));
        let b = journal(event("b"));
        assert_eq!(queued_snapshot(), vec![event("a"), event("b")]);
        drop(a);
        assert_eq!(queued_snapshot(), vec![event("b")]);
        // Many ended executions are pruned; the live one stays.
        for i in 0..1000 {
            drop(journal(event(&i.to_string())));
        }
        assert!(JOURNAL.locked().len() < 200);
        assert_eq!(queued_snapshot(), vec![event("b")]);
        drop(b);
        assert!(queued_snapshot().is_empty());
        // This process has queued events: a load's are not replayed.
        loading(true);
        loaded(vec![event("c")]);
        assert!(take_loaded().is_empty());
        EVER.store(false, Ordering::Relaxed);
        // An AOF's are not.
        loading(false);
        loaded(vec![event("c")]);
        assert!(take_loaded().is_empty());
        loading(true);
        loaded(vec![event("c")]);
        assert_eq!(take_loaded(), vec![event("c")]);
    }
}
