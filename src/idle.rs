//! What a worker does while the job it runs has to wait (for the Redis lock, in `time.sleep`):
//! it serves visits to its home (script bodies, calls on behalf of the main thread), so that a
//! waiting job never makes them wait. The pool installs the hook on each worker thread; the
//! layers that wait (`redis::gil`, `python`) call it without knowing about the pool.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static HOOK: Cell<Option<fn(Duration)>> = const { Cell::new(None) };
}

pub fn set_hook(hook: fn(Duration)) {
    HOOK.set(Some(hook));
}

/// Waits up to `timeout`, serving visits meanwhile (on a worker), or just sleeps (elsewhere).
pub fn serve_for(timeout: Duration) {
    match HOOK.get() {
        Some(hook) => hook(timeout),
        None => std::thread::sleep(timeout),
    }
}
