//! The messages shards send each other over the cluster bus. Every module named `rg` (RedisGears
//! itself included) shares the bus's module id, so each message starts with a magic and a
//! version; anything else is not ours and is dropped.
//!
//! Registrations (upgrades included), unregistrations, pauses and stats clearing made on one
//! master reach the others this way; each applies them as its replicas do, and passes
//! registrations and unregistrations on to its own replicas. Masters also tell each other their
//! run ids (`Hello`).

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
}

/// Between the ids of a `Pause` (registration ids never hold one).
const SEPARATOR: u8 = b'\n';

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let joined;
        let (kind, body): (u8, &[u8]) = match self {
            Message::Register(blob) => (1, blob),
            Message::Unregister(id) => (2, id.as_bytes()),
            Message::Pause { pause, ids } => {
                joined = ids.join(&char::from(SEPARATOR).to_string());
                (if *pause { 3 } else { 4 }, joined.as_bytes())
            }
            Message::ClearStats => (5, &[]),
            Message::Hello { run_id, answer } => (if *answer { 7 } else { 6 }, run_id.as_bytes()),
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
            other => Err(format!("a message of unknown kind {other}")),
        }
    }
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
        ] {
            assert_eq!(Message::decode(&message.encode()), Ok(message));
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
