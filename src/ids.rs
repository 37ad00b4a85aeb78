//! Ids of plans and executions (docs/commands.md#ids): `<shard id>-<n>`, each from its own
//! counter. Plain data that every layer may use.

/// The shard id outside cluster mode: forty zeros.
pub const SHARD_ID: &str = "0000000000000000000000000000000000000000";

/// The plan counter (docs/commands.md#ids): builders and registrations take their ids from it.
static PLANS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Takes the next plan id.
pub fn next_plan_id() -> String {
    format!("{SHARD_ID}-{}", PLANS.fetch_add(1, std::sync::atomic::Ordering::AcqRel))
}

/// Keeps the plan counter above a loaded registration's id.
pub fn plan_id_seen(id: &str) {
    if let Some(n) = id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()) {
        PLANS.fetch_max(n + 1, std::sync::atomic::Ordering::AcqRel);
    }
}
