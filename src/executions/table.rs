//! The executions table: slab-indexed entries, an id index, and the listing order that
//! `MaxExecutions` evicts from (oldest first).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use slab::Slab;

use super::shard_id;
use crate::error::GearsError;
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;
use crate::report::Report;
use crate::stop::{Abort, Reason, WorkerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Done,
    Aborted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Done => "done",
            State::Aborted => "aborted",
        }
    }
}

/// Names one execution for its owner (the worker running it). The id guards against the slab
/// slot having been reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionKey {
    slot: usize,
    pub id: String,
}

/// What a waiting client gets when the execution ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    /// `[results, errors]` (RG.PYEXECUTE, RG.GETRESULTSBLOCKING).
    Results,
    /// `OK` (RG.ABORTEXECUTION waits for the execution to stop).
    Ok,
    /// The first error, or the results alone (RG.TRIGGER).
    Trigger,
    /// The first error, or the one result (a hooked command).
    Hook,
}

pub struct Waiter {
    pub client: BlockedClient,
    pub wants: Wants,
}

struct ExecutionRow {
    id: String,
    state: State,
    reply: Option<Arc<Reply>>,
    report: Option<Arc<Report>>,
    waiters: Vec<Waiter>,
    abort: Arc<Abort>,
    /// The worker it runs on.
    worker: WorkerId,
    keep: bool,
    /// The registration whose event started it.
    registration: Option<String>,
    /// Still listed (counts towards MaxExecutions). An evicted execution that is still running
    /// stays reachable by id until it ends, then goes.
    listed: bool,
    /// Stopped while its records waited (not while running Python): it ends `aborted`.
    stopped_waiting: bool,
}

/// What RG.ABORTEXECUTION found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortOutcome {
    /// The execution had already ended: nothing to wait for.
    Ended,
    /// It was running and was asked to stop; it has not ended yet.
    Stopping,
    /// It had not started: it never will, and the caller ends it now.
    NotStarted(ExecutionKey),
}

pub enum Lookup {
    Missing,
    Pending,
    Done(Arc<Reply>),
}

pub struct Dump {
    pub id: String,
    pub state: State,
    pub registered: bool,
}

#[derive(Default)]
pub struct Table {
    slab: Slab<ExecutionRow>,
    by_id: HashMap<String, usize>,
    /// Listed executions, oldest first.
    order: VecDeque<usize>,
    counter: u64,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn create(
        &mut self,
        worker: WorkerId,
        keep: bool,
        registration: Option<String>,
        limit: i64,
        abort: Arc<Abort>,
    ) -> ExecutionKey {
        let id = format!("{}-{}", shard_id(), self.counter);
        self.counter += 1;
        self.insert(id, worker, keep, registration, limit, abort)
    }

    /// This shard's copy of another shard's distributed execution `id`; `None` if one is listed
    /// already.
    pub fn create_copy(
        &mut self,
        worker: WorkerId,
        id: &str,
        keep: bool,
        limit: i64,
        abort: Arc<Abort>,
    ) -> Option<ExecutionKey> {
        if self.by_id.contains_key(id) {
            return None;
        }
        Some(self.insert(id.to_owned(), worker, keep, None, limit, abort))
    }

    /// Whether execution `id` stays listed after it ends.
    pub fn kept(&self, id: &str) -> bool {
        self.by_id.get(id).and_then(|slot| self.slab.get(*slot)).is_some_and(|e| e.keep)
    }

    fn insert(
        &mut self,
        id: String,
        worker: WorkerId,
        keep: bool,
        registration: Option<String>,
        limit: i64,
        abort: Arc<Abort>,
    ) -> ExecutionKey {
        if limit > 0 {
            while self.order.len() as i64 >= limit {
                self.evict_oldest();
            }
        }
        let slot = self.slab.insert(ExecutionRow {
            id: id.clone(),
            state: State::Created,
            reply: None,
            report: None,
            waiters: Vec::new(),
            abort,
            worker,
            keep,
            registration,
            listed: true,
            stopped_waiting: false,
        });
        self.by_id.insert(id.clone(), slot);
        self.order.push_back(slot);
        ExecutionKey { slot, id }
    }

    pub fn skip_id(&mut self) {
        self.counter += 1;
    }

    fn evict_oldest(&mut self) {
        let Some(slot) = self.order.pop_front() else { return };
        let Some(exec) = self.slab.get_mut(slot) else { return };
        exec.listed = false;
        if matches!(exec.state, State::Done | State::Aborted) {
            self.by_id.remove(&exec.id);
            self.slab.remove(slot);
        }
    }

    fn get_mut(&mut self, key: &ExecutionKey) -> Option<&mut ExecutionRow> {
        self.slab.get_mut(key.slot).filter(|e| e.id == key.id)
    }

    /// Marks the execution running. Returns what stops it, or `None` if it was aborted before
    /// it started.
    pub fn start(&mut self, key: &ExecutionKey) -> Option<Arc<Abort>> {
        let exec = self.get_mut(key)?;
        if exec.abort.requested() || exec.reply.is_some() {
            return None;
        }
        exec.state = State::Running;
        Some(exec.abort.clone())
    }

    /// Ends the execution (done, or aborted if it never ran) and returns the clients waiting on it.
    pub fn finish(&mut self, key: &ExecutionKey, reply: Arc<Reply>, report: Arc<Report>) -> Vec<Waiter> {
        let Some(exec) = self.get_mut(key) else { return Vec::new() };
        if exec.reply.is_some() {
            return Vec::new(); // already ended (abandoned while its worker was stuck)
        }
        exec.state = if exec.state == State::Created || exec.stopped_waiting { State::Aborted } else { State::Done };
        exec.reply = Some(reply);
        exec.report = Some(report);
        let waiters = std::mem::take(&mut exec.waiters);
        if !exec.keep || !exec.listed {
            self.remove(key.slot);
        }
        waiters
    }

    fn remove(&mut self, slot: usize) {
        if let Some(exec) = self.slab.try_remove(slot) {
            self.by_id.remove(&exec.id);
            if exec.listed {
                self.order.retain(|s| *s != slot);
            }
        }
    }

    fn find(&mut self, id: &str) -> Option<(usize, &mut ExecutionRow)> {
        let slot = *self.by_id.get(id)?;
        self.slab.get_mut(slot).map(|e| (slot, e))
    }

    pub fn lookup(&mut self, id: &str) -> Lookup {
        match self.find(id) {
            None => Lookup::Missing,
            Some((_, exec)) => match &exec.reply {
                Some(reply) => Lookup::Done(reply.clone()),
                None => Lookup::Pending,
            },
        }
    }

    pub fn add_waiter(&mut self, id: &str, client: BlockedClient, wants: Wants) {
        match self.find(id) {
            Some((_, exec)) => exec.waiters.push(Waiter { client, wants }),
            None => drop(client), // unblocks it with an error; callers check first
        }
    }

    /// RG.ABORTEXECUTION: consumes an execution id (RedisGears does), then asks the execution
    /// to stop.
    pub fn abort(&mut self, id: &str) -> Result<AbortOutcome, GearsError> {
        self.counter += 1;
        let (slot, exec) = self.find(id).ok_or(GearsError::NoSuchAbortTarget)?;
        if exec.reply.is_some() {
            return Ok(AbortOutcome::Ended);
        }
        exec.abort.request(Reason::Aborted);
        Ok(match exec.state {
            State::Created => AbortOutcome::NotStarted(ExecutionKey { slot, id: exec.id.clone() }),
            _ => AbortOutcome::Stopping,
        })
    }

    /// Executions of `worker` that have not ended: waiting for it, or preempted on it.
    pub fn unfinished_on(&self, worker: WorkerId) -> Vec<ExecutionKey> {
        self.slab
            .iter()
            .filter(|(_, e)| e.worker == worker && e.reply.is_none())
            .map(|(slot, e)| ExecutionKey { slot, id: e.id.clone() })
            .collect()
    }

    pub fn registration_of(&mut self, id: &str) -> Option<String> {
        self.find(id).and_then(|(_, e)| e.registration.clone())
    }

    /// Asks every unfinished execution of `registration` to stop; returns those that had not
    /// started, for the caller to end.
    pub fn abort_registration(&mut self, registration: &str) -> Vec<ExecutionKey> {
        let mut not_started = Vec::new();
        for (slot, exec) in self.slab.iter() {
            if exec.reply.is_none() && exec.registration.as_deref() == Some(registration) {
                exec.abort.request(Reason::Aborted);
                if exec.state == State::Created {
                    not_started.push(ExecutionKey { slot, id: exec.id.clone() });
                }
            }
        }
        not_started
    }

    /// The execution was stopped while its records waited: it ends `aborted`.
    pub fn stopped_waiting(&mut self, key: &ExecutionKey) {
        if let Some(exec) = self.get_mut(key) {
            exec.stopped_waiting = true;
        }
    }

    /// The execution is dropped once it has ended (its caller waits for it now).
    pub fn drop_when_done(&mut self, id: &str) {
        if let Some((_, exec)) = self.find(id) {
            exec.keep = false;
        }
    }

    pub fn drop_finished(&mut self, id: &str) -> Result<(), GearsError> {
        let (slot, exec) = self.find(id).ok_or(GearsError::NoSuchExecution)?;
        if exec.reply.is_none() {
            return Err(GearsError::DropRunning);
        }
        self.remove(slot);
        Ok(())
    }

    pub fn report(&mut self, id: &str) -> Option<(State, Option<Arc<Report>>)> {
        self.find(id).map(|(_, e)| (e.state, e.report.clone()))
    }

    pub fn dump(&self) -> Vec<Dump> {
        self.order
            .iter()
            .filter_map(|slot| self.slab.get(*slot))
            .map(|e| Dump { id: e.id.clone(), state: e.state, registered: e.registration.is_some() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(t: &mut Table, keep: bool, limit: i64) -> ExecutionKey {
        t.create(WorkerId::default(), keep, None, limit, Abort::new())
    }

    fn done(t: &mut Table, k: &ExecutionKey) {
        let waiters = t.finish(k, Arc::new(Reply::ok()), Arc::new(Report::default()));
        assert!(waiters.is_empty());
    }

    #[test]
    fn ids_count_from_zero_and_are_never_reused() {
        let mut t = Table::new();
        let a = create(&mut t, true, 0);
        let b = create(&mut t, false, 0);
        assert_eq!(a.id, format!("{}-0", shard_id()));
        assert_eq!(b.id, format!("{}-1", shard_id()));
        done(&mut t, &b); // blocking run: dropped when done
        let c = create(&mut t, true, 0);
        assert_eq!(c.id, format!("{}-2", shard_id()));
        assert!(matches!(t.lookup(&b.id), Lookup::Missing));
    }

    #[test]
    fn eviction_drops_oldest_finished_and_unlists_running() {
        let mut t = Table::new();
        let keys: Vec<_> = (0..3).map(|_| create(&mut t, true, 3)).collect();
        done(&mut t, &keys[1]);
        t.start(&keys[0]); // oldest is still running
        let d = create(&mut t, true, 3);
        let listed: Vec<_> = t.dump().into_iter().map(|d| d.id).collect();
        assert_eq!(listed, vec![keys[1].id.clone(), keys[2].id.clone(), d.id.clone()]);
        // the running one is still reachable and goes away when it ends
        assert!(matches!(t.lookup(&keys[0].id), Lookup::Pending));
        done(&mut t, &keys[0]);
        assert!(matches!(t.lookup(&keys[0].id), Lookup::Missing));
        create(&mut t, true, 3);
        assert!(matches!(t.lookup(&keys[1].id), Lookup::Missing));
    }

    #[test]
    fn drop_refuses_unfinished() {
        let mut t = Table::new();
        let k = create(&mut t, true, 0);
        assert_eq!(t.drop_finished(&k.id), Err(GearsError::DropRunning));
        done(&mut t, &k);
        assert_eq!(t.drop_finished(&k.id), Ok(()));
        assert_eq!(t.drop_finished(&k.id), Err(GearsError::NoSuchExecution));
    }

    #[test]
    fn abort_before_start_ends_aborted_and_counts_an_id() {
        let mut t = Table::new();
        let k = create(&mut t, true, 0);
        assert_eq!(t.abort(&k.id), Ok(AbortOutcome::NotStarted(k.clone())));
        done(&mut t, &k);
        assert!(t.start(&k).is_none(), "a worker that gets to it later does not run it");
        assert_eq!(t.dump()[0].state, State::Aborted);
        assert_eq!(t.abort(&k.id), Ok(AbortOutcome::Ended));
        assert_eq!(t.abort("nope"), Err(GearsError::NoSuchAbortTarget));
        assert_eq!(create(&mut t, true, 0).id, format!("{}-4", shard_id()));
    }
}
