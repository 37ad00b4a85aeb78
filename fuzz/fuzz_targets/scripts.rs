//! Arbitrary script text compiled and run in a sandboxed interpreter, plans included (over an
//! in-memory keyspace), with a small time limit and memory budget: no input may panic or hang.
#![no_main]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rustgears::engine;
use rustgears::python::{Runtime, ScriptOutcome};
use rustgears::stop::{Abort, WorkerId};
use rustgears::store::MemoryStore;

#[global_allocator]
static ALLOCATOR: rustgears::memory::Accounting = rustgears::memory::Accounting;

thread_local! {
    static RUNTIME: RefCell<Runtime> = RefCell::new(match Runtime::new(WorkerId::default()) {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot build an interpreter: {e}"),
    });
}

static WATCHDOG: Once = Once::new();

fn start_watchdog() {
    WATCHDOG.call_once(|| {
        rustgears::memory::set_limit(64 << 20);
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(10));
            let _ = rustgears::watchdog::tick(Some(Duration::from_millis(200)), false);
        });
    });
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let Ok(script) = std::str::from_utf8(data) else { return };
    start_watchdog();
    RUNTIME.with_borrow_mut(|runtime| {
        // One keyspace for the body and its execution, as one Redis database would be.
        let store = Rc::new(MemoryStore::default());
        if let ScriptOutcome::Run(plan) = runtime.run_script(script, store.clone(), Abort::new(), None, None) {
            let _armed = runtime.arm(Abort::new());
            let _ = engine::run(runtime, plan, store);
        }
        runtime.end_job();
    });
});
