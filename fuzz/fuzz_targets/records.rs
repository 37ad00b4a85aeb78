//! Redis reply → Python value → execution-result RESP: the conversions of docs/commands.md#the-results-errors-reply agree with
//! a reference model written here, for any reply tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustgears::python::{Runtime, to_python, to_reply};
use rustgears::reply::Reply;
use rustgears::stop::WorkerId;

thread_local! {
    static RUNTIME: Runtime = match Runtime::new(WorkerId::default()) {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot build an interpreter: {e}"),
    };
}

/// Decodes a reply tree from bytes; depth and width are bounded by the input's length.
fn reply(data: &mut &[u8], depth: u32) -> Reply {
    let Some((&tag, rest)) = data.split_first() else { return Reply::Null };
    *data = rest;
    let mut take = |n: usize| {
        let n = n.min(data.len());
        let (head, tail) = data.split_at(n);
        *data = tail;
        head.to_vec()
    };
    match tag % 6 {
        0 => Reply::Null,
        1 => Reply::Int(i64::from_le_bytes(take(8).try_into().unwrap_or([tag; 8]))),
        2 => Reply::Bulk(take((tag / 6) as usize % 16)),
        3 => Reply::Simple(String::from_utf8_lossy(&take((tag / 6) as usize % 16)).into_owned()),
        4 => Reply::Error(String::from_utf8_lossy(&take((tag / 6) as usize % 16)).into_owned()),
        _ if depth < 8 => Reply::Array((0..(tag / 6) % 5).map(|_| reply(data, depth + 1)).collect()),
        _ => Reply::Null,
    }
}

/// What docs/commands.md#the-results-errors-reply says the round trip gives.
fn expected(reply: &Reply) -> Reply {
    let text = |s: &str| match s.as_bytes() {
        [b'+', _, ..] => Reply::Simple(s[1..].to_owned()),
        [b'-', _, ..] => Reply::Error(s[1..].to_owned()),
        _ => Reply::Bulk(s.as_bytes().to_vec()),
    };
    match reply {
        Reply::Null => Reply::bulk("PY RECORD"),
        Reply::Int(i) => Reply::Int(*i),
        // A float record: C's `%lf`.
        Reply::Double(d) => Reply::bulk(format!("{d:.6}")),
        Reply::Bulk(b) => match std::str::from_utf8(b) {
            Ok(s) => text(s),
            Err(_) => Reply::bulk("PY RECORD"), // bytearray
        },
        Reply::Simple(s) | Reply::Error(s) => text(s),
        Reply::Array(items) => Reply::Array(items.iter().map(expected).collect()),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let original = reply(&mut input, 0);
    let back = RUNTIME.with(|rt| rt.enter(|vm| to_reply(&to_python(original.clone(), vm), vm)));
    assert_eq!(back, expected(&original));
});
