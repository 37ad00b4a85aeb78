//! How registrations outlive the process and reach replicas (docs/python-api.md#persistence):
//! each session is stored as its script source with the specs of its registrations, never as
//! Python objects. A primary sends every applied batch and unregistration to its replicas and
//! AOF as internal commands, in the same locked section that changed the registry; RDB files
//! (and AOF rewrites) carry every session as module aux data.
//!
//! The format is JSON with a version number; data that is not ours (another version, a
//! RedisGears RDB) fails to parse and is refused with a log line.

use redis_module::Context;

use crate::cluster::{self, message::Message};
use serde::{Deserialize, Serialize};

use super::queue::{self, QueuedEvent};
use super::{ApplyBatch, Spec, registry};

/// The version of what is written; anything else is refused on load.
pub const FORMAT: u32 = 1;

/// Internal commands: accepted only from the replication link and AOF loading.
pub const REGISTER_COMMAND: &str = "rg.innerregister";
pub const UNREGISTER_COMMAND: &str = "rg.innerunregister";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSession {
    pub id: String,
    pub desc: Option<String>,
    pub source: String,
    /// The ACL user that registered it; data written before owners were recorded belongs to
    /// `default`.
    #[serde(default = "default_owner")]
    pub owner: String,
    pub specs: Vec<Spec>,
    /// The session an upgrade replaced (replication only).
    #[serde(default)]
    pub replaces: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    format: u32,
    sessions: Vec<SavedSession>,
    /// Events of asynchronous registrations no execution has finished (`queue`); older data
    /// has none.
    #[serde(default)]
    queued: Vec<QueuedEvent>,
}

impl SavedSession {
    fn of(batch: &ApplyBatch) -> SavedSession {
        SavedSession {
            id: batch.session.clone(),
            desc: batch.desc.clone(),
            source: batch.source.clone(),
            owner: batch.owner.clone(),
            specs: batch.specs.clone(),
            replaces: batch.replaces.clone(),
        }
    }

    /// The batch that applies it on `home`.
    pub fn into_batch(self, home: usize) -> ApplyBatch {
        ApplyBatch {
            session: self.id,
            desc: self.desc,
            source: self.source,
            home,
            owner: self.owner,
            specs: self.specs,
            replaces: self.replaces,
        }
    }
}

/// Whom data written before owners were recorded belongs to.
pub(super) fn default_owner() -> String {
    "default".to_owned()
}

/// Every live session, for the RDB, in the order of their first registrations (so a load lists
/// them in creation order again). Runs in the forked child too: the registry's mutex is free
/// there, as only threads holding the Redis lock take it (see `registrations`).
pub fn snapshot() -> Vec<u8> {
    let registry = registry();
    // Linear in the registrations: a BGSAVE of many sessions must not hold Redis.
    let mut seen = std::collections::HashSet::new();
    let order: Vec<&str> =
        registry.registrations.iter().map(|r| r.session.as_str()).filter(|id| seen.insert(*id)).collect();
    let by_id: std::collections::HashMap<&str, &Spec> =
        registry.registrations.iter().map(|r| (r.spec.id.as_str(), &r.spec)).collect();
    let sessions = order
        .iter()
        .filter_map(|id| registry.sessions.get(*id))
        .filter(|s| !s.registrations.is_empty())
        .map(|s| SavedSession {
            id: s.id.clone(),
            desc: s.desc.clone(),
            source: s.source.clone(),
            owner: s.owner.clone(),
            specs: s.registrations.iter().filter_map(|id| by_id.get(id.as_str()).map(|spec| (*spec).clone())).collect(),
            replaces: None,
        })
        .collect();
    serde_json::to_vec(&Saved { format: FORMAT, sessions, queued: queue::queued_snapshot() }).unwrap_or_default()
}

/// The sessions of an RDB's aux data, and the events it had queued.
pub fn parse_snapshot(bytes: &[u8]) -> Result<(Vec<SavedSession>, Vec<QueuedEvent>), String> {
    let saved: Saved = serde_json::from_slice(bytes).map_err(|e| format!("not rustgears registration data: {e}"))?;
    if saved.format != FORMAT {
        return Err(format!("registration data of format {} (this module reads {FORMAT})", saved.format));
    }
    Ok((saved.sessions, saved.queued))
}

pub fn parse_session(bytes: &[u8]) -> Result<SavedSession, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a rustgears registration: {e}"))
}

/// Sends an applied batch to replicas, the AOF and the cluster's other masters.
pub fn share_batch(ctx: &Context, batch: &ApplyBatch) {
    if let Ok(blob) = serde_json::to_vec(&SavedSession::of(batch)) {
        replicate_register(ctx, &blob);
        cluster::send_to_peers(ctx, &Message::Register(blob));
    }
}

/// Sends a session's registrations (`share_batch`'s blob) to replicas and the AOF.
pub fn replicate_register(ctx: &Context, blob: &[u8]) {
    ctx.replicate(REGISTER_COMMAND, &[blob][..]);
}

pub fn share_unregister(ctx: &Context, id: &str) {
    replicate_unregister(ctx, id);
    cluster::send_to_peers(ctx, &Message::Unregister(id.to_owned()));
}

pub fn replicate_unregister(ctx: &Context, id: &str) {
    ctx.replicate(UNREGISTER_COMMAND, &[id.as_bytes()][..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrations::{Kind, Mode};

    #[test]
    fn snapshots_round_trip_and_foreign_data_is_refused() {
        let session = SavedSession {
            id: "s".into(),
            desc: None,
            source: "GB().register()".into(),
            owner: "alice".into(),
            specs: vec![Spec {
                id: "0-1".into(),
                desc: Some("d".into()),
                mode: Mode::Sync,
                kind: Kind::Command { trigger: Some("t".into()), hook: None, keyprefix: None, inorder: false },
            }],
            replaces: None,
        };
        let queued =
            vec![QueuedEvent { registration: "0-1".into(), db: 3, key: b"k\0".to_vec(), event: b"set".to_vec() }];
        let saved = Saved { format: FORMAT, sessions: vec![session.clone()], queued: queued.clone() };
        let bytes = serde_json::to_vec(&saved).unwrap();
        assert_eq!(parse_snapshot(&bytes).unwrap(), (vec![session], queued));
        // Written before queues were saved: none.
        assert_eq!(parse_snapshot(br#"{"format": 1, "sessions": []}"#).unwrap(), (Vec::new(), Vec::new()));
        assert!(parse_snapshot(b"\x80\x04cloudpickle").is_err());
        assert!(parse_snapshot(br#"{"format": 99, "sessions": []}"#).unwrap_err().contains("format 99"));
    }
}
