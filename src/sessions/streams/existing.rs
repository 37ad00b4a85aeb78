//! The streams a stream registration finds when it starts (applied, loaded, unpaused, or its
//! server promoted): what they hold then is processed whatever the batch size.

use std::sync::Arc;

use redis_module::Context;

use crate::pool;
use crate::python::Runtime;
use crate::redis::gil::with_gil;
use crate::registrations::{Kind, Registration};
use crate::reply::Reply;

use super::{Drain, process_from};

/// What a scan found: the matching streams, each with how many entries it held then. Those
/// entries are processed whatever the batch size; entries added later wait for full batches.
pub type Found = Vec<(Vec<u8>, u64)>;

/// Looks for streams the registration should process (when it is loaded, unpaused or its
/// server promoted): the scan happens on the home, under the lock.
pub fn scan_existing(registration: Arc<Registration>) {
    let home = registration.home;
    pool::send(
        home,
        Box::new(move |runtime| {
            let found = with_gil(0, |ctx| existing(ctx, &registration));
            process_found(runtime, &registration, found);
        }),
    );
}

/// Processes what `existing` found when the registration was applied.
pub fn process_existing(registration: Arc<Registration>, found: Found) {
    let home = registration.home;
    pool::send(home, Box::new(move |runtime| process_found(runtime, &registration, found)));
}

pub(super) fn process_found(runtime: &Runtime, registration: &Arc<Registration>, found: Found) {
    for (key, entries) in found {
        let start = {
            let mut streams = registration.live.streams();
            let progress = streams.entry(key.clone()).or_default();
            !std::mem::replace(&mut progress.running, true)
        };
        if start {
            process_from(runtime, registration, &key, 0, Drain::Found(entries), true);
        }
    }
}

/// The streams matching a stream registration's prefix (database 0), with their lengths. The
/// caller holds the lock: what they hold now is what is processed regardless of batches.
pub fn existing(ctx: &Context, registration: &Registration) -> Found {
    let Kind::Stream { prefix, .. } = &registration.spec.kind else { return Vec::new() };
    let pattern = match prefix.strip_suffix('*') {
        Some(start) => format!("{}*", glob_escape(start)),
        None => glob_escape(prefix),
    };
    let run_as = crate::store::RunAs::Module;
    let call = |command: &str, args: &[&[u8]]| crate::redis::call::call(ctx, &run_as, command, args);
    let mut found = Vec::new();
    let mut cursor = b"0".to_vec();
    loop {
        let reply = call("SCAN", &[&cursor, b"MATCH", pattern.as_bytes(), b"COUNT", b"1000", b"TYPE", b"stream"]);
        let Reply::Array(mut parts) = reply else { break };
        let (Some(Reply::Array(keys)), Some(Reply::Bulk(next))) = (parts.pop(), parts.pop()) else { break };
        for key in keys {
            if let Reply::Bulk(key) = key
                && let Reply::Int(len) = call("XLEN", &[&key])
            {
                found.push((key, len.max(0) as u64));
            }
        }
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    found
}

fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_glob_characters() {
        assert_eq!(super::glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
