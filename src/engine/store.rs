//! The narrow view of Redis that readers need. `redis::keyspace` implements it against the real
//! server; tests implement it in memory, so plans, readers and steps run without a server.

use crate::reply::Reply;

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

/// A scan of the keyspace, a page at a time; each page is read under one Redis lock, so Redis
/// serves other clients between pages.
pub trait KeyPages {
    /// The next page (possibly empty), or `None` when the scan is complete.
    fn next_page(&mut self) -> Result<Option<Vec<KeyEntry>>, String>;

    /// How many keys the next page holds, without copying them out.
    fn count_page(&mut self) -> Result<Option<usize>, String> {
        Ok(self.next_page()?.map(|page| page.len()))
    }
}

pub trait Store {
    /// Every key matching the glob `pattern`, values read with the key.
    fn keys<'s>(&'s self, pattern: &[u8], read_value: bool) -> Box<dyn KeyPages + 's>;
    /// One key, present or not.
    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry;
    /// Runs a command (replicated), returning its reply; errors come back as `Reply::Error`.
    fn call(&self, command: &str, args: &[&[u8]]) -> Reply;
}

/// A keyspace in memory: for running plans without a server (unit tests, fuzzing).
#[derive(Default)]
pub struct MemoryStore {
    pub keys: std::collections::BTreeMap<Vec<u8>, KeyValue>,
}

/// The whole keyspace in one page.
struct OnePage(Option<Vec<KeyEntry>>);

impl KeyPages for OnePage {
    fn next_page(&mut self) -> Result<Option<Vec<KeyEntry>>, String> {
        Ok(self.0.take())
    }
}

impl Store for MemoryStore {
    fn keys<'s>(&'s self, pattern: &[u8], read_value: bool) -> Box<dyn KeyPages + 's> {
        let entries = self
            .keys
            .iter()
            .filter(|(key, _)| glob_match(pattern, key))
            .map(|(key, value)| KeyEntry { key: key.clone(), value: read_value.then(|| value.clone()) })
            .collect();
        Box::new(OnePage(Some(entries)))
    }

    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry {
        let value = self.keys.get(key).cloned().unwrap_or(KeyValue::Missing);
        KeyEntry { key: key.to_vec(), value: read_value.then_some(value) }
    }

    fn call(&self, command: &str, _args: &[&[u8]]) -> Reply {
        Reply::Error(format!("ERR unknown command '{command}'"))
    }
}

/// Redis's glob: `*`, `?`, `[...]` (with `^` and ranges) and `\` escapes, case-sensitive.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, text_rest)) = text.split_first() else { return false };
            let (negate, rest) = match rest.split_first() {
                Some((b'^', r)) => (true, r),
                _ => (false, rest),
            };
            let mut i = 0;
            let mut matched = false;
            while i < rest.len() && rest[i] != b']' {
                if rest[i] == b'\\' && i + 1 < rest.len() {
                    matched |= rest[i + 1] == c;
                    i += 2;
                } else if i + 2 < rest.len() && rest[i + 1] == b'-' && rest[i + 2] != b']' {
                    let (lo, hi) = (rest[i].min(rest[i + 2]), rest[i].max(rest[i + 2]));
                    matched |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    matched |= rest[i] == c;
                    i += 1;
                }
            }
            // An unclosed class matches as if closed at the end, as Redis does.
            let after = if i < rest.len() { &rest[i + 1..] } else { &rest[i..] };
            matched != negate && glob_match(after, text_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob_match(&rest[1..], &text[1..])
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_as_redis_matches_them() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(glob_match(b"h[ae]llo", b"hello"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"a\\*", b"a*"));
        assert!(!glob_match(b"a\\*", b"ab"));
        assert!(!glob_match(b"A*", b"a"));
    }
}
