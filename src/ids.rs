//! Ids of plans and executions (docs/commands.md#ids): `<shard id>-<n>`, each from its own
//! counter. Plain data that every layer may use.

/// The shard id outside cluster mode: forty zeros.
const STAND_ALONE: &str = "0000000000000000000000000000000000000000";

/// The node's cluster id, once it is a shard of a cluster of several masters. A node's id never
/// changes (Redis keeps it in nodes.conf), so it is set once.
static CLUSTER_SHARD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This shard's id: its node id in cluster mode, else forty zeros.
pub fn shard_id() -> &'static str {
    CLUSTER_SHARD.get().map_or(STAND_ALONE, String::as_str)
}

/// The node's id, if it has been a shard of a cluster.
pub fn cluster_shard() -> Option<&'static str> {
    CLUSTER_SHARD.get().map(String::as_str)
}

/// What ShardsIDReader yields on this shard: its node id in cluster mode, `'1'` stand-alone (as
/// RedisGears, whose stand-alone shard is numbered 1 there).
pub fn reader_id() -> &'static str {
    cluster_shard().unwrap_or("1")
}

/// This node has become a shard of a cluster: ids made from now on carry its node id.
pub fn enter_cluster(node_id: &str) {
    let _ = CLUSTER_SHARD.set(node_id.to_owned());
}

/// The plan counter (docs/commands.md#ids): builders and registrations take their ids from it.
static PLANS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Takes the next plan id.
pub fn next_plan_id() -> String {
    format!("{}-{}", shard_id(), PLANS.fetch_add(1, std::sync::atomic::Ordering::AcqRel))
}

/// Keeps the plan counter above a loaded registration's id.
pub fn plan_id_seen(id: &str) {
    if let Some(n) = id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()) {
        PLANS.fetch_max(n + 1, std::sync::atomic::Ordering::AcqRel);
    }
}
