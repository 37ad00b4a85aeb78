//! How registrations outlive the process and reach replicas (docs/python-api.md#persistence):
//! each session is stored as its script source with the specs of its registrations, never as
//! Python objects. A primary sends every applied batch and unregistration to its replicas and
//! AOF as internal commands, in the same locked section that changed the registry; RDB files
//! (and AOF rewrites) carry every session as module aux data.
//!
//! The format is JSON with a version number; data that is not ours (another version, a
//! RedisGears RDB) fails to parse and is refused with a log line.

use redis_module::Context;
use serde::{Deserialize, Serialize};

use super::{Batch, Spec, registry};

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
    pub specs: Vec<Spec>,
    /// The session an upgrade replaced (replication only).
    #[serde(default)]
    pub replaces: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    format: u32,
    sessions: Vec<SavedSession>,
}

impl SavedSession {
    fn of(batch: &Batch) -> SavedSession {
        SavedSession {
            id: batch.session.clone(),
            desc: batch.desc.clone(),
            source: batch.source.clone(),
            specs: batch.specs.clone(),
            replaces: batch.replaces.clone(),
        }
    }

    /// The batch that applies it on `home`.
    pub fn into_batch(self, home: usize) -> Batch {
        Batch {
            session: self.id,
            desc: self.desc,
            source: self.source,
            home,
            specs: self.specs,
            replaces: self.replaces,
        }
    }
}

/// Every live session, for the RDB, in the order of their first registrations (so a load lists
/// them in creation order again). Runs in the forked child too: the registry's mutex is free
/// there, as only threads holding the Redis lock take it (see `registrations`).
pub fn snapshot() -> Vec<u8> {
    let registry = registry();
    let mut order: Vec<&str> = Vec::new();
    for registration in &registry.registrations {
        if !order.contains(&registration.session.as_str()) {
            order.push(&registration.session);
        }
    }
    let sessions = order
        .iter()
        .filter_map(|id| registry.sessions.get(*id))
        .filter(|s| !s.registrations.is_empty())
        .map(|s| SavedSession {
            id: s.id.clone(),
            desc: s.desc.clone(),
            source: s.source.clone(),
            specs: s
                .registrations
                .iter()
                .filter_map(|id| registry.registrations.iter().find(|r| &r.spec.id == id))
                .map(|r| r.spec.clone())
                .collect(),
            replaces: None,
        })
        .collect();
    serde_json::to_vec(&Saved { format: FORMAT, sessions }).unwrap_or_default()
}

/// The sessions of an RDB's aux data.
pub fn parse_snapshot(bytes: &[u8]) -> Result<Vec<SavedSession>, String> {
    let saved: Saved = serde_json::from_slice(bytes).map_err(|e| format!("not rustgears registration data: {e}"))?;
    if saved.format != FORMAT {
        return Err(format!("registration data of format {} (this module reads {FORMAT})", saved.format));
    }
    Ok(saved.sessions)
}

pub fn parse_session(bytes: &[u8]) -> Result<SavedSession, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a rustgears registration: {e}"))
}

/// Sends an applied batch to replicas and the AOF.
pub fn replicate_batch(ctx: &Context, batch: &Batch) {
    if let Ok(blob) = serde_json::to_vec(&SavedSession::of(batch)) {
        ctx.replicate(REGISTER_COMMAND, &[blob.as_slice()][..]);
    }
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
            specs: vec![Spec {
                id: "0-1".into(),
                desc: Some("d".into()),
                mode: Mode::Sync,
                kind: Kind::Command { trigger: Some("t".into()), hook: None, keyprefix: None, inorder: false },
            }],
            replaces: None,
        };
        let bytes = serde_json::to_vec(&Saved { format: FORMAT, sessions: vec![session.clone()] }).unwrap();
        assert_eq!(parse_snapshot(&bytes).unwrap(), vec![session]);
        assert!(parse_snapshot(b"\x80\x04cloudpickle").is_err());
        assert!(parse_snapshot(br#"{"format": 99, "sessions": []}"#).unwrap_err().contains("format 99"));
    }
}
