//! Conversions between Python objects and Redis data: command arguments, command replies, key
//! records, and execution results (docs/commands.md, "The [results, errors] reply").

use std::cell::OnceCell;

use rustpython_vm::builtins::{PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyStr, PyStrInterned};
use rustpython_vm::{PyObjectRef, PyPayload, PyResult, VirtualMachine};

use crate::reply::Reply;

/// The field names of records, interned once per thread: interning looks the text up in the
/// VM's string pool under a lock, and records are made by the million. Interned strings live
/// as long as the thread's genesis context, so they outlive a VM rebuilt on the same thread.
#[derive(Clone, Copy)]
pub struct Fields {
    pub key: &'static PyStrInterned,
    pub value: &'static PyStrInterned,
    pub type_: &'static PyStrInterned,
    pub event: &'static PyStrInterned,
    pub id: &'static PyStrInterned,
}

thread_local! {
    static FIELDS: OnceCell<Fields> = const { OnceCell::new() };
}

pub fn fields(vm: &VirtualMachine) -> Fields {
    FIELDS.with(|f| {
        *f.get_or_init(|| Fields {
            key: vm.ctx.intern_str("key"),
            value: vm.ctx.intern_str("value"),
            type_: vm.ctx.intern_str("type"),
            event: vm.ctx.intern_str("event"),
            id: vm.ctx.intern_str("id"),
        })
    })
}

/// A Redis string as Python sees it: `str` when it is UTF-8, else `bytearray`.
pub fn redis_string(bytes: Vec<u8>, vm: &VirtualMachine) -> PyObjectRef {
    match String::from_utf8(bytes) {
        Ok(s) => vm.ctx.new_str(s).into(),
        Err(e) => PyByteArray::from(e.into_bytes()).into_ref(&vm.ctx).into(),
    }
}

/// `execute()` arguments: bytes-like objects are passed raw, anything else as `str(arg)`.
pub fn command_arg(arg: &PyObjectRef, vm: &VirtualMachine) -> PyResult<Vec<u8>> {
    if let Some(s) = arg.downcast_ref::<PyStr>() {
        return Ok(s.as_wtf8().as_bytes().to_vec());
    }
    if let Some(b) = arg.downcast_ref::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Some(b) = arg.downcast_ref::<PyByteArray>() {
        return Ok(b.borrow_buf().to_vec());
    }
    Ok(arg.str(vm)?.as_wtf8().as_bytes().to_vec())
}

/// A command reply as Python sees it. Errors nested in arrays become plain strings; the caller
/// raises a top-level error.
pub fn to_python(reply: Reply, vm: &VirtualMachine) -> PyObjectRef {
    match reply {
        Reply::Simple(s) | Reply::Error(s) => vm.ctx.new_str(s).into(),
        Reply::Bulk(b) => redis_string(b, vm),
        Reply::Int(i) => vm.ctx.new_int(i).into(),
        Reply::Double(d) => vm.ctx.new_float(d).into(),
        Reply::Null => vm.ctx.none(),
        Reply::Array(items) => vm.ctx.new_list(items.into_iter().map(|r| to_python(r, vm)).collect()).into(),
    }
}

/// How deep lists nest in a reply. Converting, writing and freeing a reply recurse, on a thread
/// whose stack a record nested 150,000 deep (`x = [x]` in a loop) would overflow; Python's own
/// recursion limit is 1,000.
pub const MAX_REPLY_DEPTH: usize = 1000;

/// An execution result record as RESP, by RedisGears' table (docs/commands.md, "The [results, errors] reply").
/// A record with lists nested deeper than `MAX_REPLY_DEPTH` is an error instead.
pub fn to_reply(obj: &PyObjectRef, vm: &VirtualMachine) -> Reply {
    to_reply_within(obj, vm, MAX_REPLY_DEPTH)
        .unwrap_or_else(|| Reply::Error(crate::error::GearsError::NestedTooDeepReply(MAX_REPLY_DEPTH).to_string()))
}

/// `None` if lists nest deeper than `depth`.
fn to_reply_within(obj: &PyObjectRef, vm: &VirtualMachine, depth: usize) -> Option<Reply> {
    if let Some(reply) = scalar_reply(obj, vm) {
        return Some(reply);
    }
    let Some(list) = obj.downcast_ref::<PyList>() else { return Some(Reply::bulk("PY RECORD")) };
    let depth = depth.checked_sub(1)?;
    let items: Vec<PyObjectRef> = list.borrow_vec().to_vec();
    Some(Reply::Array(items.iter().map(|i| to_reply_within(i, vm, depth)).collect::<Option<_>>()?))
}

/// A record that is not a list, as RESP; `None` for a list.
fn scalar_reply(obj: &PyObjectRef, vm: &VirtualMachine) -> Option<Reply> {
    if let Some(s) = obj.downcast_ref::<PyStr>() {
        let text = s.to_string_lossy();
        return Some(match text.as_bytes() {
            [b'+', _, ..] => Reply::Simple(text[1..].to_owned()),
            [b'-', _, ..] => Reply::Error(text[1..].to_owned()),
            _ => Reply::Bulk(s.as_wtf8().as_bytes().to_vec()),
        });
    }
    if let Some(b) = obj.downcast_ref::<PyBytes>() {
        return Some(Reply::Bulk(b.as_bytes().to_vec()));
    }
    if let Some(i) = obj.downcast_ref::<PyInt>() {
        // bool is an int subclass: True → 1. RedisGears replies -1 for what does not fit.
        return Some(Reply::Int(i.try_to_primitive::<i64>(vm).unwrap_or(-1)));
    }
    if let Some(f) = obj.downcast_ref::<PyFloat>() {
        return Some(Reply::Bulk(c_double(f.to_f64()).into_bytes()));
    }
    None
}

/// C's `%lf`.
fn c_double(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".to_owned() } else { "-inf".to_owned() }
    } else {
        format!("{f:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::c_double;

    #[test]
    fn floats_as_c_formats_them() {
        assert_eq!(c_double(49.5), "49.500000");
        assert_eq!(c_double(f64::INFINITY), "inf");
        assert_eq!(c_double(-0.25), "-0.250000");
    }
}
