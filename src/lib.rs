//! rustgears: the RedisGears 1.x Python engine as a Redis module, on embedded RustPython.
//!
//! This file only wires the module into Redis: the command table, load arguments and start-up.

pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod executions;
pub mod pool;
pub mod python;
pub mod redis;

use redis_module::{Context, RedisString, Status, redis_module};

fn init(ctx: &Context, args: &[RedisString]) -> Status {
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
    if let Err(err) = pool::start(threads) {
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
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    commands: [
        ["rg.pyexecute", commands::pyexecute::rg_pyexecute, "readonly", 0, 0, 0, ""],
        ["rg.getresults", commands::executions::rg_getresults, "readonly", 0, 0, 0, ""],
        ["rg.getresultsblocking", commands::executions::rg_getresultsblocking, "readonly", 0, 0, 0, ""],
        ["rg.dumpexecutions", commands::executions::rg_dumpexecutions, "readonly", 0, 0, 0, ""],
        ["rg.dropexecution", commands::executions::rg_dropexecution, "readonly", 0, 0, 0, ""],
    ],
}
