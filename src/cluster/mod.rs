//! Redis Cluster as the module sees it (docs/commands.md#cluster-mode): the masters that own
//! slots, which one this node is, and their slot ranges. Read from Redis itself (the node's
//! cluster id and `CLUSTER SLOTS`) on the main thread: at load, every second while cluster mode
//! is enabled, and on RG.REFRESHCLUSTER. A cluster of one master is stand-alone.
//!
//! Batch executions run on every master (`exchange`, over the bus: `bus`); `jobs::distributed`
//! drives them.

pub mod bus;
pub mod exchange;
pub mod message;
pub mod slots;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use redis_module::{Context, ContextFlags};

use crate::redis::{call, cluster, log};
use crate::reply::Reply;
use crate::store::RunAs;
use crate::unpoisoned::{Unpoisoned, UnpoisonedRw};

/// A master owning slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub ip: String,
    pub port: i64,
    pub min_slot: u16,
    pub max_slot: u16,
    /// Its slot ranges, first and last slot of each.
    pub ranges: Vec<(u16, u16)>,
}

/// The masters of a cluster of more than one, by their first slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub my_id: String,
    pub nodes: Vec<Node>,
}

static TOPOLOGY: RwLock<Option<Arc<Topology>>> = RwLock::new(None);

/// This process's run id (Redis's own): a node that restarted has a new one.
static RUN_ID: OnceLock<String> = OnceLock::new();

/// The run ids peers told (`Hello`), by node id. Main thread.
static PEER_RUN_IDS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// How often the topology is read again while cluster mode is enabled.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The cluster, if this node is one of its masters' peers in cluster mode; `None` stand-alone.
pub fn topology() -> Option<Arc<Topology>> {
    TOPOLOGY.read_locked().clone()
}

/// Reads the topology again (main thread).
pub fn refresh(ctx: &Context) {
    if !ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return;
    }
    RUN_ID.get_or_init(|| run_id(ctx));
    let slots = call::call(ctx, &RunAs::Module, "CLUSTER", &[b"SLOTS"]);
    let topology = cluster::my_node_id().and_then(|id| parse_slots(id, &slots)).map(Arc::new);
    if let Some(topology) = &topology {
        crate::ids::enter_cluster(&topology.my_id);
    }
    let masters = |t: &Option<Arc<Topology>>| t.as_ref().map_or(1, |t| t.nodes.len());
    let before = masters(&std::mem::replace(&mut *TOPOLOGY.write_locked(), topology.clone()));
    match &topology {
        Some(t) if t.nodes.len() != before => {
            log::notice(&format!("rustgears: cluster mode, {} masters", t.nodes.len()))
        }
        None if before != 1 => log::notice("rustgears: one master owns every slot: stand-alone"),
        _ => {}
    }
    if let Some(topology) = topology {
        greet_strangers(ctx, &topology);
    }
}

/// Greets the peers whose run id this node does not know, every refresh until they answer (a
/// greeting or its answer may be lost while a link comes up).
fn greet_strangers(ctx: &Context, topology: &Topology) {
    let known = PEER_RUN_IDS.locked();
    let strangers: Vec<&Node> =
        topology.nodes.iter().filter(|n| n.id != topology.my_id && !known.contains_key(&n.id)).collect();
    drop(known);
    for node in strangers {
        hello(ctx, &node.id, false);
    }
}

fn hello(ctx: &Context, to: &str, answer: bool) {
    let run_id = RUN_ID.get().cloned().unwrap_or_default();
    cluster::send_message(ctx, to, &message::Message::Hello { run_id, answer }.encode());
}

/// A peer told its run id: recorded, and a greeting answered. True if it restarted (a known
/// peer with a new run id).
pub fn on_hello(ctx: &Context, sender: &str, run_id: String, answer: bool) -> bool {
    let previous = PEER_RUN_IDS.locked().insert(sender.to_owned(), run_id.clone());
    let restarted = previous.is_some_and(|previous| previous != run_id);
    if restarted {
        log::notice(&format!("rustgears: cluster node {sender} restarted (run id {run_id})"));
    }
    if !answer {
        hello(ctx, sender, true);
    }
    restarted
}

/// Keeps the topology current while cluster mode is enabled (from the module's load).
pub fn watch(ctx: &Context) {
    if ctx.get_flags().contains(ContextFlags::CLUSTER) {
        refresh_and_rearm(ctx, ());
    }
}

fn refresh_and_rearm(ctx: &Context, (): ()) {
    refresh(ctx);
    ctx.create_timer(REFRESH_EVERY, refresh_and_rearm, ());
}

fn run_id(ctx: &Context) -> String {
    let Reply::Bulk(info) = call::call(ctx, &RunAs::Module, "INFO", &[b"server"]) else { return String::new() };
    let info = String::from_utf8_lossy(&info);
    info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap_or_default().trim().to_owned()
}

/// The masters in a `CLUSTER SLOTS` reply (`[[first, last, [ip, port, id, ...], replicas...],
/// ...]`), each with the span of its ranges; `None` with fewer than two.
pub fn parse_slots(my_id: String, reply: &Reply) -> Option<Topology> {
    let Reply::Array(ranges) = reply else { return None };
    let mut nodes: Vec<Node> = Vec::new();
    for range in ranges {
        let Reply::Array(parts) = range else { continue };
        let (Some(Reply::Int(first)), Some(Reply::Int(last)), Some(Reply::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let (Some(Reply::Bulk(ip)), Some(Reply::Int(port)), Some(Reply::Bulk(id))) =
            (master.first(), master.get(1), master.get(2))
        else {
            continue;
        };
        let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(*last)) else { continue };
        let id = String::from_utf8_lossy(id).into_owned();
        match nodes.iter_mut().find(|n| n.id == id) {
            Some(node) => {
                node.min_slot = node.min_slot.min(first);
                node.max_slot = node.max_slot.max(last);
                node.ranges.push((first, last));
            }
            None => nodes.push(Node {
                id,
                ip: String::from_utf8_lossy(ip).into_owned(),
                port: *port,
                min_slot: first,
                max_slot: last,
                ranges: vec![(first, last)],
            }),
        }
    }
    nodes.sort_by_key(|n| n.min_slot);
    (nodes.len() > 1 && nodes.iter().any(|n| n.id == my_id)).then_some(Topology { my_id, nodes })
}

/// RG.INFOCLUSTER (docs/commands.md#cluster-mode). A peer's run id is nil until it has said it.
pub fn info_reply() -> Reply {
    let Some(topology) = topology() else { return Reply::bulk("no cluster mode") };
    let run_id = RUN_ID.get().cloned().unwrap_or_default();
    let peers = PEER_RUN_IDS.locked().clone();
    let node = |n: &Node| {
        let runid = match (n.id == topology.my_id, peers.get(&n.id)) {
            (true, _) => Reply::bulk(run_id.as_str()),
            (false, Some(peer)) => Reply::bulk(peer.as_str()),
            (false, None) => Reply::Null,
        };
        Reply::Array(vec![
            Reply::bulk("id"),
            Reply::bulk(n.id.as_str()),
            Reply::bulk("ip"),
            Reply::bulk(n.ip.as_str()),
            Reply::bulk("port"),
            Reply::Int(n.port),
            Reply::bulk("unixSocket"),
            Reply::bulk("None"),
            Reply::bulk("runid"),
            runid,
            Reply::bulk("minHslot"),
            Reply::Int(i64::from(n.min_slot)),
            Reply::bulk("maxHslot"),
            Reply::Int(i64::from(n.max_slot)),
            Reply::bulk("pendingMessages"),
            Reply::Int(0),
        ])
    };
    Reply::Array(vec![
        Reply::bulk("MyId"),
        Reply::bulk(topology.my_id.as_str()),
        Reply::bulk("MyRunId"),
        Reply::bulk(run_id.as_str()),
        Reply::Array(topology.nodes.iter().map(node).collect()),
    ])
}

/// Sends `message` to every other master (not their replicas: each master passes what it applies
/// on to its own). Best effort: a master whose link is down misses it.
pub fn send_to_peers(ctx: &Context, message: &message::Message) {
    let Some(topology) = topology() else { return };
    let bytes = message.encode();
    for node in topology.nodes.iter().filter(|n| n.id != topology.my_id) {
        if !cluster::send_message(ctx, &node.id, &bytes) {
            log::warning(&format!("rustgears: could not send a registration change to {}:{}", node.ip, node.port));
        }
    }
}

/// `hashtag()`: a tag of this shard's first slot (`06S`, slot 0's, stand-alone).
pub fn my_hashtag() -> &'static str {
    let first = topology().and_then(|t| t.nodes.iter().find(|n| n.id == t.my_id).map(|n| n.min_slot));
    slots::hashtag_of(first.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(first: i64, last: i64, port: i64, id: &str) -> Reply {
        let node = Reply::Array(vec![Reply::bulk("127.0.0.1"), Reply::Int(port), Reply::bulk(id)]);
        let replica = Reply::Array(vec![Reply::bulk("127.0.0.1"), Reply::Int(port + 1), Reply::bulk("r")]);
        Reply::Array(vec![Reply::Int(first), Reply::Int(last), node, replica])
    }

    #[test]
    fn masters_are_read_from_cluster_slots_with_the_span_of_their_ranges() {
        let reply = Reply::Array(vec![
            master(10923, 16383, 7002, "c"),
            master(0, 5460, 7000, "a"),
            master(5461, 10922, 7001, "b"),
            master(16000, 16000, 7000, "a"),
        ]);
        let topology = parse_slots("b".to_owned(), &reply).expect("three masters");
        let ids: Vec<&str> = topology.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!((topology.nodes[0].min_slot, topology.nodes[0].max_slot), (0, 16000));
        assert_eq!(topology.nodes[1].port, 7001);
        assert_eq!(topology.nodes[0].ranges, [(0, 5460), (16000, 16000)]);
    }

    #[test]
    fn one_master_or_a_node_outside_the_slots_is_stand_alone() {
        assert_eq!(parse_slots("a".to_owned(), &Reply::Array(vec![master(0, 16383, 7000, "a")])), None);
        assert_eq!(parse_slots("a".to_owned(), &Reply::Array(vec![])), None);
        let two = Reply::Array(vec![master(0, 8000, 7000, "a"), master(8001, 16383, 7001, "b")]);
        assert!(parse_slots("a".to_owned(), &two).is_some());
        assert_eq!(parse_slots("replica".to_owned(), &two), None, "a replica is not a shard");
        assert_eq!(
            parse_slots("a".to_owned(), &Reply::Error("ERR This instance has cluster support disabled".into())),
            None
        );
    }
}
