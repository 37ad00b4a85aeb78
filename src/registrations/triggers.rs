//! Triggers (`RG.TRIGGER`) and command hooks: which registration answers a name.

use std::sync::Arc;

use super::{Registration, registry};

/// The registration of trigger `name` (names are case-sensitive).
pub fn find(name: &str) -> Option<Arc<Registration>> {
    registry().registrations.iter().find(|r| r.spec.kind.trigger() == Some(name)).cloned()
}

/// The hooks of `command` (lower case), newest first.
pub fn hooks(command: &str) -> Vec<Arc<Registration>> {
    registry().registrations.iter().rev().filter(|r| r.spec.kind.hook() == Some(command)).cloned().collect()
}
