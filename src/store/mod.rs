//! The narrow view of Redis that a job needs: readers scan and read keys, `execute()` calls
//! commands, `atomic()` holds Redis for a block. `redis::keyspace` implements it against the
//! real server; `MemoryStore` in memory, so plans, readers, steps and the script functions that
//! reach Redis run without a server (unit tests, fuzzing).
//!
//! The store of the job a worker runs is installed on its thread (`install`) for the duration
//! of a script body or an execution: that is where the native `execute()` and `atomic()` find it.

mod memory;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use memory::MemoryStore;

use crate::reply::Reply;

/// Whom work runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RunAs {
    /// The module itself (replaying the AOF or the replication link, internal reads): unchecked,
    /// as Redis runs its own work.
    Module,
    /// An ACL user, by name: looked up at each command, so ACL changes apply at once and a
    /// deleted user can do nothing.
    User(Arc<str>),
    /// Work whose user is unknown: every command is refused, failing closed.
    #[default]
    Nobody,
}

impl RunAs {
    pub fn user(name: &str) -> RunAs {
        RunAs::User(name.into())
    }

    /// The user's name, as registrations record it.
    pub fn name(&self) -> Option<&str> {
        match self {
            RunAs::User(name) => Some(name),
            RunAs::Module | RunAs::Nobody => None,
        }
    }
}

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
    /// Takes the store by `Rc`: an execution that waits for a future keeps its scan.
    fn keys(self: Rc<Self>, pattern: &[u8], read_value: bool) -> Box<dyn KeyPages>;
    /// One key, present or not.
    fn read(&self, key: &[u8], read_value: bool) -> KeyEntry;
    /// Runs a command (replicated), returning its reply; errors come back as `Reply::Error`.
    fn call(&self, command: &str, args: &[&[u8]]) -> Reply;
    /// Runs a command the module asks for itself (`COMMAND INFO` when a hook is registered), as
    /// the module: what it tells is not the job's user's to refuse.
    fn introspect(&self, command: &str, args: &[&[u8]]) -> Reply {
        self.call(command, args)
    }
    /// Opens an atomic block: nothing else touches the keyspace until `release`, and the writes
    /// made meanwhile replicate as one unit. False if one is open already (or cannot be).
    fn hold(&self) -> bool;
    /// Closes the atomic block, if one is open.
    fn release(&self);
    /// True inside an atomic block.
    fn holding(&self) -> bool;
    /// Whom the job runs as.
    fn run_as(&self) -> RunAs {
        RunAs::Module
    }
}

thread_local! {
    static INSTALLED: RefCell<Option<Rc<dyn Store>>> = const { RefCell::new(None) };
}

/// Makes `store` the one this thread's job uses until the guard is dropped. The previous one is
/// put back then: a script body that visits a worker runs nested in the execution it preempted.
/// An atomic block the code left open (it can, by not using `with`) is closed then: it must not
/// keep Redis locked.
pub fn install(store: Rc<dyn Store>) -> Installed {
    Installed { previous: INSTALLED.replace(Some(store.clone())), store }
}

pub struct Installed {
    previous: Option<Rc<dyn Store>>,
    store: Rc<dyn Store>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.store.release();
        INSTALLED.set(self.previous.take());
    }
}

/// The store of the job running on this thread. A clone, not a borrow: a call into it may wait
/// for the Redis lock and serve a visit meanwhile, which installs its own.
pub fn current() -> Option<Rc<dyn Store>> {
    INSTALLED.with_borrow(Clone::clone)
}

/// Redis's glob: `*`, `?`, `[...]` (with `^` and ranges) and `\` escapes, case-sensitive.
///
/// Iterative, backtracking only to the last `*`: O(pattern × text). A recursive matcher takes
/// exponential time on patterns like `*a*a*a*b`, and stores match while holding the Redis lock.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the text it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if let Some(next) = match_one(pattern, p, text[t]) {
            p = next;
            t += 1;
            continue;
        }
        // Mismatch: let the last `*` take one more character, or fail.
        let Some((after_star, taken)) = star else { return false };
        p = after_star;
        t = taken + 1;
        star = Some((after_star, taken + 1));
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Matches the one pattern element at `p` (not a `*`) against `c`: the index after the element
/// if it matches.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern.get(p)? {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            while i < pattern.len() && pattern[i] != b']' {
                if pattern[i] == b'\\' && i + 1 < pattern.len() {
                    matched |= pattern[i + 1] == c;
                    i += 2;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
                    let (lo, hi) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
                    matched |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    matched |= pattern[i] == c;
                    i += 1;
                }
            }
            // An unclosed class matches as if closed at the end, as Redis does.
            (matched != negate).then_some((i + 1).min(pattern.len()))
        }
        &literal => (literal == c).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn pathological_patterns_are_linear() {
        // Exponential for a recursive matcher: 2^40 ways to split the text.
        let pattern = [b"*a".repeat(40), b"b".to_vec()].concat();
        assert!(!glob_match(&pattern, &b"a".repeat(5000)));
    }

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
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"a"));
        assert!(glob_match(b"**", b""));
        assert!(glob_match(b"a*b*c", b"aXbYc"));
        assert!(!glob_match(b"a*b*c", b"aXbY"));
        assert!(glob_match(b"*[0-9]", b"key7"));
        assert!(glob_match(b"h[ae", b"ha"), "an unclosed class closes at the end");
        assert!(glob_match(b"a\\", b"a\\"), "a trailing backslash is literal");
    }
}
