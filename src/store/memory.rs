//! A keyspace in memory, for running jobs without a server (unit tests, fuzzing). It knows the
//! few commands that tests need to observe a script's writes; the others fail as unknown.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use super::{KeyEntry, KeyPages, KeyValue, Store, glob_match};
use crate::reply::Reply;

/// Keys per page of a scan, unless `with_page` says otherwise.
const MEMORY_PAGE: usize = 100;

const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

fn parse_number<T: std::str::FromStr>(arg: &[u8]) -> Option<T> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

pub struct MemoryStore {
    keys: RefCell<BTreeMap<Vec<u8>, KeyValue>>,
    page: usize,
    pages_read: Cell<usize>,
    atomic: Cell<bool>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new(Vec::<(Vec<u8>, KeyValue)>::new())
    }
}

impl MemoryStore {
    pub fn new<K: Into<Vec<u8>>>(keys: impl IntoIterator<Item = (K, KeyValue)>) -> MemoryStore {
        MemoryStore {
            keys: RefCell::new(keys.into_iter().map(|(k, v)| (k.into(), v)).collect()),
            page: MEMORY_PAGE,
            pages_read: Cell::new(0),
            atomic: Cell::new(false),
        }
    }

    /// Scans return at most `keys` keys a page (at least one).
    pub fn with_page(self, keys: usize) -> MemoryStore {
        MemoryStore { page: keys.max(1), ..self }
    }

    /// How many pages scans have returned: how far readers read.
    pub fn pages_read(&self) -> usize {
        self.pages_read.get()
    }

    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.keys.borrow().get(key).cloned()
    }

    fn run(&self, command: &str, args: &[&[u8]]) -> Result<Reply, String> {
        let name = command.to_ascii_lowercase();
        let arity =
            |ok: bool| if ok { Ok(()) } else { Err(format!("ERR wrong number of arguments for '{name}' command")) };
        let mut keys = self.keys.borrow_mut();
        match name.as_str() {
            "get" => {
                arity(args.len() == 1)?;
                match keys.get(args[0]) {
                    None => Ok(Reply::Null),
                    Some(KeyValue::String(s)) => Ok(Reply::Bulk(s.clone())),
                    Some(_) => Err(WRONG_TYPE.to_owned()),
                }
            }
            "set" => {
                arity(args.len() == 2)?;
                keys.insert(args[0].to_vec(), KeyValue::String(args[1].to_vec()));
                Ok(Reply::ok())
            }
            "del" | "exists" => {
                arity(!args.is_empty())?;
                let delete = name == "del";
                let found = args
                    .iter()
                    .filter(|key| if delete { keys.remove(**key).is_some() } else { keys.contains_key(**key) })
                    .count();
                Ok(Reply::Int(found as i64))
            }
            "incr" => {
                arity(args.len() == 1)?;
                incr(&mut keys, args[0])
            }
            "hset" => {
                arity(args.len() >= 3 && args.len() % 2 == 1)?;
                hset(&mut keys, args[0], &args[1..])
            }
            "hgetall" => {
                arity(args.len() == 1)?;
                match keys.get(args[0]) {
                    None => Ok(Reply::Array(Vec::new())),
                    Some(KeyValue::Hash(pairs)) => Ok(Reply::Array(
                        pairs.iter().flat_map(|(f, v)| [Reply::Bulk(f.clone()), Reply::Bulk(v.clone())]).collect(),
                    )),
                    Some(_) => Err(WRONG_TYPE.to_owned()),
                }
            }
            "scan" => {
                arity(!args.is_empty() && args.len() % 2 == 1)?;
                scan(&keys, args)
            }
            _ => Err(format!("ERR unknown command '{command}'")),
        }
    }
}

type Keys = BTreeMap<Vec<u8>, KeyValue>;

fn incr(keys: &mut Keys, key: &[u8]) -> Result<Reply, String> {
    let value = match keys.get(key) {
        None => 0,
        Some(KeyValue::String(s)) => parse_number::<i64>(s).ok_or(NOT_AN_INTEGER)?,
        Some(_) => return Err(WRONG_TYPE.to_owned()),
    };
    let value = value.checked_add(1).ok_or("ERR increment or decrement would overflow")?;
    keys.insert(key.to_vec(), KeyValue::String(value.to_string().into_bytes()));
    Ok(Reply::Int(value))
}

fn hset(keys: &mut Keys, key: &[u8], pairs_in: &[&[u8]]) -> Result<Reply, String> {
    let entry = keys.entry(key.to_vec()).or_insert_with(|| KeyValue::Hash(Vec::new()));
    let KeyValue::Hash(pairs) = entry else { return Err(WRONG_TYPE.to_owned()) };
    let mut added = 0;
    for pair in pairs_in.chunks_exact(2) {
        match pairs.iter_mut().find(|(field, _)| field.as_slice() == pair[0]) {
            Some((_, value)) => *value = pair[1].to_vec(),
            None => {
                pairs.push((pair[0].to_vec(), pair[1].to_vec()));
                added += 1;
            }
        }
    }
    Ok(Reply::Int(added))
}

/// `SCAN cursor [MATCH pattern] [COUNT n]`, the cursor being how many keys were passed.
fn scan(keys: &Keys, args: &[&[u8]]) -> Result<Reply, String> {
    let cursor = parse_number::<usize>(args[0]).ok_or("ERR invalid cursor")?;
    let (mut pattern, mut count) = (b"*".as_slice(), 10);
    for option in args[1..].chunks_exact(2) {
        match option[0].to_ascii_lowercase().as_slice() {
            b"match" => pattern = option[1],
            b"count" => {
                count = parse_number::<usize>(option[1]).filter(|n| *n > 0).ok_or(NOT_AN_INTEGER)?;
            }
            _ => return Err("ERR syntax error".to_owned()),
        }
    }
    let passed = keys.keys().skip(cursor).take(count);
    let found = passed.filter(|key| glob_match(pattern, key)).map(|key| Reply::Bulk(key.clone())).collect();
    let next = cursor.saturating_add(count);
    let next = if next >= keys.len() { 0 } else { next };
    Ok(Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(found)]))
}

/// A scan in key order that resumes after the last key it returned, so that keys written
/// between pages are seen or not, as with SCAN, and each page borrows the keyspace only while
/// it is read.
struct MemoryPages<O> {
    owner: Rc<O>,
    /// The store inside its owner (a store that wraps one, in the tests).
    store: fn(&O) -> &MemoryStore,
    pattern: Vec<u8>,
    read_value: bool,
    after: Option<Vec<u8>>,
    done: bool,
}

impl<O> KeyPages for MemoryPages<O> {
    fn next_page(&mut self) -> Result<Option<Vec<KeyEntry>>, String> {
        if self.done {
            return Ok(None);
        }
        let store = (self.store)(&self.owner);
        let keys = store.keys.borrow();
        let from = match &self.after {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Unbounded,
        };
        let mut range = keys.range::<[u8], _>((from, Bound::Unbounded));
        let page: Vec<KeyEntry> = range
            .by_ref()
            .filter(|(key, _)| glob_match(&self.pattern, key))
            .take(store.page)
            .map(|(key, value)| KeyEntry { key: key.clone(), value: self.read_value.then(|| value.clone()) })
            .collect();
        self.done = range.next().is_none();
        self.after = page.last().map(|entry| entry.key.clone()).or(self.after.take());
        store.pages_read.set(store.pages_read.get() + 1);
        Ok(Some(page))
    }
}

impl MemoryStore {
    /// A scan of the store that `owner` holds (`store` finds it there).
    pub fn pages<O: 'static>(
        owner: Rc<O>,
        store: fn(&O) -> &MemoryStore,
        pattern: &[u8],
        read_value: bool,
    ) -> Box<dyn KeyPages> {
        Box::new(MemoryPages { owner, store, pattern: pattern.to_vec(), read_value, after: None, done: false })
    }
}

impl Store for MemoryStore {
    fn keys(self: Rc<Self>, pattern: &[u8], read_value: bool) -> Box<dyn KeyPages> {
        MemoryStore::pages(self, |s| s, pattern, read_value)
    }

    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry {
        let value = self.get(key).unwrap_or(KeyValue::Missing);
        KeyEntry { key: key.to_vec(), value: read_value.then_some(value) }
    }

    fn call(&self, command: &str, args: &[&[u8]]) -> Reply {
        self.run(command, args).unwrap_or_else(Reply::Error)
    }

    fn hold(&self) -> bool {
        !self.atomic.replace(true)
    }

    fn release(&self) {
        self.atomic.set(false);
    }

    fn holding(&self) -> bool {
        self.atomic.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> KeyValue {
        KeyValue::String(s.as_bytes().to_vec())
    }

    #[test]
    fn commands_write_and_read_back() {
        let store = MemoryStore::default();
        assert_eq!(store.call("SET", &[b"a", b"1"]), Reply::ok());
        assert_eq!(store.call("incr", &[b"a"]), Reply::Int(2));
        assert_eq!(store.call("GET", &[b"a"]), Reply::bulk("2"));
        assert_eq!(store.call("GET", &[b"nope"]), Reply::Null);
        assert_eq!(store.call("HSET", &[b"h", b"f", b"v", b"g", b"w"]), Reply::Int(2));
        assert_eq!(store.call("HSET", &[b"h", b"f", b"x"]), Reply::Int(0));
        assert_eq!(
            store.call("HGETALL", &[b"h"]),
            Reply::Array(vec![Reply::bulk("f"), Reply::bulk("x"), Reply::bulk("g"), Reply::bulk("w")])
        );
        assert_eq!(store.call("EXISTS", &[b"a", b"h", b"nope"]), Reply::Int(2));
        assert_eq!(store.call("DEL", &[b"a", b"nope"]), Reply::Int(1));
        assert_eq!(store.get(b"a"), None);
    }

    #[test]
    fn scan_pages_by_cursor() {
        let store = MemoryStore::new([("a1", string("1")), ("b", string("2")), ("a2", string("3"))]);
        let scan = |cursor: &[u8]| store.call("SCAN", &[cursor, b"MATCH", b"a*", b"COUNT", b"2"]);
        let page = |cursor: &str, keys: &[&str]| {
            Reply::Array(vec![Reply::bulk(cursor), Reply::Array(keys.iter().map(|k| Reply::bulk(*k)).collect())])
        };
        assert_eq!(scan(b"0"), page("2", &["a1", "a2"]));
        assert_eq!(scan(b"2"), page("0", &[]));
    }

    #[test]
    fn errors_as_redis_words_them() {
        let store = MemoryStore::new([("s", string("x")), ("h", KeyValue::Hash(Vec::new()))]);
        assert_eq!(store.call("INCR", &[b"s"]), Reply::Error(NOT_AN_INTEGER.to_owned()));
        assert_eq!(store.call("GET", &[b"h"]), Reply::Error(WRONG_TYPE.to_owned()));
        assert_eq!(store.call("HSET", &[b"s", b"f", b"v"]), Reply::Error(WRONG_TYPE.to_owned()));
        assert_eq!(store.call("GET", &[]), Reply::Error("ERR wrong number of arguments for 'get' command".to_owned()));
        assert_eq!(store.call("XADD", &[b"s"]), Reply::Error("ERR unknown command 'XADD'".to_owned()));
    }

    #[test]
    fn scans_page_by_page_and_see_keys_written_ahead() {
        let store =
            Rc::new(MemoryStore::new([("a1", string("1")), ("a2", string("2")), ("b", string("3"))]).with_page(1));
        let mut pages = store.clone().keys(b"a*", false);
        let first = pages.next_page().unwrap().unwrap();
        assert_eq!(first, vec![KeyEntry { key: b"a1".to_vec(), value: None }]);
        store.call("SET", &[b"a3", b"4"]);
        let rest: Vec<Vec<u8>> =
            std::iter::from_fn(|| pages.next_page().unwrap()).flatten().map(|entry| entry.key).collect();
        assert_eq!(rest, vec![b"a2".to_vec(), b"a3".to_vec()]);
    }

    #[test]
    fn one_atomic_block_at_a_time() {
        let store = MemoryStore::default();
        assert!(store.hold());
        assert!(store.holding());
        assert!(!store.hold());
        store.release();
        assert!(!store.holding());
    }
}
