//! Distributed executions (docs/architecture.md#cluster-mode): a script's `run()` on a cluster
//! runs its plan on every master, in stages cut where records move between shards
//! (`engine::stages`), exchanging records over the cluster bus (`cluster::exchange`).
//!
//! The initiator lists the execution, sends every peer `Start` (the script's source: each peer
//! runs it to rebuild the same plan, as persistence rebuilds sessions), and runs its part; the
//! peers run theirs on a home of their own. Each part is data on its worker (`part`), driven by
//! jobs: a stage's end routes its records, a complete phase starts the next stage. The main
//! thread only copies what arrives into the execution's `Shared` inbox, acknowledges frames and
//! queues the job that goes on, never running Python.
//!
//! Failure: a shard that hears nothing about an execution for ExecutionMaxIdleTime while it waits
//! ends it with `Execution max idle reached` (a shard running its part tells its peers it is
//! alive every second); a lost message, a peer that restarted, an abort or a shard that could
//! not rebuild the plan end it everywhere (`Abort`), and nothing of it stays behind.

mod gather;
mod part;

pub use gather::gather_plans;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_module::Context;

use crate::cluster::exchange::{Credits, Heard, Inbox};
use crate::cluster::message::{Event, Message, Start, Work};
use crate::cluster::{self, bus, slots};
use crate::error::GearsError;
use crate::executions::ExecutionKey;
use crate::jobs::parked::Done;
use crate::pool;
use crate::python::session::Origin;
use crate::python::{RawPlan, Runtime};
use crate::stop::{Abort, Reason};
use crate::store::RunAs;
use crate::unpoisoned::Unpoisoned;

/// A distributed execution as the main thread and the worker running its part share it.
struct Shared {
    id: String,
    home: usize,
    /// The participants' node ids, the initiator first.
    participants: Vec<String>,
    /// The participant (index) owning each hash slot, from the initiator's map.
    owners: Vec<u32>,
    me: String,
    inbox: Mutex<Inbox>,
    credits: Credits,
    abort: Arc<Abort>,
    /// Why it fails, once something decided it does.
    failure: Mutex<Option<String>>,
    /// The local part runs a stage: it is not idle, and its peers are told so.
    busy: AtomicBool,
    last_alive: Mutex<Instant>,
}

impl Shared {
    fn new(id: &str, home: usize, start: &Start, me: &str, abort: Arc<Abort>) -> Arc<Shared> {
        let participants = start.participants.clone();
        let peers = participants.iter().filter(|p| *p != me).cloned().collect();
        let mut owners = vec![u32::MAX; usize::from(slots::SLOTS)];
        for &(first, last, owner) in &start.ranges {
            for slot in first..=last.min(slots::SLOTS - 1) {
                owners[usize::from(slot)] = owner;
            }
        }
        Arc::new(Shared {
            id: id.to_owned(),
            home,
            participants,
            owners,
            me: me.to_owned(),
            inbox: Mutex::new(Inbox::new(peers)),
            credits: Credits::default(),
            abort,
            failure: Mutex::new(None),
            busy: AtomicBool::new(false),
            last_alive: Mutex::new(Instant::now()),
        })
    }

    /// The participant a record of key `key` goes to (the initiator for none); a slot no
    /// participant owned when the execution started goes by its number.
    fn target(&self, key: Option<&[u8]>) -> &str {
        let Some(key) = key else { return &self.participants[0] };
        let slot = slots::key_slot(key);
        let owner = self.owners[usize::from(slot)] as usize;
        let owner = if owner < self.participants.len() { owner } else { usize::from(slot) % self.participants.len() };
        &self.participants[owner]
    }

    fn is_initiator(&self) -> bool {
        self.participants.first() == Some(&self.me)
    }

    fn peers(&self) -> impl Iterator<Item = &String> {
        self.participants.iter().filter(move |p| **p != self.me)
    }

    fn failure(&self) -> Option<String> {
        self.failure.locked().clone()
    }

    /// Decides that the execution fails with `error` (the first reason wins), stops its running
    /// stage and has its home end it.
    fn fail(self: &Arc<Self>, error: String) {
        {
            let mut failure = self.failure.locked();
            if failure.is_some() {
                return;
            }
            *failure = Some(error);
        }
        self.abort.request(Reason::Aborted);
        self.go_on();
    }

    /// Has the home see whether the part can go on (a phase completed, it failed, ...).
    fn go_on(self: &Arc<Self>) {
        let id = self.id.clone();
        pool::send(self.home, Box::new(move |runtime| part::go_on(runtime, &id)));
    }

    fn tell_peers(&self, event: Event) {
        let message = Message::Execution { id: self.id.clone(), event };
        for peer in self.peers() {
            bus::send_to_node(peer, &message);
        }
    }
}

/// The distributed executions this shard takes part in, by id.
static SHARED: Mutex<BTreeMap<String, Arc<Shared>>> = Mutex::new(BTreeMap::new());

/// What arrived for executions this shard was not told of yet: a peer may start and send
/// before the initiator's `Start` reached this shard. Bounded, and forgotten after
/// ExecutionMaxIdleTime.
static EARLY: Mutex<BTreeMap<String, Early>> = Mutex::new(BTreeMap::new());

/// Since when, and from whom what.
type Early = (Instant, Vec<(String, Event)>);
const EARLY_EXECUTIONS: usize = 256;
const EARLY_EVENTS: usize = 4096;

/// How often the main thread looks at the distributed executions (idle ones, live ones).
const SWEEP_EVERY: Duration = Duration::from_millis(100);
const ALIVE_EVERY: Duration = Duration::from_secs(1);

fn register_execution(shared: &Arc<Shared>) {
    SHARED.locked().insert(shared.id.clone(), shared.clone());
}

fn forget_execution(id: &str) {
    SHARED.locked().remove(id);
}

fn shared(id: &str) -> Option<Arc<Shared>> {
    SHARED.locked().get(id).cloned()
}

/// Whether `plan` runs on every master: in cluster mode, unless it runs `async_local`.
pub fn distributes(vm: &rustpython_vm::VirtualMachine, plan: &RawPlan) -> bool {
    if cluster::topology().is_none() {
        return false;
    }
    let mode = plan
        .options
        .downcast_ref::<rustpython_vm::builtins::PyDict>()
        .and_then(|d| d.get_item_opt("mode", vm).ok().flatten())
        .and_then(|m| m.downcast_ref::<rustpython_vm::builtins::PyStr>().map(|s| s.to_string_lossy().into_owned()));
    mode.as_deref() != Some("async_local")
}

/// Starts execution `key` of a script's `plan` on every master, after the visits waiting on
/// this worker (as `defer_plan` does for a local one).
pub(crate) fn defer_distributed(plan: RawPlan, db: i32, key: ExecutionKey, origin: Origin) {
    let execution = super::Running::new(key);
    pool::defer(Box::new(move |runtime| {
        let key = execution.key().clone();
        let done: Done = Box::new(move |_, ended, _| execution.finish(ended.reply, ended.report));
        let work = Work::Script {
            session: origin.session.clone().unwrap_or_default(),
            source: origin.source.as_deref().unwrap_or_default().to_owned(),
        };
        initiate(runtime, plan, db, &key, origin, work, done);
    }));
}

/// Runs execution `key` of `plan` on every master, this one initiating (on its worker): `done`
/// ends it with every shard's results and errors. Run here alone if the cluster went (one
/// master left) since the plan was made. False if it was aborted before it started (then `done`
/// is dropped).
pub(crate) fn initiate(
    runtime: &Runtime,
    plan: RawPlan,
    db: i32,
    key: &ExecutionKey,
    origin: Origin,
    work: Work,
    done: Done,
) -> bool {
    let Some(topology) = cluster::topology() else {
        return super::run_now(runtime, plan, db, key, origin, true, done);
    };
    let Some(abort) = crate::executions::start(key) else { return false };
    let me = topology.my_id.clone();
    let mut nodes: Vec<&cluster::Node> = topology.nodes.iter().collect();
    // The initiator first.
    nodes.sort_by_key(|n| n.id != me);
    let participants = nodes.iter().map(|n| n.id.clone()).collect();
    let ranges = (0..).zip(&nodes).flat_map(|(i, n)| n.ranges.iter().map(move |&(a, b)| (a, b, i))).collect();
    let user = match &origin.run_as {
        RunAs::Module => None,
        RunAs::User(name) => Some(name.to_string()),
        RunAs::Nobody => Some(String::new()),
    };
    // A registration's execution is listed by its registration, here only.
    let keep = crate::executions::kept(&key.id) && matches!(work, Work::Script { .. });
    let start = Start { participants, ranges, db: u32::try_from(db).unwrap_or(0), user, keep, work };
    let home = runtime.worker().home;
    let shared = Shared::new(&key.id, home, &start, &me, abort);
    register_execution(&shared);
    shared.tell_peers(Event::Start(start));
    part::begin(runtime, shared, plan, db, origin, Some((key.clone(), done)));
    true
}

/// A message about distributed execution `id` from peer `sender` (main thread); `Start` is
/// `accept`ed by whoever rebuilds plans.
pub fn on_execution_message(ctx: &Context, sender: &str, id: String, event: Event) {
    match event {
        Event::Start(_) => return,
        Event::Drop => {
            let _ = crate::executions::drop_execution(&id);
            return;
        }
        Event::AskPlan { ask } => return gather::tell_plan(sender, &id, ask),
        Event::Plan { ask, entry } => return gather::plan_told(ask, entry),
        _ => {}
    }
    let Some(shared) = shared(&id) else {
        return keep_early(sender, id, event);
    };
    receive(ctx, &shared, sender, event);
}

fn receive(ctx: &Context, shared: &Arc<Shared>, sender: &str, event: Event) {
    if let Event::Ack { .. } = event {
        return shared.credits.acknowledged(sender);
    }
    let heard = shared.inbox.locked().receive(sender, event);
    match heard {
        Heard::Nothing => {}
        Heard::Frame { phase, seq } => {
            let ack = Message::Execution { id: shared.id.clone(), event: Event::Ack { phase, seq } };
            crate::redis::cluster::send_message(ctx, sender, &ack.encode());
        }
        Heard::Progress => shared.go_on(),
        Heard::Failed(error) => shared.fail(error),
    }
}

fn keep_early(sender: &str, id: String, event: Event) {
    if matches!(event, Event::Ack { .. } | Event::Alive) {
        return;
    }
    let mut early = EARLY.locked();
    if !early.contains_key(&id) && early.len() >= EARLY_EXECUTIONS {
        return;
    }
    let (_, events) = early.entry(id).or_insert_with(|| (Instant::now(), Vec::new()));
    if events.len() < EARLY_EVENTS {
        events.push((sender.to_owned(), event));
    }
}

/// This shard's part of a distributed execution it was asked to join, until its plan is
/// rebuilt (on `home()`).
pub struct Joining(Arc<Shared>);

impl Joining {
    pub fn home(&self) -> usize {
        self.0.home
    }

    pub fn abort(&self) -> Arc<Abort> {
        self.0.abort.clone()
    }

    /// Runs this shard's part of `plan`, listed as a copy of the execution (kept after it ends
    /// if `keep`).
    pub fn join(self, runtime: &Runtime, plan: RawPlan, db: i32, origin: Origin, keep: bool) {
        let shared = self.0;
        let copy = crate::executions::create_copy(runtime.worker(), &shared.id, keep, shared.abort.clone())
            .filter(|key| crate::executions::start(key).is_some())
            .map(|key| {
                let execution = super::Running::new(key.clone());
                let done: Done = Box::new(move |_, ended, _| execution.finish(ended.reply, ended.report));
                (key, done)
            });
        part::begin(runtime, shared, plan, db, origin, copy);
    }

    /// The plan could not be rebuilt here: the execution ends everywhere.
    pub fn refuse(self, why: String) {
        let error = GearsError::ShardFailed(self.0.me.clone(), why).to_string();
        self.0.tell_peers(Event::Abort { error });
        forget_execution(&self.0.id);
    }
}

/// The initiator (`sender`) asks this shard to run its part of execution `id`: `None` if this
/// master takes no part, or does already.
pub fn accept(sender: &str, id: &str, start: &Start) -> Option<Joining> {
    // This node's own id, not the topology's: that may not have caught up with the cluster yet.
    let me = crate::redis::cluster::my_node_id()?;
    if start.participants.first().map(String::as_str) != Some(sender) || !start.participants.contains(&me) {
        return None;
    }
    if shared(id).is_some() {
        return None;
    }
    let home = pool::choose_home().ok()?;
    let shared = Shared::new(id, home, start, &me, Abort::new());
    register_execution(&shared);
    if let Some((_, events)) = EARLY.locked().remove(id) {
        let ctx = Context::new(crate::redis::gil::detached());
        for (from, event) in events {
            receive(&ctx, &shared, &from, event);
        }
    }
    Some(Joining(shared))
}

/// Peer `node` restarted: the executions it took part in cannot end well.
pub fn peer_restarted(node: &str) {
    let involved: Vec<Arc<Shared>> =
        SHARED.locked().values().filter(|s| s.participants.iter().any(|p| p == node)).cloned().collect();
    for shared in involved {
        shared.fail(GearsError::ShardRestarted(node.to_owned()).to_string());
    }
}

/// Starts the main thread's look at the distributed executions, every `SWEEP_EVERY` (from the
/// module's load, in cluster mode).
pub fn watch_executions(ctx: &Context) {
    if ctx.get_flags().contains(redis_module::ContextFlags::CLUSTER) {
        ctx.create_timer(SWEEP_EVERY, sweep_and_rearm, ());
    }
}

fn sweep_and_rearm(ctx: &Context, (): ()) {
    sweep_executions();
    ctx.create_timer(SWEEP_EVERY, sweep_and_rearm, ());
}

/// Tells the peers of parts running a stage that they are alive; ends the executions that
/// waited for their peers longer than ExecutionMaxIdleTime, or were aborted while waiting.
fn sweep_executions() {
    let max_idle = Duration::from_millis(crate::config::with(|c| c.execution_max_idle_time).max(1) as u64);
    let all: Vec<Arc<Shared>> = SHARED.locked().values().cloned().collect();
    for shared in all {
        if shared.busy.load(Ordering::Acquire) {
            let mut last = shared.last_alive.locked();
            if last.elapsed() >= ALIVE_EVERY {
                *last = Instant::now();
                drop(last);
                shared.tell_peers(Event::Alive);
            }
        } else if shared.abort.requested() && shared.failure().is_none() {
            shared.fail(Reason::Aborted.message().to_owned());
        } else if shared.inbox.locked().idle_for() > max_idle {
            shared.fail(GearsError::ExecutionMaxIdle.to_string());
        }
    }
    EARLY.locked().retain(|_, (since, _)| since.elapsed() <= max_idle);
    gather::expire();
}

/// RG.DROPEXECUTION of execution `id`, dropped here: every other master drops its copy.
pub fn drop_everywhere(id: &str) {
    let Some(topology) = cluster::topology() else { return };
    let message = Message::Execution { id: id.to_owned(), event: Event::Drop };
    for node in topology.nodes.iter().filter(|n| n.id != topology.my_id) {
        bus::send_to_node(&node.id, &message);
    }
}
