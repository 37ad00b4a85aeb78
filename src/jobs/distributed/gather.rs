//! RG.GETEXECUTION ... CLUSTER: this shard's entry and every master's, asked over the bus. A
//! master that does not answer within `PATIENCE` (its link is down, it is loading) is left out
//! rather than keep the client waiting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::message::{Event, Message};
use crate::cluster::{self, bus};
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;
use crate::unpoisoned::Unpoisoned;

const PATIENCE: Duration = Duration::from_secs(1);

struct Gather {
    client: BlockedClient,
    entries: Vec<Reply>,
    waiting: usize,
    since: Instant,
}

static NEXT_ASK: AtomicU64 = AtomicU64::new(1);
static GATHERS: Mutex<BTreeMap<u64, Gather>> = Mutex::new(BTreeMap::new());

/// Answers `client` with `entry` and the entries of execution `id` every other master has.
pub fn gather_plans(client: BlockedClient, id: &str, entry: Reply) {
    let peers: Vec<String> = cluster::topology()
        .map(|t| t.nodes.iter().filter(|n| n.id != t.my_id).map(|n| n.id.clone()).collect())
        .unwrap_or_default();
    let ask = NEXT_ASK.fetch_add(1, Ordering::AcqRel);
    let message = Message::Execution { id: id.to_owned(), event: Event::AskPlan { ask } };
    let waiting = peers.iter().filter(|peer| bus::send_to_node(peer, &message)).count();
    let gather = Gather { client, entries: vec![entry], waiting, since: Instant::now() };
    if waiting == 0 {
        return answer_client(gather);
    }
    GATHERS.locked().insert(ask, gather);
}

/// A peer asks for this shard's entry of execution `id`.
pub(super) fn tell_plan(from: &str, id: &str, ask: u64) {
    let entry = crate::executions::plan_entry(id).ok();
    bus::send_to_node(from, &Message::Execution { id: id.to_owned(), event: Event::Plan { ask, entry } });
}

/// A peer's entry (or that it has none) arrived.
pub(super) fn plan_told(ask: u64, entry: Option<Reply>) {
    let mut gathers = GATHERS.locked();
    let Some(gather) = gathers.get_mut(&ask) else { return };
    gather.entries.extend(entry);
    gather.waiting = gather.waiting.saturating_sub(1);
    if gather.waiting == 0
        && let Some(gather) = gathers.remove(&ask)
    {
        drop(gathers);
        answer_client(gather);
    }
}

/// Answers the clients whose masters did not all answer in time with what arrived.
pub(super) fn expire() {
    let late: Vec<Gather> = {
        let mut gathers = GATHERS.locked();
        let asks: Vec<u64> = gathers.iter().filter(|(_, g)| g.since.elapsed() > PATIENCE).map(|(a, _)| *a).collect();
        asks.into_iter().filter_map(|ask| gathers.remove(&ask)).collect()
    };
    late.into_iter().for_each(answer_client);
}

fn answer_client(gather: Gather) {
    gather.client.reply(Arc::new(Reply::Array(gather.entries)));
}
