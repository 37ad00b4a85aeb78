//! The narrow view of Redis that readers need. `redis::keyspace` implements it against the real
//! server; tests implement it in memory, so plans, readers and steps run without a server.

use crate::redis::reply::Reply;

/// A key's value, copied out of Redis in the same locked section that found the key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    String(Vec<u8>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    List(Vec<Vec<u8>>),
    Set,
    ZSet,
    Stream,
    Module,
    Missing,
}

impl KeyValue {
    /// The type names of RedisGears' KeysReader records (streams are `'unknown'`, sic).
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyValue::String(_) => "string",
            KeyValue::Hash(_) => "hash",
            KeyValue::List(_) => "list",
            KeyValue::Set => "set",
            KeyValue::ZSet => "zset",
            KeyValue::Stream => "unknown",
            KeyValue::Module => "module",
            KeyValue::Missing => "empty",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub key: Vec<u8>,
    /// `None` when the reader was asked not to read values.
    pub value: Option<KeyValue>,
}

/// One SCAN page: the keys found, and the cursor to continue from (0 when the scan is complete).
pub struct Page {
    pub entries: Vec<KeyEntry>,
    pub cursor: u64,
}

pub trait Store {
    /// One SCAN page of keys matching `pattern`, values read under the same lock.
    fn scan(&self, cursor: u64, pattern: &[u8], count: usize, read_value: bool) -> Result<Page, String>;
    /// One key, present or not.
    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry;
    /// Runs a command (replicated), returning its reply; errors come back as `Reply::Error`.
    fn call(&self, command: &str, args: &[&[u8]]) -> Reply;
}
