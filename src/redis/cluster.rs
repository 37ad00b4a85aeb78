//! What Redis Cluster says of this node through the module API.

use redis_module::raw;

/// This node's cluster id (40 characters), if cluster mode is enabled. Main thread, or with the
/// lock held.
pub fn my_node_id() -> Option<String> {
    // SAFETY: the API table was filled by RedisModule_Init. RM_GetMyClusterID returns NULL outside
    // cluster mode, else the node's name: REDISMODULE_NODE_ID_LEN bytes owned by the server (not
    // NUL-terminated), valid while the lock is held, which the callers hold; they are copied at once.
    let id = unsafe {
        let ptr = raw::RedisModule_GetMyClusterID?();
        if ptr.is_null() {
            return None;
        }
        std::slice::from_raw_parts(ptr.cast::<u8>(), raw::REDISMODULE_NODE_ID_LEN as usize)
    };
    Some(String::from_utf8_lossy(id).into_owned())
}

/// What handles a message from a peer: given the receiving context, the sender's node id and
/// the message's bytes. Runs on the main thread: it only copies what it needs.
pub type Receiver = fn(&redis_module::Context, &str, &[u8]);

static RECEIVER: std::sync::OnceLock<Receiver> = std::sync::OnceLock::new();

/// The bus message type of rustgears' messages. Every module named `rg` shares the bus's module
/// id, so messages also start with `cluster::message`'s magic.
const MESSAGE_TYPE: u8 = 1;

/// Registers `receiver` for the module's messages (at load).
pub fn receive_messages(ctx: &redis_module::Context, receiver: Receiver) {
    let _ = RECEIVER.set(receiver);
    // SAFETY: called from the module's load on the main thread with its context; the callback is
    // a plain function that lives as long as the module.
    unsafe {
        if let Some(register) = raw::RedisModule_RegisterClusterMessageReceiver {
            register(ctx.ctx, MESSAGE_TYPE, Some(on_message));
        }
    }
}

/// SAFETY (callback contract): Redis calls it on the main thread with a context valid for the
/// call, the sender's id (REDISMODULE_NODE_ID_LEN bytes) and `len` bytes of payload, both valid
/// for the call.
unsafe extern "C" fn on_message(
    ctx: *mut raw::RedisModuleCtx,
    sender: *const std::ffi::c_char,
    _type: u8,
    payload: *const std::ffi::c_uchar,
    len: u32,
) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(receiver) = RECEIVER.get() else { return };
        if sender.is_null() || (payload.is_null() && len > 0) {
            return;
        }
        // SAFETY: see the callback contract; both are only read during the call.
        let (sender, payload) = unsafe {
            let sender = std::slice::from_raw_parts(sender.cast::<u8>(), raw::REDISMODULE_NODE_ID_LEN as usize);
            let payload = if len == 0 { &[][..] } else { std::slice::from_raw_parts(payload, len as usize) };
            (sender, payload)
        };
        receiver(&redis_module::Context::new(ctx), &String::from_utf8_lossy(sender), payload);
    }));
}

/// Sends `message` to the node `target` over the cluster bus. False if Redis refused (no such
/// node, or its link is down). Main thread.
pub fn send_message(ctx: &redis_module::Context, target: &str, message: &[u8]) -> bool {
    let (Ok(target), Ok(len)) = (std::ffi::CString::new(target), u32::try_from(message.len())) else { return false };
    // SAFETY: the API table was filled by RedisModule_Init; `ctx` is the caller's valid context on
    // the main thread; `target` is NUL-terminated and `message` is `len` bytes, both alive for the
    // call, which copies them.
    unsafe {
        match raw::RedisModule_SendClusterMessage {
            Some(send) => {
                send(ctx.ctx, target.as_ptr(), MESSAGE_TYPE, message.as_ptr().cast(), len) == raw::REDISMODULE_OK as i32
            }
            None => false,
        }
    }
}
