//! The module's data in RDB files (and AOF rewrites with an RDB preamble): the registrations'
//! sessions as aux data of the module type `rg_timeev`, whose keys are keyed time events.

use std::ffi::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use redis_module::key::KeyFlags;
use redis_module::native_types::RedisType;
use redis_module::{Context, RedisString, raw};

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
    /// A key of the module's type was loaded, with these bytes; false refuses it.
    pub key_loaded: fn(&[u8]) -> bool,
}

static PERSISTED: OnceLock<Persisted> = OnceLock::new();

pub fn register_persisted(persisted: Persisted) {
    let _ = PERSISTED.set(persisted);
}

pub static TYPE: RedisType = RedisType::new(
    "rg_timeev",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
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
/// SAFETY (callback contract): `rdb` is an IO handle Redis keeps valid for the call.
unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    save_aux(rdb, true);
}

/// Redis 7.2+: nothing is written without registrations, so such an RDB loads without the module.
/// SAFETY (callback contract): as `aux_save`.
unsafe extern "C" fn aux_save_unless_empty(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    save_aux(rdb, false);
}

fn save_aux(rdb: *mut raw::RedisModuleIO, always: bool) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let Some((bytes, empty)) = PERSISTED.get().map(|p| (p.save)())
            && (always || !empty)
        {
            raw::save_slice(rdb, &bytes);
        }
    }));
}

/// SAFETY (callback contract): `rdb` is an IO handle Redis keeps valid for the call; it is
/// panic-contained.
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

/// A key of the module's type holds bytes (a keyed time event, `registrations::time_events`).
///
/// SAFETY (callback contract): `rdb` is an IO handle Redis keeps valid for the call; the value
/// returned is owned by Redis until `free`.
unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, version: c_int) -> *mut c_void {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        if version != ENCODING_VERSION {
            log::warning(&format!("rustgears: refusing an rg_timeev key of encoding version {version} (RedisGears'?)"));
            return std::ptr::null_mut();
        }
        let Ok(bytes) = raw::load_string_buffer(rdb) else { return std::ptr::null_mut() };
        let bytes = bytes.as_ref().to_vec();
        if !PERSISTED.get().is_some_and(|p| (p.key_loaded)(&bytes)) {
            log::warning("rustgears: refusing an rg_timeev key that is not rustgears data");
            return std::ptr::null_mut();
        }
        Box::into_raw(Box::new(bytes)).cast::<c_void>()
    }));
    loaded.unwrap_or(std::ptr::null_mut())
}

/// SAFETY (callback contract): `value` is one of this type's values, alive for the call.
unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: every value of this type was made by `write_key` or `rdb_load`: a boxed Vec<u8>.
    let bytes = unsafe { &*value.cast::<Vec<u8>>() };
    raw::save_slice(rdb, bytes);
}

/// Without an RDB preamble an AOF rewrite cannot carry the key: it is left out (logged).
unsafe extern "C" fn aof_rewrite(
    _aof: *mut raw::RedisModuleIO,
    _key: *mut raw::RedisModuleString,
    _value: *mut c_void,
) {
    log::warning("rustgears: an AOF rewrite without RDB preamble leaves out keyed time events");
}

/// SAFETY (callback contract): `value` is one of this type's values, freed once.
unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: as in `rdb_save`; Redis frees each value once.
    drop(unsafe { Box::from_raw(value.cast::<Vec<u8>>()) });
}

/// Stores `bytes` as the value of `key` (a new key of the module's type).
pub fn write_key(ctx: &Context, key: &[u8], bytes: Vec<u8>) -> bool {
    let name = RedisString::create_from_slice(std::ptr::null_mut(), key);
    ctx.open_key_writable(&name).set_value(&TYPE, bytes).is_ok()
}

/// What a key holds, for the module's type.
pub enum Slot {
    Missing,
    /// A key of the module's type, with its bytes.
    Ours(Vec<u8>),
    /// A key of another type.
    Other,
}

pub fn read_key(ctx: &Context, key: &[u8]) -> Slot {
    let name = RedisString::create_from_slice(std::ptr::null_mut(), key);
    let handle = ctx.open_key_with_flags(&name, KeyFlags::NONOTIFY | KeyFlags::NOSTATS | KeyFlags::NOTOUCH);
    if handle.is_null() {
        return Slot::Missing;
    }
    match handle.get_value::<Vec<u8>>(&TYPE) {
        Ok(Some(value)) => Slot::Ours(value.clone()),
        Ok(None) => Slot::Missing,
        Err(_) => Slot::Other,
    }
}
