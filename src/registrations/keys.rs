//! Which KeysReader registrations a keyspace event reaches (docs/python-api.md#keysreader-registrations).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::spec::prefix_matches;
use super::{Kind, Registration, registry};

/// The registrations that listen to `event` on `key`. `key_type` says the key's type now
/// (`empty`, `string`, ...); asked only if a registration filters on it. `command`: the command
/// that caused the event, if known.
pub fn listeners(
    event: &[u8],
    key: &[u8],
    key_type: &mut dyn FnMut() -> &'static str,
    command: Option<&[u8]>,
) -> Vec<Arc<Registration>> {
    // Not under the registry's lock: the key's type is read from Redis, which may raise events.
    let candidates: Vec<Arc<Registration>> =
        registry().registrations.iter().filter(|r| matches!(r.spec.kind, Kind::Keys { .. })).cloned().collect();
    let mut found = Vec::new();
    for registration in &candidates {
        let Kind::Keys { prefix, event_types, key_types, commands, .. } = &registration.spec.kind else { continue };
        let listens = prefix_matches(prefix.as_bytes(), key)
            && event_types.as_ref().is_none_or(|types| types.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(event)))
            && commands.as_ref().is_none_or(|names| {
                command.is_some_and(|command| names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(command)))
            })
            && key_types.as_ref().is_none_or(|types| {
                let now = key_type();
                types.iter().any(|t| t == now)
            });
        if listens {
            found.push(registration.clone());
        }
    }
    found
}

/// KeysReader and StreamReader registrations: while none exists events are not looked at.
static LISTENING: AtomicUsize = AtomicUsize::new(0);

pub(super) fn recount_keys(registrations: &[Arc<Registration>]) {
    let n = registrations.iter().filter(|r| matches!(r.spec.kind, Kind::Keys { .. } | Kind::Stream { .. })).count();
    LISTENING.store(n, Ordering::Release);
}

/// True if a registration may listen to keyspace events.
pub fn any() -> bool {
    LISTENING.load(Ordering::Acquire) > 0
}
