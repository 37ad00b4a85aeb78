//! The exchange's transport over Redis Cluster's own bus (`RedisModule_SendClusterMessage`),
//! from any thread: the main thread and a worker inside `atomic()` hold the lock already, any
//! other worker takes it for the send (a copy into the link's buffer).

use std::time::Duration;

use redis_module::Context;

use super::exchange::Transport;
use super::message::Message;
use crate::redis::{cluster, gil};

pub struct Bus;

impl Transport for Bus {
    fn send(&self, to: &str, message: &Message) -> bool {
        send_to_node(to, message)
    }

    fn wait(&self) {
        // Acknowledgements arrive on the main thread; meanwhile this worker serves its visits.
        crate::idle::serve_for(Duration::from_millis(1));
    }
}

/// Sends `message` to node `to`; false if Redis has no link to it.
pub fn send_to_node(to: &str, message: &Message) -> bool {
    let bytes = message.encode();
    if gil::held() {
        // The module's detached context names the module, which is all the send needs of it.
        return cluster::send_message(&Context::new(gil::detached()), to, &bytes);
    }
    gil::with_gil(0, |ctx| cluster::send_message(ctx, to, &bytes))
}
