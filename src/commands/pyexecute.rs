//! RG.PYEXECUTE: hands the script to a worker with the client blocked until it is answered.

use redis_module::Context;

use super::Response;
use super::parse::ExecuteOptions;
use crate::error::GearsError;
use crate::redis::blocked::BlockedClient;
use crate::redis::gil::selected_db;
use crate::registrations;
use crate::sessions::{self, NewSession};

/// A session id when none is given: 40 random hex characters.
fn random_id() -> String {
    let mut bytes = [0u8; 20];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
use crate::stop::{Abort, Reason};

/// The caller has refused unblockable contexts (before parsing, as RedisGears does).
pub fn pyexecute(ctx: &Context, script: Vec<u8>, options: ExecuteOptions) -> Result<Response, GearsError> {
    registrations::check_new_session(options.id.as_deref(), options.upgrade, options.replace_with.as_deref())?;
    if !options.requirements.is_empty() {
        return Err(GearsError::RequirementsNotSupported);
    }
    let replaced = options.replace_with.as_deref().or(options.id.as_deref().filter(|_| options.upgrade));
    if let Some((session, _)) = replaced.and_then(registrations::session)
        && !crate::redis::acl::may_manage(ctx, &session.owner)
    {
        return Err(GearsError::NotOwner(session.id));
    }
    let session = NewSession {
        id: options.id.clone().unwrap_or_else(random_id),
        desc: options.description.clone(),
        upgrade: options.upgrade,
        replace_with: options.replace_with.clone(),
        run_as: crate::redis::acl::client_user(ctx),
    };
    let script = String::from_utf8_lossy(&script).into_owned();
    let db = selected_db(ctx);
    // A client that leaves a blocking run takes its execution with it (RedisGears cannot).
    let abort = Abort::new();
    let on_disconnect = abort.clone();
    let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(Reason::Aborted));
    // If the pool is gone the visit is dropped, and dropping its client answers it.
    let _ = sessions::submit_script(script, session, db, options.unblocking, client, abort);
    Ok(Response::Blocked)
}

/// RG.TESTSYNC (a test hook, off unless the module is loaded with `TestHooks 1`): runs the script
/// and its execution on behalf of the main thread, which waits with the Redis lock held, as a
/// `sync` registration will.
pub fn test_sync(ctx: &Context, script: Vec<u8>) -> Result<Response, GearsError> {
    if !crate::config::with(|c| c.extra("TestHooks") == Some("1")) {
        return Err(GearsError::TestHooksOff);
    }
    let script = String::from_utf8_lossy(&script).into_owned();
    sessions::sync::run_script_inline(ctx, script).map(Response::Reply)
}
