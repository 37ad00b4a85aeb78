//! How the shards of a distributed execution exchange records (docs/architecture.md#cluster-mode).
//!
//! A distributed plan runs in phases, cut where records move between shards (repartition,
//! collect, the group-by family). After its part of phase `p`, every shard sends each peer the
//! records routed to it in frames of up to `FRAME_BYTES`, then `PhaseDone` with how many frames
//! it sent; a shard starts phase `p + 1` once every peer said `PhaseDone(p)` and every frame
//! counted there arrived. The initiator ends the execution once every peer said `Finished`.
//!
//! The cluster bus delivers one link's messages in order, so a frame whose number skips one, or
//! a `PhaseDone` counting more frames than arrived, means a message was lost (a link broke and
//! came back): the execution fails rather than answer with records missing. A frame seen twice
//! is dropped. Messages of different peers may interleave in any way.
//!
//! A sender keeps at most `WINDOW` unacknowledged frames in flight to each peer (each frame is
//! acknowledged by the receiver's main thread as it copies it), so that a big repartition waits
//! on the sending worker instead of piling up in the bus's send buffers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::message::{Event, Message};
use crate::unpoisoned::Unpoisoned;

/// What a frame carries at most, in bytes of records (one record bigger than this goes alone).
pub const FRAME_BYTES: usize = 32 * 1024;

/// Frames in flight to one peer, sent and not yet acknowledged.
pub const WINDOW: u32 = 16;

/// How shards reach each other: the cluster bus, or memory in unit tests.
pub trait Transport {
    /// Hands `message` to the link to node `to`; false if there is none.
    fn send(&self, to: &str, message: &Message) -> bool;

    /// Lets time pass while the credit window to a peer is full (acknowledgements arrive).
    fn wait(&self);
}

/// Frames in flight to each peer: taken by the sending worker, given back by the main thread as
/// acknowledgements arrive.
#[derive(Default)]
pub struct Credits {
    in_flight: std::sync::Mutex<HashMap<String, u32>>,
}

impl Credits {
    fn try_take(&self, peer: &str) -> bool {
        let mut in_flight = self.in_flight.locked();
        let n = in_flight.entry(peer.to_owned()).or_default();
        if *n >= WINDOW {
            return false;
        }
        *n += 1;
        true
    }

    /// `peer` acknowledged a frame.
    pub fn acknowledged(&self, peer: &str) {
        if let Some(n) = self.in_flight.locked().get_mut(peer) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn in_flight(&self, peer: &str) -> u32 {
        self.in_flight.locked().get(peer).copied().unwrap_or(0)
    }
}

/// What decides that a sender waiting for credit gives up: an error text, or `None` to go on.
pub type GiveUp<'a> = &'a dyn Fn() -> Option<String>;

/// One phase's records leaving this shard, batched into frames per peer.
pub struct Outbox<'a> {
    id: String,
    phase: u32,
    peers: Vec<String>,
    /// The frame being filled, per peer.
    filling: Vec<Vec<u8>>,
    sent: Vec<u32>,
    transport: &'a dyn Transport,
    credits: &'a Credits,
    give_up: GiveUp<'a>,
}

impl<'a> Outbox<'a> {
    pub fn new(
        id: &str,
        phase: u32,
        peers: Vec<String>,
        transport: &'a dyn Transport,
        credits: &'a Credits,
        give_up: GiveUp<'a>,
    ) -> Outbox<'a> {
        let n = peers.len();
        Outbox {
            id: id.to_owned(),
            phase,
            peers,
            filling: vec![Vec::new(); n],
            sent: vec![0; n],
            transport,
            credits,
            give_up,
        }
    }

    /// Adds one encoded record for peer `to` (an index into the peers).
    pub fn push(&mut self, to: usize, record: &[u8]) -> Result<(), String> {
        let frame = &mut self.filling[to];
        if !frame.is_empty() && frame.len() + record.len() > FRAME_BYTES {
            self.flush(to)?;
        }
        self.filling[to].extend_from_slice(record);
        Ok(())
    }

    fn flush(&mut self, to: usize) -> Result<(), String> {
        let peer = self.peers[to].clone();
        while !self.credits.try_take(&peer) {
            if let Some(error) = (self.give_up)() {
                return Err(error);
            }
            self.transport.wait();
        }
        let records = std::mem::take(&mut self.filling[to]);
        let event = Event::Frame { phase: self.phase, seq: self.sent[to], records };
        self.sent[to] += 1;
        // A link that is down loses the frame; the peer's PhaseDone count tells it so.
        self.transport.send(&peer, &Message::Execution { id: self.id.clone(), event });
        Ok(())
    }

    /// Sends what is left and tells every peer the phase is done here.
    pub fn finish(mut self) -> Result<(), String> {
        for to in 0..self.peers.len() {
            if !self.filling[to].is_empty() {
                self.flush(to)?;
            }
            let event = Event::PhaseDone { phase: self.phase, frames: self.sent[to] };
            self.transport.send(&self.peers[to], &Message::Execution { id: self.id.clone(), event });
        }
        Ok(())
    }
}

/// What a shard heard of a phase.
#[derive(Default)]
struct PhaseIn {
    frames: Vec<Vec<u8>>,
    /// The next frame number expected from each peer.
    next: HashMap<String, u32>,
    done: HashSet<String>,
}

/// What this shard has heard from its peers about one execution.
pub struct Inbox {
    peers: Vec<String>,
    phases: BTreeMap<u32, PhaseIn>,
    finished: HashMap<String, Vec<String>>,
    last_heard: Instant,
}

/// What a message changed.
#[derive(Debug, PartialEq)]
pub enum Heard {
    Nothing,
    /// A phase may be complete, or every peer finished: the execution may go on.
    Progress,
    /// A frame was accepted: acknowledge it to its sender.
    Frame {
        phase: u32,
        seq: u32,
    },
    Failed(String),
}

impl Inbox {
    pub fn new(peers: Vec<String>) -> Inbox {
        Inbox { peers, phases: BTreeMap::new(), finished: HashMap::new(), last_heard: Instant::now() }
    }

    pub fn receive(&mut self, from: &str, event: Event) -> Heard {
        if !self.peers.iter().any(|p| p == from) {
            return Heard::Nothing;
        }
        self.last_heard = Instant::now();
        match event {
            Event::Frame { phase, seq, records } => {
                let state = self.phases.entry(phase).or_default();
                let next = state.next.entry(from.to_owned()).or_default();
                if seq < *next || state.done.contains(from) {
                    return Heard::Nothing;
                }
                if seq > *next {
                    return Heard::Failed(lost(from));
                }
                *next += 1;
                state.frames.push(records);
                Heard::Frame { phase, seq }
            }
            Event::PhaseDone { phase, frames } => {
                let state = self.phases.entry(phase).or_default();
                if state.next.get(from).copied().unwrap_or(0) != frames {
                    return Heard::Failed(lost(from));
                }
                state.done.insert(from.to_owned());
                Heard::Progress
            }
            Event::Finished { errors } => {
                self.finished.insert(from.to_owned(), errors);
                Heard::Progress
            }
            Event::Abort { error } => Heard::Failed(error),
            Event::Alive
            | Event::Start(_)
            | Event::Ack { .. }
            | Event::Drop
            | Event::AskPlan { .. }
            | Event::Plan { .. } => Heard::Nothing,
        }
    }

    /// Every peer has sent all of phase `phase`.
    pub fn phase_complete(&self, phase: u32) -> bool {
        self.phases.get(&phase).is_some_and(|p| self.peers.iter().all(|peer| p.done.contains(peer)))
    }

    /// The frames of a complete phase, taken once.
    pub fn take_phase(&mut self, phase: u32) -> Vec<Vec<u8>> {
        self.phases.remove(&phase).map(|p| p.frames).unwrap_or_default()
    }

    pub fn all_finished(&self) -> bool {
        self.peers.iter().all(|p| self.finished.contains_key(p))
    }

    /// The peers' errors, in the order of the peers.
    pub fn take_errors(&mut self) -> Vec<String> {
        let finished = &mut self.finished;
        self.peers.iter().flat_map(|p| finished.remove(p).unwrap_or_default()).collect()
    }

    /// How long since a peer last said anything.
    pub fn idle_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Counts as hearing from a peer (the execution just started waiting).
    pub fn heard_now(&mut self) {
        self.last_heard = Instant::now();
    }
}

fn lost(from: &str) -> String {
    format!("a message from shard {from} was lost")
}

#[cfg(test)]
mod tests;
