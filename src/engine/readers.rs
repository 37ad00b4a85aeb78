//! Readers: where an execution's records come from. Records are produced one at a time so that
//! the pipeline can stop reading as soon as an error or a limit says so.

use std::collections::VecDeque;
use std::rc::Rc;

use rustpython_vm::builtins::PyBytes;
use rustpython_vm::protocol::{PyIter, PyIterReturn};
use rustpython_vm::{PyObjectRef, VirtualMachine};

use super::plan::ReaderSpec;
use crate::python::transfer::decode_records;
use crate::python::{call_callback, error_text, fields, redis_string};
use crate::reply::Reply;
use crate::store::{KeyEntry, KeyPages, KeyValue, Store};

pub trait Reader {
    /// The next record, `None` at the end, or the error text that ends the reader.
    fn next(&mut self, vm: &VirtualMachine) -> Result<Option<PyObjectRef>, String>;

    /// Counts the records left without making them, where the reader can; `stop` is asked
    /// between batches. `None`: this reader cannot, use `next`.
    fn count_rest(&mut self, _stop: &dyn Fn() -> bool) -> Option<Result<usize, String>> {
        None
    }
}

/// `count_only`: the plan only counts records, so values need not be read.
pub fn open(spec: ReaderSpec, store: Rc<dyn Store>, count_only: bool) -> Box<dyn Reader> {
    match spec {
        ReaderSpec::Keys { pattern, no_scan, read_value, event } => {
            let read_value = read_value && !count_only;
            let source = if no_scan {
                KeySource::Exact(Some(store.read(&pattern, read_value)))
            } else {
                KeySource::Scan(store.keys(&pattern, read_value))
            };
            Box::new(KeysReader { source, buffer: VecDeque::new(), event })
        }
        ReaderSpec::Stream { key, from_id } => {
            Box::new(StreamReader { store, key, last_id: from_id, buffer: VecDeque::new(), done: false })
        }
        ReaderSpec::ShardsId => Box::new(ShardsIdReader { done: false }),
        ReaderSpec::Python(function) => Box::new(PythonReader { function: Some(function), iterator: None }),
        ReaderSpec::Records(records) => Box::new(PythonReader { function: None, iterator: Some(records) }),
        ReaderSpec::Frames { kept, frames } => Box::new(FramesReader {
            kept: PythonReader { function: None, iterator: Some(kept) },
            frames: frames.into(),
            decoded: VecDeque::new(),
        }),
    }
}

/// A distributed execution's stage input: what stayed here, then what other shards sent, one
/// frame decoded at a time (a stage that streams, like `count()` after `collect()`, then never
/// holds every record at once).
struct FramesReader {
    kept: PythonReader,
    frames: VecDeque<PyObjectRef>,
    decoded: VecDeque<PyObjectRef>,
}

impl Reader for FramesReader {
    fn next(&mut self, vm: &VirtualMachine) -> Result<Option<PyObjectRef>, String> {
        if let Some(record) = self.kept.next(vm)? {
            return Ok(Some(record));
        }
        while self.decoded.is_empty() {
            let Some(frame) = self.frames.pop_front() else { return Ok(None) };
            let bytes = frame.downcast_ref::<PyBytes>().ok_or("a frame must be bytes")?;
            self.decoded.extend(decode_records(vm, bytes.as_bytes())?);
        }
        Ok(self.decoded.pop_front())
    }
}

enum KeySource {
    /// `noScan`: the one key, read even if absent.
    Exact(Option<KeyEntry>),
    Scan(Box<dyn KeyPages>),
}

struct KeysReader {
    source: KeySource,
    buffer: VecDeque<KeyEntry>,
    event: Option<Vec<u8>>,
}

impl KeysReader {
    /// Refills the buffer; it stays empty only at the end.
    fn fill(&mut self) -> Result<(), String> {
        while self.buffer.is_empty() {
            let next = match &mut self.source {
                KeySource::Exact(entry) => entry.take().map(|e| vec![e]),
                KeySource::Scan(pages) => pages.next_page()?,
            };
            match next {
                Some(page) => self.buffer.extend(page),
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

impl Reader for KeysReader {
    fn next(&mut self, vm: &VirtualMachine) -> Result<Option<PyObjectRef>, String> {
        self.fill()?;
        match self.buffer.pop_front() {
            Some(entry) => key_record(entry, self.event.clone(), vm).map(Some).map_err(|e| error_text(vm, &e)),
            None => Ok(None),
        }
    }

    fn count_rest(&mut self, stop: &dyn Fn() -> bool) -> Option<Result<usize, String>> {
        let mut n = std::mem::take(&mut self.buffer).len();
        let KeySource::Scan(pages) = &mut self.source else { return None };
        while !stop() {
            match pages.count_page() {
                Ok(Some(page)) => n += page,
                Ok(None) => break,
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(n))
    }
}

/// The KeysReader record `{'key', 'value', 'type', 'event'}`, or `{'key', 'event'}` when values
/// are not read.
fn key_record(entry: KeyEntry, event: Option<Vec<u8>>, vm: &VirtualMachine) -> rustpython_vm::PyResult<PyObjectRef> {
    let names = fields(vm);
    let dict = vm.ctx.new_dict();
    dict.set_item(names.key, redis_string(entry.key, vm), vm)?;
    if let Some(value) = entry.value {
        let type_name = value.type_name();
        let value = match value {
            KeyValue::String(s) => redis_string(s, vm),
            KeyValue::Hash(pairs) => {
                let hash = vm.ctx.new_dict();
                for (field, v) in pairs {
                    hash.set_item(&*redis_string(field, vm), redis_string(v, vm), vm)?;
                }
                hash.into()
            }
            KeyValue::List(items) => vm.ctx.new_list(items.into_iter().map(|i| redis_string(i, vm)).collect()).into(),
            _ => vm.ctx.none(),
        };
        dict.set_item(names.value, value, vm)?;
        dict.set_item(names.type_, vm.ctx.intern_str(type_name).to_owned().into(), vm)?;
    }
    let event = event.map_or_else(|| vm.ctx.none(), |e| redis_string(e, vm));
    dict.set_item(names.event, event, vm)?;
    Ok(dict.into())
}

/// `XREAD STREAMS <key> <fromId>`, a page at a time: every entry after `fromId`.
struct StreamReader {
    store: Rc<dyn Store>,
    key: Vec<u8>,
    last_id: Vec<u8>,
    buffer: VecDeque<(Vec<u8>, Vec<Reply>)>,
    done: bool,
}

/// Entries per XREAD: one page is read under one Redis lock.
const XREAD_COUNT: &[u8] = b"1000";

impl StreamReader {
    fn fill(&mut self) -> Result<(), String> {
        if !self.buffer.is_empty() || self.done {
            return Ok(());
        }
        let args: [&[u8]; 5] = [b"COUNT", XREAD_COUNT, b"STREAMS", &self.key, &self.last_id];
        let entries = match self.store.call("XREAD", &args) {
            Reply::Error(e) => return Err(e),
            // [[key, [[id, [field, value, ...]], ...]]]
            Reply::Array(mut streams) => match streams.pop() {
                Some(Reply::Array(mut stream)) if stream.len() == 2 => match stream.pop() {
                    Some(Reply::Array(entries)) => entries,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        self.done = entries.is_empty();
        for entry in entries {
            if let Reply::Array(mut parts) = entry
                && let (Some(Reply::Array(fields)), Some(Reply::Bulk(id))) = (parts.pop(), parts.pop())
            {
                self.last_id = id.clone();
                self.buffer.push_back((id, fields));
            }
        }
        Ok(())
    }
}

impl Reader for StreamReader {
    fn next(&mut self, vm: &VirtualMachine) -> Result<Option<PyObjectRef>, String> {
        self.fill()?;
        let Some((id, fields)) = self.buffer.pop_front() else { return Ok(None) };
        stream_record(vm, &self.key, id, fields).map(Some).map_err(|e| error_text(vm, &e))
    }
}

/// `{'key': stream, 'id': 'ms-seq', 'value': {field: value, ...}}`.
pub fn stream_record(
    vm: &VirtualMachine,
    key: &[u8],
    id: Vec<u8>,
    pairs: Vec<Reply>,
) -> rustpython_vm::PyResult<PyObjectRef> {
    let value = vm.ctx.new_dict();
    let mut pairs = pairs.into_iter();
    while let (Some(Reply::Bulk(f)), Some(Reply::Bulk(v))) = (pairs.next(), pairs.next()) {
        value.set_item(&*redis_string(f, vm), redis_string(v, vm), vm)?;
    }
    let names = fields(vm);
    let record = vm.ctx.new_dict();
    record.set_item(names.key, redis_string(key.to_vec(), vm), vm)?;
    record.set_item(names.id, redis_string(id, vm), vm)?;
    record.set_item(names.value, value.into(), vm)?;
    Ok(record.into())
}

struct ShardsIdReader {
    done: bool,
}

impl Reader for ShardsIdReader {
    fn next(&mut self, vm: &VirtualMachine) -> Result<Option<PyObjectRef>, String> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        Ok(Some(vm.ctx.new_str(crate::ids::reader_id()).into()))
    }
}

/// Calls the function once; an iterator's items are the records, anything else is one record.
/// (RedisGears would call a non-generator function forever.)
struct PythonReader {
    function: Option<PyObjectRef>,
    iterator: Option<PyObjectRef>,
}

impl Reader for PythonReader {
    fn next(&mut self, vm: &VirtualMachine) -> Result<Option<PyObjectRef>, String> {
        if let Some(function) = self.function.take() {
            let value = call_callback(vm, &function, ()).map_err(|e| error_text(vm, &e))?;
            if value.class().has_attr(vm.ctx.intern_str("__next__")) {
                self.iterator = Some(value);
            } else {
                return Ok(Some(value));
            }
        }
        let Some(iterator) = &self.iterator else { return Ok(None) };
        match PyIter::new(iterator.clone()).next(vm) {
            Ok(PyIterReturn::Return(record)) => Ok(Some(record)),
            Ok(PyIterReturn::StopIteration(_)) => {
                self.iterator = None;
                Ok(None)
            }
            Err(e) => {
                self.iterator = None;
                Err(error_text(vm, &e))
            }
        }
    }
}
