//! What jobs need of the server they run in: the store a job reads and writes. Redis's is
//! provided at load (`RedisStore`, through the lock the job holds or is lent); without a server
//! (unit tests, fuzz targets) every job of a thread sees that thread's one `MemoryStore`, so the
//! paths that start and end jobs run under `cargo test`.

use std::rc::Rc;
use std::sync::OnceLock;

use crate::store::{MemoryStore, RunAs, Store};

pub trait Host: Sync {
    /// The store of a job running as `run_as` on database `db`.
    fn store(&self, db: i32, run_as: RunAs) -> Rc<dyn Store>;

    /// Runs `f` with the server locked (what the registry requires of its readers off the main
    /// thread). Without a server there is nothing to lock.
    fn locked(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// No server: one `MemoryStore` per thread, whatever the database or the user.
struct NoServer;

thread_local! {
    static MEMORY: Rc<MemoryStore> = Rc::new(MemoryStore::default());
}

impl Host for NoServer {
    fn store(&self, _db: i32, _run_as: RunAs) -> Rc<dyn Store> {
        MEMORY.with(Rc::clone)
    }
}

static HOST: OnceLock<&'static dyn Host> = OnceLock::new();

pub fn provide_host(host: &'static dyn Host) {
    let _ = HOST.set(host);
}

/// The store of a job running as `run_as` on database `db`.
pub fn store(db: i32, run_as: RunAs) -> Rc<dyn Store> {
    host().store(db, run_as)
}

/// Runs `f` with the server locked, from a worker (see `Host::locked`).
pub fn locked<R>(f: impl FnOnce() -> R) -> R {
    let (mut f, mut out) = (Some(f), None);
    host().locked(&mut || out = f.take().map(|f| f()));
    // A host that did not call `f` gets it run here, unlocked, rather than no answer.
    match (out, f) {
        (Some(out), _) => out,
        (None, Some(f)) => f(),
        (None, None) => unreachable!("`f` ran, so it answered"),
    }
}

fn host() -> &'static dyn Host {
    HOST.get().copied().unwrap_or(&NoServer)
}

/// This thread's store when there is no server.
pub fn memory() -> Rc<MemoryStore> {
    MEMORY.with(Rc::clone)
}
