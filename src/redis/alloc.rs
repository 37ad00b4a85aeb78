//! The allocator underneath the module's accounting one (`crate::memory`): Redis's, so that the
//! module's memory shows in `used_memory`; the system's in unit tests and fuzz targets, which run
//! without Redis (Redis's allocator aborts before `RedisModule_Init`).

#[cfg(all(feature = "module", not(test)))]
pub const INNER: redis_module::alloc::RedisAlloc = redis_module::alloc::RedisAlloc;
#[cfg(not(all(feature = "module", not(test))))]
pub const INNER: std::alloc::System = std::alloc::System;
