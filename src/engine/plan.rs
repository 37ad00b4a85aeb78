//! A plan as the engine runs it, parsed from what the shim's `run()` recorded.

use rustpython_vm::builtins::{PyBytes, PyDict, PyInt, PyList, PyStr, PyTuple};
use rustpython_vm::{AsObject, PyObjectRef, VirtualMachine};

use crate::python::RawPlan;

pub enum ReaderSpec {
    /// `event`: the keyspace event a registration's execution was started by.
    Keys {
        pattern: Vec<u8>,
        no_scan: bool,
        read_value: bool,
        event: Option<Vec<u8>>,
    },
    Stream {
        key: Vec<u8>,
        from_id: Vec<u8>,
    },
    ShardsId,
    Python(PyObjectRef),
    /// Records made before the execution started (a trigger's arguments, a stream batch).
    Records(PyObjectRef),
    /// A stage of a distributed execution: the records kept here (an iterator), then those
    /// other shards sent, still as the frames (bytes) they came in, decoded as they are read.
    Frames {
        kept: PyObjectRef,
        frames: Vec<PyObjectRef>,
    },
}

pub enum Step {
    Map(PyObjectRef),
    Filter(PyObjectRef),
    ForEach(PyObjectRef),
    FlatMap(PyObjectRef),
    Accumulate(PyObjectRef),
    /// `repartition`: declared as `groupby` (moves records between shards in a cluster).
    LocalGroupBy {
        extractor: PyObjectRef,
        reducer: PyObjectRef,
        repartition: bool,
    },
    BatchGroupBy {
        extractor: PyObjectRef,
        reducer: PyObjectRef,
    },
    Repartition(PyObjectRef),
    Collect,
    Limit {
        length: usize,
        offset: usize,
    },
    /// `count()`: RedisGears' aggregate of `1 + a`, counted in Rust. `shown`: the shim's
    /// equivalent callbacks, reported by RG.GETEXECUTION but never called.
    Count {
        shown: Vec<PyObjectRef>,
    },
    /// `countby(e)`: RedisGears' aggregateby of `1 + a` per key, counted in Rust.
    CountBy {
        extractor: PyObjectRef,
        shown: Vec<PyObjectRef>,
    },
    /// Where the shards' `count()`s meet: the sum of the counts it is given.
    MergeCount,
    /// Where the shards' `countby()`s meet: the sum per key of the `{'key', 'value'}` counts.
    MergeCountBy,
}

pub struct Plan {
    pub reader: ReaderSpec,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The shim has validated the user's arguments; a failure here is a shim bug, reported as
    /// the execution's error rather than a crash.
    pub fn parse(vm: &VirtualMachine, raw: RawPlan) -> Result<Plan, String> {
        let reader = match raw.reader.as_str() {
            "KeysReader" => {
                let pattern = text_arg(&raw.arg, "regex argument must be a string")?;
                ReaderSpec::Keys {
                    pattern,
                    no_scan: option(vm, &raw.options, "noScan", false),
                    read_value: option(vm, &raw.options, "readValue", true),
                    event: option_text(vm, &raw.options, "event"),
                }
            }
            // A registration's keyspace event: the key, as bytes (it need not be UTF-8).
            "KeysEvent" => ReaderSpec::Keys {
                pattern: raw.arg.downcast_ref::<PyBytes>().ok_or("the event's key must be bytes")?.as_bytes().to_vec(),
                no_scan: true,
                read_value: option(vm, &raw.options, "readValue", true),
                event: option_text(vm, &raw.options, "event"),
            },
            "StreamReader" => ReaderSpec::Stream {
                key: text_arg(&raw.arg, "regex argument must be a string")?,
                from_id: option_text(vm, &raw.options, "fromId").unwrap_or_else(|| b"0-0".to_vec()),
            },
            "ShardsIDReader" => ReaderSpec::ShardsId,
            "PythonReader" => ReaderSpec::Python(raw.arg),
            "Records" => ReaderSpec::Records(raw.arg),
            "Frames" => {
                let parts = raw.arg.downcast_ref::<PyTuple>().ok_or("frames must be a tuple")?.as_slice().to_vec();
                let [kept, frames] = <[PyObjectRef; 2]>::try_from(parts).map_err(|_| "frames must be a pair")?;
                let frames = frames.downcast_ref::<PyList>().ok_or("frames must be a list")?.borrow_vec().to_vec();
                ReaderSpec::Frames { kept, frames }
            }
            other => return Err(format!("reader {other} can not run")),
        };
        let steps = raw.steps.downcast_ref::<PyList>().ok_or("steps must be a list")?;
        let steps: Vec<PyObjectRef> = steps.borrow_vec().to_vec();
        let steps = steps.iter().map(|s| step(vm, s)).collect::<Result<_, _>>()?;
        Ok(Plan { reader, steps })
    }
}

fn text_arg(arg: &PyObjectRef, error: &str) -> Result<Vec<u8>, String> {
    Ok(arg.downcast_ref::<PyStr>().ok_or(error)?.as_wtf8().as_bytes().to_vec())
}

fn option_value(vm: &VirtualMachine, options: &PyObjectRef, name: &str) -> Option<PyObjectRef> {
    options.downcast_ref::<PyDict>().and_then(|d| d.get_item_opt(name, vm).ok().flatten())
}

fn option(vm: &VirtualMachine, options: &PyObjectRef, name: &str, default: bool) -> bool {
    option_value(vm, options, name).map_or(default, |v| v.is(&vm.ctx.true_value))
}

fn option_text(vm: &VirtualMachine, options: &PyObjectRef, name: &str) -> Option<Vec<u8>> {
    option_value(vm, options, name).and_then(|v| text_arg(&v, "").ok())
}

fn step(vm: &VirtualMachine, obj: &PyObjectRef) -> Result<Step, String> {
    let tuple = obj.downcast_ref::<PyTuple>().ok_or("a step must be a tuple")?;
    let parts = tuple.as_slice();
    let name = parts.first().and_then(|n| n.downcast_ref::<PyStr>()).ok_or("a step needs a name")?;
    let arg = |i: usize| parts.get(i).cloned().ok_or_else(|| format!("step {name} is missing an argument"));
    let count = |i: usize| -> Result<usize, String> {
        let n = arg(i)?;
        let n = n.downcast_ref::<PyInt>().ok_or("limit argument must be a number")?;
        // Out-of-range counts saturate: a negative one passes nothing, a huge one everything.
        let n = n.try_to_primitive::<i64>(vm).unwrap_or(i64::MAX);
        Ok(usize::try_from(n).unwrap_or(0))
    };
    Ok(match name.to_string_lossy().as_ref() {
        "map" => Step::Map(arg(1)?),
        "filter" => Step::Filter(arg(1)?),
        "foreach" => Step::ForEach(arg(1)?),
        "flatmap" => Step::FlatMap(arg(1)?),
        "accumulate" => Step::Accumulate(arg(1)?),
        "localgroupby" => Step::LocalGroupBy { extractor: arg(1)?, reducer: arg(2)?, repartition: false },
        "groupby" => Step::LocalGroupBy { extractor: arg(1)?, reducer: arg(2)?, repartition: true },
        "batchgroupby" => Step::BatchGroupBy { extractor: arg(1)?, reducer: arg(2)? },
        "repartition" => Step::Repartition(arg(1)?),
        "collect" => Step::Collect,
        "limit" => Step::Limit { length: count(1)?, offset: count(2)? },
        "count" => Step::Count { shown: parts[1..].to_vec() },
        "countby" => Step::CountBy { extractor: arg(1)?, shown: parts[2..].to_vec() },
        "mergecount" => Step::MergeCount,
        "mergecountby" => Step::MergeCountBy,
        other => return Err(format!("unknown step {other}")),
    })
}
