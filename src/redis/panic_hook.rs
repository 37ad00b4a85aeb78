//! Panics are caught at every entry point; this hook makes sure each one is also in the Redis log.

use std::sync::Once;

static INSTALL: Once = Once::new();

pub fn route_panics_to_log() {
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            super::log::warning(&format!("rustgears: caught panic: {info}"));
        }));
    });
}
