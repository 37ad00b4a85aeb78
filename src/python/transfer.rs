//! Records as bytes, to cross to another shard: None, bool, int, float, str, bytes and lists,
//! tuples, dicts and sets of them (exactly these types: a subclass could not be rebuilt
//! faithfully on the other side). Anything else is an error naming its type, on the sending
//! shard, as RedisGears fails to serialize what it cannot pickle.

use rustpython_vm::builtins::{PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyStr, PyTuple};
use rustpython_vm::{AsObject, PyObjectRef, PyResult, VirtualMachine};

use super::convert::MAX_REPLY_DEPTH;
use crate::cluster::wire::{Reader, Writer};
use crate::error::GearsError;

const NONE: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
/// An int past 64 bits, as its decimal text.
const BIG_INT: u8 = 4;
const FLOAT: u8 = 5;
const STR: u8 = 6;
const BYTES: u8 = 7;
const LIST: u8 = 8;
const TUPLE: u8 = 9;
const DICT: u8 = 10;
const SET: u8 = 11;

/// Appends `record` to `out`; an error text if it cannot cross.
pub fn encode_record(vm: &VirtualMachine, record: &PyObjectRef, out: &mut Writer) -> Result<(), String> {
    encode(vm, record, out, MAX_REPLY_DEPTH)
}

fn encode(vm: &VirtualMachine, obj: &PyObjectRef, out: &mut Writer, depth: usize) -> Result<(), String> {
    let Some(depth) = depth.checked_sub(1) else {
        return Err(GearsError::NotSerializable("a record nested too deep".to_owned()).to_string());
    };
    let types = &vm.ctx.types;
    let class = obj.class();
    if vm.is_none(obj) {
        out.u8(NONE);
    } else if class.is(types.bool_type) {
        out.u8(if obj.is(&vm.ctx.true_value) { TRUE } else { FALSE });
    } else if class.is(types.int_type) {
        let int = obj.downcast_ref::<PyInt>().ok_or_else(|| not_serializable(obj))?;
        match int.try_to_primitive::<i64>(vm) {
            Ok(n) => out.u8(INT).u64(n as u64),
            Err(_) => out.u8(BIG_INT).text(&int.as_bigint().to_string()),
        };
    } else if class.is(types.float_type) {
        let float = obj.downcast_ref::<PyFloat>().ok_or_else(|| not_serializable(obj))?;
        out.u8(FLOAT).u64(float.to_f64().to_bits());
    } else if class.is(types.str_type) {
        let s = obj.downcast_ref::<PyStr>().ok_or_else(|| not_serializable(obj))?;
        out.u8(STR).blob(s.as_wtf8().as_bytes());
    } else if class.is(types.bytes_type) {
        let b = obj.downcast_ref::<PyBytes>().ok_or_else(|| not_serializable(obj))?;
        out.u8(BYTES).blob(b.as_bytes());
    } else if class.is(types.list_type) {
        let items = obj.downcast_ref::<PyList>().ok_or_else(|| not_serializable(obj))?.borrow_vec().to_vec();
        items_of(vm, LIST, &items, out, depth)?;
    } else if class.is(types.tuple_type) {
        let items = obj.downcast_ref::<PyTuple>().ok_or_else(|| not_serializable(obj))?.as_slice().to_vec();
        items_of(vm, TUPLE, &items, out, depth)?;
    } else if class.is(types.set_type) {
        let set = obj.downcast_ref::<PySet>().ok_or_else(|| not_serializable(obj))?;
        items_of(vm, SET, &set.elements(), out, depth)?;
    } else if class.is(types.dict_type) {
        let dict = obj.downcast_ref::<PyDict>().ok_or_else(|| not_serializable(obj))?;
        let pairs: Vec<(PyObjectRef, PyObjectRef)> = dict.into_iter().collect();
        out.u8(DICT).len(pairs.len());
        for (key, value) in &pairs {
            encode(vm, key, out, depth)?;
            encode(vm, value, out, depth)?;
        }
    } else {
        return Err(not_serializable(obj));
    }
    Ok(())
}

fn items_of(vm: &VirtualMachine, tag: u8, items: &[PyObjectRef], out: &mut Writer, depth: usize) -> Result<(), String> {
    out.u8(tag).len(items.len());
    items.iter().try_for_each(|item| encode(vm, item, out, depth))
}

fn not_serializable(obj: &PyObjectRef) -> String {
    GearsError::NotSerializable(format!("an object of type '{}'", obj.class().name())).to_string()
}

/// The records of a frame.
pub fn decode_records(vm: &VirtualMachine, frame: &[u8]) -> Result<Vec<PyObjectRef>, String> {
    let mut r = Reader::new(frame);
    let mut records = Vec::new();
    while !r.is_empty() {
        records.push(decode(vm, &mut r, MAX_REPLY_DEPTH).map_err(|e| format!("a bad record from another shard: {e}"))?);
    }
    Ok(records)
}

fn decode(vm: &VirtualMachine, r: &mut Reader, depth: usize) -> Result<PyObjectRef, String> {
    let depth = depth.checked_sub(1).ok_or("nested too deep")?;
    let ctx = &vm.ctx;
    Ok(match r.u8()? {
        NONE => ctx.none(),
        FALSE => ctx.new_bool(false).into(),
        TRUE => ctx.new_bool(true).into(),
        INT => ctx.new_int(r.u64()? as i64).into(),
        BIG_INT => {
            let text = r.text()?;
            python(vm, ctx.types.int_type.as_object().call((text,), vm))?
        }
        FLOAT => ctx.new_float(f64::from_bits(r.u64()?)).into(),
        STR => {
            let text = std::str::from_utf8(r.blob()?).map_err(|_| "a str that is not UTF-8")?;
            ctx.new_str(text).into()
        }
        BYTES => ctx.new_bytes(r.blob()?.to_vec()).into(),
        LIST => ctx.new_list(items(vm, r, depth)?).into(),
        TUPLE => ctx.new_tuple(items(vm, r, depth)?).into(),
        SET => {
            let set = python(vm, ctx.types.set_type.as_object().call((), vm))?;
            let add = python(vm, set.get_attr("add", vm))?;
            for item in items(vm, r, depth)? {
                python(vm, add.call((item,), vm))?;
            }
            set
        }
        DICT => {
            let n = r.count(2)?;
            let dict = ctx.new_dict();
            for _ in 0..n {
                let key = decode(vm, r, depth)?;
                let value = decode(vm, r, depth)?;
                python(vm, dict.set_item(&*key, value, vm))?;
            }
            dict.into()
        }
        other => return Err(format!("unknown tag {other}")),
    })
}

fn items(vm: &VirtualMachine, r: &mut Reader, depth: usize) -> Result<Vec<PyObjectRef>, String> {
    let n = r.count(1)?;
    (0..n).map(|_| decode(vm, r, depth)).collect()
}

fn python<T>(vm: &VirtualMachine, result: PyResult<T>) -> Result<T, String> {
    result.map_err(|e| super::error_text(vm, &e))
}
