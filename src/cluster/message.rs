//! The messages shards send each other over the cluster bus. Every module named `rg` (RedisGears
//! itself included) shares the bus's module id, so each message starts with a magic and a
//! version; anything else is not ours and is dropped.
//!
//! Registrations (upgrades included), unregistrations, pauses and stats clearing made on one
//! master reach the others this way; each applies them as its replicas do, and passes
//! registrations and unregistrations on to its own replicas. Masters also tell each other their
//! run ids (`Hello`), and carry distributed executions (`Execution`, see `exchange`).

use super::wire::{Reader, Writer};
use crate::reply::Reply;

/// `RGRS` and the format version.
const MAGIC: &[u8; 4] = b"RGRS";
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A session's registrations, as RG.INNERREGISTER carries them (JSON).
    Register(Vec<u8>),
    /// A registration was unregistered.
    Unregister(String),
    /// RG.PAUSEREGISTRATIONS (`pause`) or RG.UNPAUSEREGISTRATIONS of these registrations.
    Pause { pause: bool, ids: Vec<String> },
    /// RG.CLEARREGISTRATIONSSTATS.
    ClearStats,
    /// The sender's run id: a peer that restarted has a new one (RG.INFOCLUSTER shows them).
    /// `answer` is false in a greeting, which the receiver answers with its own.
    Hello { run_id: String, answer: bool },
    /// Something about distributed execution `id`.
    Execution { id: String, event: Event },
}

/// What shards of a distributed execution tell each other (`exchange` says when).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// From the initiator: run the plan of `source` over your data.
    Start(Start),
    /// Records of phase `phase` for the receiver, the `seq`th frame the sender sent it there.
    Frame { phase: u32, seq: u32, records: Vec<u8> },
    /// The receiver acknowledges a frame: the sender may send one more (the credit window).
    Ack { phase: u32, seq: u32 },
    /// The sender has sent all of phase `phase` to the receiver: `frames` frames.
    PhaseDone { phase: u32, frames: u32 },
    /// To the initiator: the sender ran its last phase; its errors.
    Finished { errors: Vec<String> },
    /// The execution ends everywhere, with this error.
    Abort { error: String },
    /// The sender is still running its part (so that peers waiting for it do not give up).
    Alive,
    /// RG.DROPEXECUTION: drop your copy.
    Drop,
    /// RG.GETEXECUTION ... CLUSTER: send your plan of it, answering `ask`.
    AskPlan { ask: u64 },
    /// The answer to `AskPlan`: the receiver's entry of RG.GETEXECUTION, `None` if it has none.
    Plan { ask: u64, entry: Option<Reply> },
}

/// How a distributed execution is started on a remote shard: what to rebuild its plan from, and
/// whom it runs as.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The participants' node ids, the initiator first: every shard routes by the same list.
    pub participants: Vec<String>,
    /// The slot ranges of each participant (by index), as the initiator saw them: every shard
    /// routes records by the same map.
    pub ranges: Vec<(u16, u16, u32)>,
    pub db: u32,
    /// The ACL user the execution runs as; `None` for the module itself.
    pub user: Option<String>,
    /// Copies stay listed after they end (the initiator's does: an UNBLOCKING run's); else each
    /// is dropped as it ends, as a blocking run's or a registration's copies are.
    pub keep: bool,
    pub work: Work,
}

/// What a distributed execution runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A script's `run()`: its source is run again to rebuild the plan.
    Script { session: String, source: String },
    /// An execution of registration `id` (every master has it): `args`, a trigger's arguments,
    /// are re-emitted on every shard; a keyspace event's key is the initiator's alone.
    Registration { id: String, args: Option<Vec<Vec<u8>>> },
}

/// Between the ids of a `Pause` (registration ids never hold one).
const SEPARATOR: u8 = b'\n';

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let joined;
        let joined_bytes;
        let (kind, body): (u8, &[u8]) = match self {
            Message::Register(blob) => (1, blob),
            Message::Unregister(id) => (2, id.as_bytes()),
            Message::Pause { pause, ids } => {
                joined = ids.join(&char::from(SEPARATOR).to_string());
                (if *pause { 3 } else { 4 }, joined.as_bytes())
            }
            Message::ClearStats => (5, &[]),
            Message::Hello { run_id, answer } => (if *answer { 7 } else { 6 }, run_id.as_bytes()),
            Message::Execution { id, event } => {
                joined_bytes = encode_event(id, event);
                (8, &joined_bytes)
            }
        };
        let mut bytes = Vec::with_capacity(MAGIC.len() + 2 + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.push(kind);
        bytes.extend_from_slice(body);
        bytes
    }

    /// The message in `bytes`, or why it is not one of ours.
    pub fn decode(bytes: &[u8]) -> Result<Message, String> {
        let rest = bytes.strip_prefix(&MAGIC[..]).ok_or("not a rustgears message")?;
        let (&version, rest) = rest.split_first().ok_or("a truncated message")?;
        if version != VERSION {
            return Err(format!("a message of format {version} (this module reads {VERSION})"));
        }
        let (&kind, body) = rest.split_first().ok_or("a truncated message")?;
        match kind {
            1 => Ok(Message::Register(body.to_vec())),
            2 => text(body).map(Message::Unregister),
            3 | 4 => Ok(Message::Pause {
                pause: kind == 3,
                ids: body.split(|&b| b == SEPARATOR).map(text).collect::<Result<_, _>>()?,
            }),
            5 => Ok(Message::ClearStats),
            6 | 7 => text(body).map(|run_id| Message::Hello { run_id, answer: kind == 7 }),
            8 => decode_event(body),
            other => Err(format!("a message of unknown kind {other}")),
        }
    }
}

fn encode_event(id: &str, event: &Event) -> Vec<u8> {
    let mut w = Writer::default();
    w.text(id);
    match event {
        Event::Start(start) => encode_start(&mut w, start),
        Event::Frame { phase, seq, records } => {
            w.u8(2).u32(*phase).u32(*seq).blob(records);
        }
        Event::Ack { phase, seq } => {
            w.u8(3).u32(*phase).u32(*seq);
        }
        Event::PhaseDone { phase, frames } => {
            w.u8(4).u32(*phase).u32(*frames);
        }
        Event::Finished { errors } => {
            w.u8(5).texts(errors);
        }
        Event::Abort { error } => {
            w.u8(6).text(error);
        }
        Event::Alive => {
            w.u8(7);
        }
        Event::Drop => {
            w.u8(8);
        }
        Event::AskPlan { ask } => {
            w.u8(9).u64(*ask);
        }
        Event::Plan { ask, entry } => {
            w.u8(10).u64(*ask);
            match entry {
                Some(entry) => w.u8(1).reply(entry),
                None => w.u8(0),
            };
        }
    }
    w.bytes
}

fn encode_start(w: &mut Writer, start: &Start) {
    w.u8(1).texts(&start.participants).len(start.ranges.len());
    for &(first, last, owner) in &start.ranges {
        w.u32(u32::from(first)).u32(u32::from(last)).u32(owner);
    }
    w.u32(start.db);
    match &start.user {
        Some(user) => w.u8(1).text(user),
        None => w.u8(0),
    };
    w.u8(u8::from(start.keep));
    match &start.work {
        Work::Script { session, source } => w.u8(1).text(session).text(source),
        Work::Registration { id, args: None } => w.u8(2).text(id),
        Work::Registration { id, args: Some(args) } => {
            w.u8(3).text(id).len(args.len());
            for arg in args {
                w.blob(arg);
            }
            w
        }
    };
}

/// A `Start`'s fields, after its kind.
fn decode_start(r: &mut Reader) -> Result<Start, String> {
    let participants = r.texts()?;
    let n = r.count(12)?;
    let slot = |r: &mut Reader| u16::try_from(r.u32()?).map_err(|_| "a slot out of range".to_owned());
    let ranges = (0..n).map(|_| Ok((slot(r)?, slot(r)?, r.u32()?))).collect::<Result<_, String>>()?;
    let db = r.u32()?;
    let user = match r.u8()? {
        0 => None,
        _ => Some(r.text()?),
    };
    let keep = r.u8()? != 0;
    let work = match r.u8()? {
        1 => Work::Script { session: r.text()?, source: r.text()? },
        2 => Work::Registration { id: r.text()?, args: None },
        3 => {
            let id = r.text()?;
            let n = r.count(4)?;
            let args = (0..n).map(|_| r.blob().map(<[u8]>::to_vec)).collect::<Result<_, _>>()?;
            Work::Registration { id, args: Some(args) }
        }
        other => return Err(format!("an execution of unknown work {other}")),
    };
    Ok(Start { participants, ranges, db, user, keep, work })
}

fn decode_event(body: &[u8]) -> Result<Message, String> {
    let mut r = Reader::new(body);
    let id = r.text()?;
    let event = match r.u8()? {
        1 => Event::Start(decode_start(&mut r)?),
        2 => Event::Frame { phase: r.u32()?, seq: r.u32()?, records: r.blob()?.to_vec() },
        3 => Event::Ack { phase: r.u32()?, seq: r.u32()? },
        4 => Event::PhaseDone { phase: r.u32()?, frames: r.u32()? },
        5 => Event::Finished { errors: r.texts()? },
        6 => Event::Abort { error: r.text()? },
        7 => Event::Alive,
        8 => Event::Drop,
        9 => Event::AskPlan { ask: r.u64()? },
        10 => {
            let ask = r.u64()?;
            let entry = match r.u8()? {
                0 => None,
                _ => Some(r.reply()?),
            };
            Event::Plan { ask, entry }
        }
        other => return Err(format!("an execution message of unknown kind {other}")),
    };
    if !r.is_empty() {
        return Err("an execution message with trailing bytes".to_owned());
    }
    Ok(Message::Execution { id, event })
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a bad registration id".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_trip() {
        let ids = vec!["0-1".to_owned(), "0-2".to_owned()];
        for message in [
            Message::Register(b"{\"id\":\"s\"}".to_vec()),
            Message::Unregister("0-1".to_owned()),
            Message::Pause { pause: true, ids: ids.clone() },
            Message::Pause { pause: false, ids },
            Message::ClearStats,
            Message::Hello { run_id: "a1b2".to_owned(), answer: false },
            Message::Hello { run_id: "a1b2".to_owned(), answer: true },
        ]
        .into_iter()
        .chain(events().into_iter().map(|event| Message::Execution { id: "n-1".to_owned(), event }))
        {
            assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    fn events() -> Vec<Event> {
        let start = |user: Option<&str>, work: Work| {
            Event::Start(Start {
                participants: vec!["a".to_owned(), "b".to_owned()],
                ranges: vec![(0, 8000, 0), (8001, 16383, 1)],
                db: 3,
                user: user.map(str::to_owned),
                keep: user.is_some(),
                work,
            })
        };
        let script = Work::Script { session: "s".to_owned(), source: "GB().run()".to_owned() };
        let trigger = Work::Registration { id: "a-1".to_owned(), args: Some(vec![b"t".to_vec(), vec![0, 255]]) };
        vec![
            start(Some("alice"), script.clone()),
            start(None, script),
            start(None, trigger),
            start(None, Work::Registration { id: "a-1".to_owned(), args: None }),
            Event::Frame { phase: 1, seq: 2, records: vec![0, 1, 2] },
            Event::Ack { phase: 1, seq: 2 },
            Event::PhaseDone { phase: 1, frames: 3 },
            Event::Finished { errors: vec!["boom".to_owned()] },
            Event::Abort { error: "Execution max idle reached".to_owned() },
            Event::Alive,
            Event::Drop,
            Event::AskPlan { ask: 7 },
            Event::Plan { ask: 7, entry: Some(Reply::Array(vec![Reply::bulk("shard_id"), Reply::Int(1)])) },
            Event::Plan { ask: 8, entry: None },
        ]
    }

    #[test]
    fn truncated_execution_messages_are_refused() {
        for event in events() {
            let bytes = Message::Execution { id: "n-1".to_owned(), event }.encode();
            for cut in 6..bytes.len() {
                assert!(Message::decode(&bytes[..cut]).is_err(), "{cut} of {bytes:?}");
            }
        }
    }

    #[test]
    fn what_is_not_ours_is_refused() {
        assert!(Message::decode(b"").is_err());
        assert!(Message::decode(b"RedisGears message").is_err());
        assert!(Message::decode(b"RGRS").is_err());
        assert!(Message::decode(b"RGRS\x02\x01{}").unwrap_err().contains("format 2"));
        assert!(Message::decode(b"RGRS\x01\x09").unwrap_err().contains("kind 9"));
        assert!(Message::decode(b"RGRS\x01\x02\xff").is_err());
    }
}
