//! Redis's ACLs applied to what the module runs, as Lua and Functions apply them: a command a
//! script, hook or registration runs is checked against the user it runs as, refusals are logged
//! in `ACL LOG`, and the protected commands stay behind their configs. docs/sandbox.md#security-model
//! says who runs as whom.

use std::ffi::c_int;
use std::ptr::NonNull;

use redis_module::{Context, RedisString, raw};

use crate::error::GearsError;
pub use crate::store::RunAs;

/// An ACL user, looked up by name; freed (the handle, not the user) on drop.
pub struct User(NonNull<raw::RedisModuleUser>);

impl User {
    /// `None` if no such user exists (any more).
    pub fn find(name: &str) -> Option<User> {
        let name = RedisString::create_from_slice(std::ptr::null_mut(), name.as_bytes());
        // SAFETY: called with the Redis lock held (every caller runs a command); `name` lives
        // across the call. The returned handle is owned here and freed in `drop`.
        let user = unsafe { raw::RedisModule_GetModuleUserFromUserName.map(|find| find(name.inner)) }?;
        NonNull::new(user).map(User)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // SAFETY: the handle came from GetModuleUserFromUserName and is freed once; freeing it
        // does not touch the ACL user it names.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeModuleUser {
                free(self.0.as_ptr());
            }
        }
    }
}

impl User {
    /// Makes RM_Call on `ctx` run as this user until the guard drops.
    pub fn set_on<'a>(&'a self, ctx: &'a Context) -> AsUser<'a> {
        // SAFETY: `ctx` is usable on this thread now and outlives the guard, which unsets the
        // user before this handle can be freed.
        unsafe {
            if let Some(set) = raw::RedisModule_SetContextUser {
                set(ctx.ctx, self.0.as_ptr());
            }
        }
        AsUser(ctx)
    }
}

/// RM_Call on a context runs as a user (`User::set_on`).
pub struct AsUser<'a>(&'a Context);

impl Drop for AsUser<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `set_on`; a null user restores the context's own client's.
        unsafe {
            if let Some(set) = raw::RedisModule_SetContextUser {
                set(self.0.ctx, std::ptr::null());
            }
        }
    }
}

/// Whether the client of `ctx` may change (unregister, pause, upgrade) what `owner` registered:
/// the owner may, and so may a user allowed `ACL SETUSER`, who could grant itself anything
/// anyway; so may the module itself.
pub fn may_manage(ctx: &Context, owner: &str) -> bool {
    let name = match client_user(ctx) {
        RunAs::Module => return true,
        RunAs::Nobody => return false,
        RunAs::User(name) if &*name == owner => return true,
        RunAs::User(name) => name,
    };
    let Some(user) = User::find(&name) else { return false };
    let argv = super::command_keys::strings([b"ACL".as_slice(), b"SETUSER", b"anyone"]);
    let mut ptrs: Vec<*mut raw::RedisModuleString> = argv.iter().map(|a| a.inner).collect();
    // SAFETY: the lock is held (a command runs); `ptrs` are live strings owned by `argv`.
    unsafe {
        raw::RedisModule_ACLCheckCommandPermissions.is_some_and(|check| {
            check(user.0.as_ptr(), ptrs.as_mut_ptr(), ptrs.len() as c_int) == raw::REDISMODULE_OK as c_int
        })
    }
}

/// Which keys a job may read the values of, for one locked section (the user looked up once).
pub enum Readable {
    All,
    None,
    Of(User),
}

impl Readable {
    /// Called with the Redis lock held, which it must stay held while this lives.
    pub fn new(run_as: &RunAs) -> Readable {
        match run_as {
            RunAs::Module => Readable::All,
            RunAs::Nobody => Readable::None,
            RunAs::User(name) => User::find(name).map_or(Readable::None, Readable::Of),
        }
    }

    pub fn may_read(&self, key: &[u8]) -> bool {
        let user = match self {
            Readable::All => return true,
            Readable::None => return false,
            Readable::Of(user) => user,
        };
        let key = RedisString::create_from_slice(std::ptr::null_mut(), key);
        // SAFETY: the lock is held (see `new`); `key` lives across the call.
        unsafe {
            raw::RedisModule_ACLCheckKeyPermissions.is_some_and(|check| {
                check(user.0.as_ptr(), key.inner, raw::REDISMODULE_CMD_KEY_ACCESS as c_int)
                    == raw::REDISMODULE_OK as c_int
            })
        }
    }
}

/// Why a command was refused, with the object `ACL LOG` records.
enum Denied {
    Command(String),
    Key(Vec<u8>),
    Channel(Vec<u8>),
}

/// Checks `argv` (the command and its arguments) for `user`: Ok, or the client-visible refusal,
/// also logged in `ACL LOG` as Redis logs a module's refusal. An unknown command passes: running
/// it gives Redis's own error.
pub fn check(ctx: &Context, user: &User, argv: &[RedisString]) -> Result<(), GearsError> {
    let mut ptrs: Vec<*mut raw::RedisModuleString> = argv.iter().map(|a| a.inner).collect();
    // SAFETY: the lock is held; `ptrs` are live strings (owned by `argv`) for the whole call.
    let allowed = unsafe {
        let Some(check) = raw::RedisModule_ACLCheckCommandPermissions else { return Ok(()) };
        check(user.0.as_ptr(), ptrs.as_mut_ptr(), ptrs.len() as c_int) == raw::REDISMODULE_OK as c_int
    };
    // ENOENT: no such command.
    if allowed || std::io::Error::last_os_error().kind() == std::io::ErrorKind::NotFound {
        return Ok(());
    }
    let denied = denial(ctx, user, argv);
    let (object, reason, error) = match denied {
        Denied::Command(name) => (
            name.clone().into_bytes(),
            raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CMD,
            GearsError::NoPermCommand(name),
        ),
        Denied::Key(key) => (key, raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY, GearsError::NoPermKey),
        Denied::Channel(channel) => {
            (channel, raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CHANNEL, GearsError::NoPermChannel)
        }
    };
    let object = RedisString::create_from_slice(std::ptr::null_mut(), &object);
    // SAFETY: the lock is held; `user` and `object` live across the call, which copies both.
    unsafe {
        if let Some(log) = raw::RedisModule_ACLAddLogEntry {
            log(ctx.ctx, user.0.as_ptr(), object.inner, reason);
        }
    }
    Err(error)
}

/// What in `argv` the user may not touch: a key, else a channel, else the command itself.
fn denial(ctx: &Context, user: &User, argv: &[RedisString]) -> Denied {
    let key = super::command_keys::positions(ctx, argv).into_iter().find_map(|(pos, flags)| {
        let key = &argv[pos];
        // SAFETY: the lock is held; `key` lives across the call.
        let refused = unsafe {
            raw::RedisModule_ACLCheckKeyPermissions
                .is_some_and(|check| check(user.0.as_ptr(), key.inner, flags) != raw::REDISMODULE_OK as c_int)
        };
        refused.then(|| key.as_slice().to_vec())
    });
    if let Some(key) = key {
        return Denied::Key(key);
    }
    let name = argv.first().map(|a| String::from_utf8_lossy(a.as_slice()).to_ascii_lowercase()).unwrap_or_default();
    if let Some(channel) = refused_channel(user, &name, argv) {
        return Denied::Channel(channel);
    }
    let sub = argv.get(1).filter(|_| CONTAINERS.contains(&name.as_str()));
    match sub {
        Some(sub) => {
            Denied::Command(format!("{name}|{}", String::from_utf8_lossy(sub.as_slice()).to_ascii_lowercase()))
        }
        None => Denied::Command(name),
    }
}

/// Commands whose first argument is a subcommand, which ACLs name `command|subcommand`.
const CONTAINERS: &[&str] = &[
    "acl", "client", "cluster", "command", "config", "debug", "function", "latency", "memory", "module", "object",
    "pubsub", "script", "slowlog", "xgroup", "xinfo",
];

/// The channel of a publish the user may not publish to.
fn refused_channel(user: &User, name: &str, argv: &[RedisString]) -> Option<Vec<u8>> {
    if !matches!(name, "publish" | "spublish") {
        return None;
    }
    let channel = argv.get(1)?;
    // SAFETY: the lock is held; `channel` lives across the call.
    let refused = unsafe {
        raw::RedisModule_ACLCheckChannelPermissions
            .is_some_and(|check| check(user.0.as_ptr(), channel.inner, 1) != raw::REDISMODULE_OK as c_int)
    };
    refused.then(|| channel.as_slice().to_vec())
}

/// DEBUG and MODULE, which Redis refuses to clients unless `enable-debug-command` /
/// `enable-module-command` allow them. A script is never a local connection, so only `yes` lets
/// it run them (RM_Call itself does not check).
pub fn protected(ctx: &Context, command: &str) -> Result<(), GearsError> {
    let (name, config) = if command.eq_ignore_ascii_case("debug") {
        ("DEBUG", "enable-debug-command")
    } else if command.eq_ignore_ascii_case("module") {
        ("MODULE", "enable-module-command")
    } else {
        return Ok(());
    };
    match config_value(ctx, config) {
        Some(value) if value.eq_ignore_ascii_case(b"yes") => Ok(()),
        _ => Err(GearsError::ProtectedCommand(name, config)),
    }
}

fn config_value(ctx: &Context, name: &str) -> Option<Vec<u8>> {
    use crate::reply::Reply;
    match super::call::call(ctx, &RunAs::Module, "CONFIG", &[b"GET", name.as_bytes()]) {
        Reply::Array(items) => match items.get(1) {
            Some(Reply::Bulk(value)) => Some(value.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The user of the client running the current command, or `Module` for a module's own call
/// (Redis gives such a client no user: it runs as the superuser).
pub fn client_user(ctx: &Context) -> RunAs {
    // A connected client, the common case, is found by id cheaply. The clients of RM_Call, Lua
    // and the AOF are not found; they may still run as a user, which `has_user` asks.
    // SAFETY: reading the API table resolved at load; `ctx` is a command context on the main
    // thread.
    let by_id = unsafe {
        let by_id = raw::RedisModule_GetClientUserNameById;
        let id = raw::RedisModule_GetClientId.map(|id| id(ctx.ctx));
        by_id.zip(id).map(|(by_id, id)| by_id(ctx.ctx, id))
    };
    if let Some(name) = by_id.and_then(|name| user_name(ctx, name)) {
        return name;
    }
    if !has_user(ctx) {
        return RunAs::Module;
    }
    // SAFETY: a command context whose client has a user (checked just above).
    let current = unsafe { raw::RedisModule_GetCurrentUserName.map(|current| current(ctx.ctx)) };
    current.and_then(|name| user_name(ctx, name)).unwrap_or(RunAs::Module)
}

/// A user name Redis gave (null: none), taken over: the context has no automatic memory, so the
/// string is ours to free, once, by the `RedisString` drop.
fn user_name(ctx: &Context, name: *mut raw::RedisModuleString) -> Option<RunAs> {
    NonNull::new(name)?;
    let owned = RedisString::from_redis_module_string(ctx.ctx, name);
    Some(RunAs::User(String::from_utf8_lossy(owned.as_slice()).into()))
}

/// Whether the client of `ctx` has a user: RedisModule_GetCurrentUserName dereferences it, and a
/// module's RM_Call without the `C` flag runs on a client with none. Asked through RM_Call with
/// `C`, which fails with a distinct error only then; a GET without its key fails at the arity
/// check before anything runs or is logged.
fn has_user(ctx: &Context) -> bool {
    use redis_module::{CallOptionsBuilder, CallResult, ErrorReply};
    let opts = CallOptionsBuilder::new().verify_acl().errors_as_replies().build();
    let result: CallResult<'static> = super::filter::bypassing(|| ctx.call_ext("GET", &opts, &[] as &[&[u8]]));
    !matches!(result, Err(ErrorReply::Message(ref text)) if text.contains("cannot run as user"))
}

/// True when a client may be connected without having authenticated: the default user needs a
/// password (`requirepass`), or is off. Redis shows a module no client's authentication, only its
/// user, which an unauthenticated client shares with the default user's.
pub fn default_user_needs_auth(ctx: &Context) -> bool {
    use crate::reply::Reply;
    let Reply::Array(fields) = super::call::call(ctx, &RunAs::Module, "ACL", &[b"GETUSER", b"default"]) else {
        return true;
    };
    let flags = fields.chunks(2).find(|pair| matches!(&pair[0], Reply::Bulk(name) if name == b"flags"));
    let Some([_, Reply::Array(flags)]) = flags else { return true };
    let has = |flag: &[u8]| flags.iter().any(|f| matches!(f, Reply::Bulk(f) if f == flag));
    !(has(b"on") && has(b"nopass"))
}
