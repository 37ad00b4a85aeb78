//! The exchange over an in-memory cluster: what each link carries is a queue the test delivers
//! from in the order it chooses (in order, reordered, duplicated, lost).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use super::*;

const ID: &str = "a-1";

/// Shards `a`, `b`, `c` and the messages in flight between them.
struct Net {
    shards: Vec<String>,
    in_flight: RefCell<VecDeque<(String, String, Message)>>,
    inboxes: RefCell<HashMap<String, Inbox>>,
    credits: HashMap<String, Credits>,
    /// The most frames one sender had unacknowledged to one peer.
    most_in_flight: Cell<u32>,
    /// Acknowledgements are not delivered (a peer that stopped answering).
    deaf: Cell<bool>,
}

impl Net {
    fn new() -> Net {
        let shards: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let inboxes = shards.iter().map(|s| (s.clone(), Inbox::new(peers_of(&shards, s)))).collect();
        let credits = shards.iter().map(|s| (s.clone(), Credits::default())).collect();
        Net {
            shards,
            in_flight: RefCell::new(VecDeque::new()),
            inboxes: RefCell::new(inboxes),
            credits,
            most_in_flight: Cell::new(0),
            deaf: Cell::new(false),
        }
    }

    /// Delivers the oldest message in flight, as the receiver's main thread handles it.
    fn deliver_one(&self) -> Option<Heard> {
        let (from, to, message) = self.in_flight.borrow_mut().pop_front()?;
        Some(self.deliver(&from, &to, message))
    }

    fn deliver(&self, from: &str, to: &str, message: Message) -> Heard {
        let Message::Execution { event, .. } = message else { return Heard::Nothing };
        if let Event::Ack { .. } = event {
            self.credits[to].acknowledged(from);
            return Heard::Nothing;
        }
        let heard = self.inboxes.borrow_mut().get_mut(to).map_or(Heard::Nothing, |i| i.receive(from, event));
        if let Heard::Frame { phase, seq } = heard
            && !self.deaf.get()
        {
            let ack = Message::Execution { id: ID.to_owned(), event: Event::Ack { phase, seq } };
            self.in_flight.borrow_mut().push_back((to.to_owned(), from.to_owned(), ack));
        }
        heard
    }

    fn deliver_all(&self) -> Vec<Heard> {
        std::iter::from_fn(|| self.deliver_one()).collect()
    }

    fn complete(&self, shard: &str, phase: u32) -> bool {
        self.inboxes.borrow()[shard].phase_complete(phase)
    }

    fn records_of(&self, shard: &str, phase: u32) -> Vec<String> {
        let frames = self.inboxes.borrow_mut().get_mut(shard).map(|i| i.take_phase(phase)).unwrap_or_default();
        let mut records: Vec<String> = frames
            .iter()
            .flat_map(|f| String::from_utf8_lossy(f).split_terminator(';').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        records.sort();
        records
    }
}

fn peers_of(shards: &[String], me: &str) -> Vec<String> {
    shards.iter().filter(|s| *s != me).cloned().collect()
}

/// One shard's end of the links.
struct Link<'a> {
    net: &'a Net,
    me: String,
}

impl Transport for Link<'_> {
    fn send(&self, to: &str, message: &Message) -> bool {
        if let Message::Execution { event: Event::Frame { .. }, .. } = message {
            let n = self.net.credits[&self.me].in_flight(to);
            self.net.most_in_flight.set(self.net.most_in_flight.get().max(n));
        }
        self.net.in_flight.borrow_mut().push_back((self.me.clone(), to.to_owned(), message.clone()));
        true
    }

    fn wait(&self) {
        self.net.deliver_one();
    }
}

/// Shard `me` sends `n` records of phase `phase` to every peer, `size` bytes each.
fn send_phase(net: &Net, me: &str, phase: u32, n: usize, size: usize) -> Result<(), String> {
    let link = Link { net, me: me.to_owned() };
    let peers = peers_of(&net.shards, me);
    let never = || None;
    let mut outbox = Outbox::new(ID, phase, peers.clone(), &link, &net.credits[me], &never);
    for i in 0..n {
        for to in 0..peers.len() {
            let record = format!("{me}{i:0>width$};", width = size.saturating_sub(2).max(1));
            outbox.push(to, record.as_bytes())?;
        }
    }
    outbox.finish()
}

#[test]
fn every_shard_gets_what_every_peer_sent_it_and_the_window_holds() {
    let net = Net::new();
    for shard in ["a", "b", "c"] {
        // 2,000 records of 100 bytes: about 7 frames per peer, more than the window.
        send_phase(&net, shard, 0, 2000 + 1000 * usize::from(shard == "b"), 100).unwrap();
    }
    net.deliver_all();
    assert!(net.most_in_flight.get() <= WINDOW, "{} in flight", net.most_in_flight.get());
    for shard in ["a", "b", "c"] {
        assert!(net.complete(shard, 0), "{shard}");
        let records = net.records_of(shard, 0);
        let expected: usize = peers_of(&net.shards, shard).iter().map(|p| if p == "b" { 3000 } else { 2000 }).sum();
        assert_eq!(records.len(), expected, "{shard}");
    }
}

#[test]
fn a_big_exchange_waits_for_acknowledgements_instead_of_piling_up() {
    let net = Net::new();
    // 40 frames to each peer: the sender must have waited for acknowledgements (its `wait`
    // delivered them), never holding more than the window.
    send_phase(&net, "a", 0, 40 * FRAME_BYTES / 1000, 1000).unwrap();
    assert_eq!(net.most_in_flight.get(), WINDOW);
    net.deliver_all();
    assert!(!net.complete("b", 0) && !net.complete("c", 0), "b and c still wait for each other");
}

#[test]
fn a_phase_is_complete_only_once_every_peer_said_done() {
    let net = Net::new();
    send_phase(&net, "a", 0, 10, 10).unwrap();
    net.deliver_all();
    assert!(!net.complete("c", 0), "b has not spoken");
    send_phase(&net, "b", 0, 0, 10).unwrap();
    net.deliver_all();
    assert!(net.complete("c", 0));
    assert_eq!(net.records_of("c", 0).len(), 10);
}

#[test]
fn a_frame_delivered_twice_counts_once() {
    let net = Net::new();
    send_phase(&net, "a", 0, 500, 100).unwrap();
    send_phase(&net, "b", 0, 0, 100).unwrap();
    let copies: Vec<_> = net.in_flight.borrow().iter().filter(|(_, to, _)| to == "c").cloned().collect();
    net.deliver_all();
    for (from, to, message) in copies {
        let heard = net.deliver(&from, &to, message);
        assert!(!matches!(heard, Heard::Failed(_) | Heard::Frame { .. }), "a duplicate is dropped: {heard:?}");
    }
    assert!(net.complete("c", 0));
    assert_eq!(net.records_of("c", 0).len(), 500);
}

#[test]
fn a_frame_lost_or_overtaken_on_its_link_fails_the_execution() {
    // Lost: a frame to c never arrives; its PhaseDone counts it.
    let net = Net::new();
    send_phase(&net, "a", 0, 500, 100).unwrap();
    let position = net.in_flight.borrow().iter().position(|(_, to, _)| to == "c").unwrap();
    net.in_flight.borrow_mut().remove(position);
    let failed: Vec<Heard> = net.deliver_all().into_iter().filter(|h| matches!(h, Heard::Failed(_))).collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|h| *h == Heard::Failed("a message from shard a was lost".to_owned())), "{failed:?}");

    // Overtaken: the second frame to c arrives before the first.
    let net = Net::new();
    send_phase(&net, "a", 0, 500, 100).unwrap();
    let mut queue = net.in_flight.borrow_mut();
    let to_c: Vec<usize> = queue.iter().enumerate().filter(|(_, (_, to, _))| to == "c").map(|(i, _)| i).collect();
    queue.swap(to_c[0], to_c[1]);
    drop(queue);
    assert!(net.deliver_all().iter().any(|h| matches!(h, Heard::Failed(_))));
}

#[test]
fn peers_may_interleave_in_any_order() {
    let net = Net::new();
    send_phase(&net, "a", 3, 300, 100).unwrap();
    send_phase(&net, "b", 3, 200, 100).unwrap();
    // Deliver b's messages before a's, each link still in order.
    let mut queue: Vec<_> = net.in_flight.borrow_mut().drain(..).collect();
    queue.sort_by_key(|(from, _, _)| from != "b");
    for (from, to, message) in queue {
        net.deliver(&from, &to, message);
    }
    net.deliver_all();
    assert!(net.complete("c", 3));
    assert_eq!(net.records_of("c", 3).len(), 500);
    assert!(!net.complete("c", 2) && !net.complete("c", 4));
}

#[test]
fn the_initiator_has_every_peers_errors_in_order_once_all_finished() {
    let mut inbox = Inbox::new(vec!["b".to_owned(), "c".to_owned()]);
    assert_eq!(inbox.receive("c", Event::Finished { errors: vec!["c1".to_owned()] }), Heard::Progress);
    assert!(!inbox.all_finished());
    assert_eq!(inbox.receive("x", Event::Finished { errors: vec!["x".to_owned()] }), Heard::Nothing, "not a peer");
    inbox.receive("b", Event::Finished { errors: vec!["b1".to_owned(), "b2".to_owned()] });
    assert!(inbox.all_finished());
    assert_eq!(inbox.take_errors(), ["b1", "b2", "c1"]);
    let abort = Event::Abort { error: "Execution max idle reached".to_owned() };
    assert_eq!(inbox.receive("b", abort), Heard::Failed("Execution max idle reached".to_owned()));
}

#[test]
fn a_sender_whose_peer_stopped_acknowledging_gives_up() {
    let net = Net::new();
    net.deaf.set(true);
    let link = Link { net: &net, me: "a".to_owned() };
    let waited = Cell::new(0);
    let give_up = || {
        waited.set(waited.get() + 1);
        (waited.get() > 5).then(|| "Execution max idle reached".to_owned())
    };
    let mut outbox = Outbox::new(ID, 0, vec!["b".to_owned()], &link, &net.credits["a"], &give_up);
    let record = vec![b'x'; FRAME_BYTES];
    let outcome = (0..100).try_for_each(|_| outbox.push(0, &record));
    assert_eq!(outcome, Err("Execution max idle reached".to_owned()));
    assert_eq!(net.credits["a"].in_flight("b"), WINDOW);
}
