//! rustgears: the RedisGears 1.x Python engine as a Redis module, on embedded RustPython.
//!
//! This file only wires the module into Redis: the command table, load arguments and start-up.

pub mod cluster;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod executions;
pub mod idle;
pub mod ids;
pub mod jobs;
pub mod memory;
pub mod pool;
pub mod profile;
pub mod python;
pub mod redis;
pub mod registrations;
pub mod reply;
pub mod report;
pub mod sessions;
pub mod stop;
pub mod store;
pub mod unpoisoned;
pub mod watchdog;

/// The Redis entry point. Left out of unit tests and fuzz targets, which run without Redis.
#[cfg(all(feature = "module", not(test)))]
mod entry {
    use redis_module::{Context, RedisString, Status, redis_module};

    use crate::redis::rdb::TYPE as RG_TYPE;
    use crate::{cluster, commands, config, jobs, memory, pool, python, redis, registrations, sessions, watchdog};

    /// Jobs read and write Redis.
    struct RedisHost;

    impl jobs::host::Host for RedisHost {
        fn store(&self, db: i32, run_as: crate::store::RunAs) -> std::rc::Rc<dyn crate::store::Store> {
            std::rc::Rc::new(redis::keyspace::RedisStore::new(db, run_as))
        }

        fn locked(&self, f: &mut dyn FnMut()) {
            redis::gil::with_gil(0, |_| f())
        }
    }

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        redis::log::init_log(ctx);
        redis::panic_hook::route_panics_to_log();
        redis::gil::init_main_thread(ctx);
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_slice().to_vec()).collect();
        let config = match config::Config::from_load_args(&args) {
            Ok(config) => config,
            Err(err) => {
                redis::log::warning(&format!("rustgears: module load failed: {err}"));
                return Status::Err;
            }
        };
        let threads = config.execution_threads;
        config::adopt(config);
        if let Err(err) = pool::spawn_workers(threads).and_then(|()| watchdog::spawn_watchdog()) {
            redis::log::warning(&format!("rustgears: module load failed: {err}"));
            return Status::Err;
        }
        redis::info::add_sections(ctx, commands::info::sections);
        redis::notify::subscribe_keyspace(ctx, sessions::keyspace::on_keyspace_event);
        redis::events::subscribe(
            ctx,
            redis::events::Handlers {
                loading_started: sessions::persisted::loading_started,
                ready: sessions::persisted::ready,
            },
        );
        redis::filter::intercept(ctx, registrations::hooks::intercepts, redis::acl::default_user_needs_auth);
        python::upcalls::provide_upcalls(&sessions::SessionUpcalls);
        cluster::watch(ctx);
        jobs::distributed::watch_executions(ctx);
        redis::cluster::receive_messages(ctx, sessions::persisted::on_peer_message);
        jobs::host::provide_host(&RedisHost);
        redis::rdb::register_persisted(redis::rdb::Persisted {
            save: sessions::persisted::save,
            load: sessions::persisted::load_snapshot,
            key_loaded: sessions::persisted::key_loaded,
        });
        ctx.log_notice(&format!("rustgears: {threads} execution threads starting"));
        Status::Ok
    }

    redis_module! {
        name: "rg",
        version: 10213,
        allocator: (memory::Accounting, memory::Accounting),
        data_types: [RG_TYPE],
        init: init,
        commands: [
            ["rg.pyexecute", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.getresults", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.getresultsblocking", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.dumpexecutions", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.dropexecution", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.getexecution", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.abortexecution", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.configget", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.configset", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pystats", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.dumpplugins", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pyexecuteremote", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pyfreeinterpreter", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.infocluster", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.refreshcluster", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pydumpreqs", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pyexportreq", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pyimportreq", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.testsync", commands::rg_command, "write", 0, 0, 0, ""],
            ["rg.dumpregistrations", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.unregister", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pauseregistrations", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.unpauseregistrations", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.clearregistrationsstats", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.trigger", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.triggeronkey", commands::rg_command, "readonly", 2, 2, 1, ""],
            ["rg.pydumpsessions", commands::rg_command, "readonly", 0, 0, 0, ""],
            ["rg.pyprofile", commands::rg_command, "readonly", 0, 0, 0, ""],
            // Replication and AOF only: what a primary sends its replicas when registrations change.
            ["rg.innerregister", commands::rg_command, "write", 0, 0, 0, ""],
            ["rg.innerunregister", commands::rg_command, "write", 0, 0, 0, ""],
            // Where the command filter sends commands that registrations intercept (redis::filter
            // says why there are two). Their keys are the hooked command's.
            ["rg.innerhook", commands::rg_command, "readonly getkeys-api no-auth", 0, 0, 0, ""],
            ["rg.innerhookauth", commands::rg_command, "readonly getkeys-api", 0, 0, 0, ""],
        ],
    }
}
