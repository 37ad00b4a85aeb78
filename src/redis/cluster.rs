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
