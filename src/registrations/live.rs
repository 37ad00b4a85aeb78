//! What a registration does while it lives: its statistics (RG.DUMPREGISTRATIONS), its status,
//! its stream's progress, the executions it has pending and listed.

use crate::unpoisoned::Unpoisoned;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

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

impl Live {
    pub fn stats(&self) -> Stats {
        self.stats.locked().clone()
    }

    pub fn status(&self) -> Status {
        *self.status.locked()
    }

    pub fn set_status(&self, status: Status) {
        *self.status.locked() = status;
    }

    pub fn streams(&self) -> MutexGuard<'_, std::collections::HashMap<Vec<u8>, StreamProgress>> {
        self.streams.locked()
    }

    pub fn clear_stats(&self) {
        *self.stats.locked() = Stats::default();
    }

    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Counts an execution started.
    pub fn started(&self) {
        self.stats.locked().triggered += 1;
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts how an execution ended, after `ms` (before its caller is answered, so that the
    /// counters it reads afterwards include it).
    pub fn count(&self, outcome: Outcome, ms: u64) {
        {
            let mut stats = self.stats.locked();
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
        let mut finished = self.finished.locked();
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
        let mut stats = self.stats.locked();
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

    /// Unregistered: queued events are dropped, running executions left to end.
    pub(super) fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
    }

    /// The finished executions listed, for dropping on unregistration.
    pub(super) fn take_finished(&self) -> Vec<String> {
        if self.running.load(Ordering::Acquire) > 0 {
            return Vec::new();
        }
        self.finished.locked().drain(..).collect()
    }
}
