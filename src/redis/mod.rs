//! The only place that holds raw Redis pointers or talks to the Redis API from worker threads.

pub mod acl;
pub mod blocked;
pub mod call;
pub mod cluster;
pub mod command_keys;
pub mod events;
pub mod filter;
pub mod gil;
pub mod info;
pub mod keyspace;
pub mod log;
pub mod notify;
pub mod panic_hook;
pub mod rdb;
pub mod reply;
