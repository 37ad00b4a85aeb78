//! `engine::Store` against the live keyspace: every method is one locked section, so Redis keeps
//! serving clients between the pages of a long scan.

use redis_module::{Context, KeyType, RedisString};

use super::call::call;
use super::gil::with_gil;
use super::reply::Reply;
use crate::engine::store::{KeyEntry, KeyValue, Page, Store};

pub struct RedisStore {
    pub db: i32,
}

impl Store for RedisStore {
    fn scan(&self, cursor: u64, pattern: &[u8], count: usize, read_value: bool) -> Result<Page, String> {
        with_gil(self.db, |ctx| {
            let cursor = cursor.to_string();
            let count = count.to_string();
            let args: [&[u8]; 5] = [cursor.as_bytes(), b"MATCH", pattern, b"COUNT", count.as_bytes()];
            let (cursor, keys) = match call(ctx, "SCAN", &args) {
                Reply::Array(mut parts) if parts.len() == 2 => {
                    let keys = parts.pop();
                    let cursor = parts.pop();
                    match (cursor, keys) {
                        (Some(Reply::Bulk(c)), Some(Reply::Array(keys))) => (c, keys),
                        _ => return Err("ERR unexpected SCAN reply".to_owned()),
                    }
                }
                Reply::Error(e) => return Err(e),
                _ => return Err("ERR unexpected SCAN reply".to_owned()),
            };
            let cursor = std::str::from_utf8(&cursor).ok().and_then(|c| c.parse().ok()).unwrap_or(0);
            let entries = keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::Bulk(key) => Some(read_entry(ctx, key, read_value)),
                    _ => None,
                })
                // A key found by SCAN but gone by now (expired on access) is not reported.
                .filter(|e| !matches!(e.value, Some(KeyValue::Missing)))
                .collect();
            Ok(Page { entries, cursor })
        })
    }

    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry {
        with_gil(self.db, |ctx| read_entry(ctx, key.to_vec(), read_value))
    }

    fn call(&self, command: &str, args: &[&[u8]]) -> Reply {
        with_gil(self.db, |ctx| call(ctx, command, args))
    }
}

fn read_entry(ctx: &Context, key: Vec<u8>, read_value: bool) -> KeyEntry {
    if !read_value {
        return KeyEntry { key, value: None };
    }
    let value = read_value_of(ctx, &key);
    KeyEntry { key, value: Some(value) }
}

fn read_value_of(ctx: &Context, key: &[u8]) -> KeyValue {
    let name = RedisString::create_from_slice(std::ptr::null_mut(), key);
    let handle = ctx.open_key(&name);
    match handle.key_type() {
        KeyType::Empty => KeyValue::Missing,
        KeyType::String => match handle.read() {
            Ok(Some(bytes)) => KeyValue::String(bytes.to_vec()),
            _ => KeyValue::String(Vec::new()),
        },
        KeyType::Hash => {
            drop(handle);
            let flat = bulk_items(call(ctx, "HGETALL", &[key]));
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                pairs.push((f, v));
            }
            KeyValue::Hash(pairs)
        }
        KeyType::List => {
            drop(handle);
            KeyValue::List(bulk_items(call(ctx, "LRANGE", &[key, b"0", b"-1"])))
        }
        KeyType::Set => KeyValue::Set,
        KeyType::ZSet => KeyValue::ZSet,
        KeyType::Stream => KeyValue::Stream,
        KeyType::Module => KeyValue::Module,
    }
}

fn bulk_items(reply: Reply) -> Vec<Vec<u8>> {
    match reply {
        Reply::Array(items) => items
            .into_iter()
            .filter_map(|r| match r {
                Reply::Bulk(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
