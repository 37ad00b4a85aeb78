//! Triggers (`RG.TRIGGER`): which registration answers a name.

use std::sync::Arc;

use super::{Registration, registry};

/// The registration of trigger `name` (names are case-sensitive).
pub fn by_name(name: &str) -> Option<Arc<Registration>> {
    registry().registrations.iter().find(|r| r.spec.kind.trigger() == Some(name)).cloned()
}
