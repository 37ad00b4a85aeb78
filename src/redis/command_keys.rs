//! Where a command's keys are, by Redis's own key specs (RedisModule_GetCommandKeysWithFlags):
//! what ACL key checks, hook key prefixes and `RG.INNERHOOK`'s key positions (for ACLs and
//! cluster redirects) need, without running `COMMAND GETKEYS`.

use std::ffi::c_int;

use redis_module::{Context, RedisString, raw};

/// The positions in `argv` (the command first) of its keys, with their key-spec flags. Empty for
/// an unknown command or one without keys.
pub fn positions(ctx: &Context, argv: &[RedisString]) -> Vec<(usize, c_int)> {
    let mut ptrs: Vec<*mut raw::RedisModuleString> = argv.iter().map(|a| a.inner).collect();
    let (mut count, mut flags): (c_int, *mut c_int) = (0, std::ptr::null_mut());
    // SAFETY: the caller holds the Redis lock (it runs a command); `ptrs` are live strings owned
    // by `argv` for the whole call. The returned arrays are Redis-allocated, read within
    // `count`, and freed once with RedisModule_Free.
    unsafe {
        let Some(keys) = raw::RedisModule_GetCommandKeysWithFlags else { return Vec::new() };
        let found = keys(ctx.ctx, ptrs.as_mut_ptr(), ptrs.len() as c_int, &mut count, &mut flags);
        if found.is_null() {
            return Vec::new();
        }
        let positions = (0..count.max(0) as usize)
            .map(|i| (*found.add(i) as usize, if flags.is_null() { 0 } else { *flags.add(i) }))
            .filter(|(pos, _)| *pos < argv.len())
            .collect();
        if let Some(free) = raw::RedisModule_Free {
            free(found.cast());
            if !flags.is_null() {
                free(flags.cast());
            }
        }
        positions
    }
}

/// `argv` as Redis strings, for the calls above.
pub fn strings<'a>(argv: impl IntoIterator<Item = &'a [u8]>) -> Vec<RedisString> {
    argv.into_iter().map(|a| RedisString::create_from_slice(std::ptr::null_mut(), a)).collect()
}
