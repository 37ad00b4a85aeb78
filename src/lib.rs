//! rustgears: the RedisGears 1.x Python engine as a Redis module, on embedded RustPython.
//!
//! This file only wires the module into Redis: the command table, load arguments and start-up.

pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod executions;
pub mod memory;
pub mod pool;
pub mod python;
pub mod redis;
pub mod watchdog;

use redis_module::{Context, RedisString, Status, redis_module};

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    redis::log::init(ctx);
    redis::panic_hook::install();
    redis::gil::mark_main_thread();
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_slice().to_vec()).collect();
    let config = match config::Config::from_load_args(&args) {
        Ok(config) => config,
        Err(err) => {
            redis::log::warning(&format!("rustgears: module load failed: {err}"));
            return Status::Err;
        }
    };
    let threads = config.execution_threads;
    config::install(config);
    if let Err(err) = pool::start(threads).and_then(|()| watchdog::start()) {
        redis::log::warning(&format!("rustgears: module load failed: {err}"));
        return Status::Err;
    }
    ctx.log_notice(&format!("rustgears: {threads} execution threads ready"));
    Status::Ok
}

#[cfg(not(test))]
redis_module! {
    name: "rg",
    version: 10213,
    allocator: (memory::Accounting, memory::Accounting),
    data_types: [],
    init: init,
    commands: [
        ["rg.pyexecute", commands::pyexecute::rg_pyexecute, "readonly", 0, 0, 0, ""],
        ["rg.getresults", commands::executions::rg_getresults, "readonly", 0, 0, 0, ""],
        ["rg.getresultsblocking", commands::executions::rg_getresultsblocking, "readonly", 0, 0, 0, ""],
        ["rg.dumpexecutions", commands::executions::rg_dumpexecutions, "readonly", 0, 0, 0, ""],
        ["rg.dropexecution", commands::executions::rg_dropexecution, "readonly", 0, 0, 0, ""],
        ["rg.getexecution", commands::executions::rg_getexecution, "readonly", 0, 0, 0, ""],
        ["rg.abortexecution", commands::management::rg_abortexecution, "readonly", 0, 0, 0, ""],
        ["rg.configget", commands::management::rg_configget, "readonly", 0, 0, 0, ""],
        ["rg.configset", commands::management::rg_configset, "readonly", 0, 0, 0, ""],
        ["rg.pystats", commands::management::rg_pystats, "readonly", 0, 0, 0, ""],
        ["rg.dumpplugins", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.pyexecuteremote", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.pyfreeinterpreter", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.infocluster", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.refreshcluster", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.pydumpreqs", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.pyexportreq", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
        ["rg.pyimportreq", commands::management::rg_fixed, "readonly", 0, 0, 0, ""],
    ],
}
