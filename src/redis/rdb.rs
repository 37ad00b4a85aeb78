//! The module's data in RDB files (and AOF rewrites with an RDB preamble): the registrations'
//! sessions as aux data of the module type `rg_timeev`, whose keys are keyed time events.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::native_types::RedisType;
use redis_module::raw;

use super::log;

/// The encoding version written; RDBs with another (RedisGears' own `rg_timeev` data, a later
/// format) are refused.
pub const ENCODING_VERSION: i32 = 1;

/// What the module stores and restores.
pub struct Persisted {
    /// The sessions, serialized, and whether there are none.
    pub save: fn() -> (Vec<u8>, bool),
    /// Restores what `save` stored; the error is logged and the load refused.
    pub load: fn(&[u8]) -> Result<(), String>,
}

static PERSISTED: OnceLock<Persisted> = OnceLock::new();

pub fn install(persisted: Persisted) {
    let _ = PERSISTED.set(persisted);
}

pub static TYPE: RedisType = RedisType::new(
    "rg_timeev",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: None,
        free: Some(free),
        mem_usage: None,
        digest: None,
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: Some(aux_save_unless_empty),
        aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as c_int,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

/// Runs in the BGSAVE / AOF-rewrite child too: no locks a worker may hold, no Python. Redis 7.0
/// always writes the aux field, so something is always written.
unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    save(rdb, true);
}

/// Redis 7.2+: nothing is written without registrations, so such an RDB loads without the module.
unsafe extern "C" fn aux_save_unless_empty(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    save(rdb, false);
}

fn save(rdb: *mut raw::RedisModuleIO, always: bool) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let Some((bytes, empty)) = PERSISTED.get().map(|p| (p.save)())
            && (always || !empty)
        {
            raw::save_slice(rdb, &bytes);
        }
    }));
}

unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, version: c_int, _when: c_int) -> c_int {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        if version != ENCODING_VERSION {
            return Err(format!("module data of encoding version {version} (this module reads {ENCODING_VERSION})"));
        }
        let bytes = raw::load_string_buffer(rdb).map_err(|e| format!("unreadable module data: {e}"))?;
        match PERSISTED.get() {
            Some(p) => (p.load)(bytes.as_ref()),
            None => Ok(()),
        }
    }));
    match loaded {
        Ok(Ok(())) => raw::REDISMODULE_OK as c_int,
        Ok(Err(why)) => {
            log::warning(&format!("rustgears: refusing to load the RDB's registrations: {why}"));
            raw::REDISMODULE_ERR as c_int
        }
        Err(_) => {
            log::warning("rustgears: loading the RDB's registrations panicked");
            raw::REDISMODULE_ERR as c_int
        }
    }
}

/// Time-event keys are not stored yet: a key of this type in an RDB is refused.
unsafe extern "C" fn rdb_load(_rdb: *mut raw::RedisModuleIO, version: c_int) -> *mut std::ffi::c_void {
    log::warning(&format!("rustgears: an rg_timeev key of encoding version {version} cannot be loaded"));
    std::ptr::null_mut()
}

unsafe extern "C" fn rdb_save(_rdb: *mut raw::RedisModuleIO, _value: *mut std::ffi::c_void) {}

unsafe extern "C" fn free(_value: *mut std::ffi::c_void) {}
