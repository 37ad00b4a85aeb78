//! Arbitrary script text compiled and run in a sandboxed interpreter, plans included (over an
//! in-memory keyspace), with a small time limit and memory budget: no input may panic or hang.
#![no_main]

use std::cell::RefCell;
use std::sync::Once;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rustgears::engine::{self, store::MemoryStore};
use rustgears::python::interrupt::{self, Abort};
use rustgears::python::{Runtime, ScriptOutcome};

#[global_allocator]
static ALLOCATOR: rustgears::memory::Accounting = rustgears::memory::Accounting;

thread_local! {
    static RUNTIME: RefCell<Runtime> = RefCell::new(match Runtime::new(0) {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot build an interpreter: {e}"),
    });
}

static WATCHDOG: Once = Once::new();

fn start_watchdog() {
    WATCHDOG.call_once(|| {
        rustgears::memory::set_limit(64 << 20);
        std::thread::spawn(|| loop {
            std::thread::sleep(interrupt::TICK);
            let _ = interrupt::tick(Some(Duration::from_millis(200)));
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
        if let ScriptOutcome::Run(plan) = runtime.run_script(script, 0, Abort::new()) {
            let _armed = runtime.arm(Abort::new());
            let _ = engine::run(runtime, plan, &MemoryStore::default());
        }
        runtime.end_job();
    });
});
