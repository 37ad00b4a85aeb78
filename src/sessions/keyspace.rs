//! Keyspace events reaching the KeysReader and StreamReader registrations that listen.

use redis_module::Context;

use super::dispatch::{Caller, Input, dispatch};
use crate::redis::notify;
use crate::registrations::{self, Kind};

/// A keyspace event (`ctx` is the write's; the thread that wrote holds the Redis lock).
pub fn on_keyspace_event(ctx: &Context, event: &[u8], key: &[u8]) {
    if !registrations::keys::any() || !notify::fires(ctx) {
        return;
    }
    let db = crate::redis::gil::selected_db(ctx);
    if event == b"xadd" {
        super::streams::on_xadd(ctx, key, db);
    }
    let link = super::hooks::followed();
    let command = link.as_ref().and_then(|l| l.command.first().cloned());
    let mut key_type = || notify::key_type(ctx, key);
    for registration in registrations::keys::listeners(event, key, &mut key_type, command.as_deref()) {
        let Kind::Keys { read_value, commands, .. } = &registration.spec.kind else { continue };
        let read_value = *read_value;
        let link = link.clone().filter(|_| commands.is_some());
        let caller = match &link {
            Some(link) => Caller::Linked(link.clone()),
            None => Caller::Nobody,
        };
        let input = Input::Key { key: key.to_vec(), event: event.to_vec(), read_value, link };
        dispatch(ctx, registration, input, db, caller);
    }
}
