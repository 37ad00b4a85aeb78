//! `zlib` with bounded decompression.
//!
//! One call into RustPython's native zlib inflates as much as the data says, and a few kilobytes
//! of compressed zeros say gigabytes; the memory budget is only checked between bytecode
//! instructions, so that call would run to the end (or to the OOM killer). Scripts therefore get
//! the native module with its inflating entry points replaced by versions that inflate in chunks
//! and stop with MemoryError once the output of one call would exceed `MAX_OUTPUT`, or what is
//! left of the worker's `PythonMemoryLimit`: `zlib.decompress`, `Decompress.decompress` without
//! a `max_length` (or with one above the cap) and `Decompress.flush`. The native methods they
//! call are held only here. `_ZlibDecompressor`, which no bundled module uses, is removed.
//!
//! The module is built from its definition here, not registered, so `import zlib` reaches only
//! the frozen `zlib` stand-in, which hands out this module (`_redisgears.zlib`).

use std::cell::{OnceCell, RefCell};

use rustpython_vm::builtins::{PyBaseExceptionRef, PyBytes, PyInt, PyType};
use rustpython_vm::function::{FuncArgs, ItemDoc, OptionalArg, PyMethodFlags};
use rustpython_vm::{AsObject, FromArgs, PyObjectRef, PyRef, PyResult, VirtualMachine};

/// The most one call may inflate: 256 MiB.
pub const MAX_OUTPUT: usize = 256 << 20;
/// What one native call inflates at most.
const CHUNK: usize = 1 << 20;
/// zlib's own message for a stream that ends early.
const TRUNCATED: &str = "Error -5 while decompressing data: incomplete or truncated stream";

/// The original methods of `zlib.Decompress`.
struct Methods {
    decompress: PyObjectRef,
    flush: PyObjectRef,
}

thread_local! {
    /// `Decompress` is a static type, one per thread and shared by every VM built on it: its
    /// methods are recorded and replaced once.
    static METHODS: OnceCell<Methods> = const { OnceCell::new() };
    /// The native `decompressobj` and `error` of the VM last built on this thread.
    static MODULE: RefCell<Option<(PyObjectRef, PyObjectRef)>> = const { RefCell::new(None) };
}

/// Builds the bounded zlib module of this VM and hands it to the frozen `zlib` stand-in.
pub fn install_zlib(vm: &VirtualMachine, native: &PyObjectRef) -> PyResult<()> {
    let defs = rustpython_stdlib::stdlib_module_defs(&vm.ctx);
    let Some(def) = defs.into_iter().find(|d| d.name.as_str() == "zlib") else {
        return Err(vm.new_system_error("zlib is not compiled in"));
    };
    let module = def.create_module(vm)?;
    def.exec_module(vm, &module)?;
    let module: PyObjectRef = module.into();
    let decompressobj = module.get_attr("decompressobj", vm)?;
    let error = module.get_attr("error", vm)?;
    MODULE.with_borrow_mut(|m| *m = Some((decompressobj.clone(), error)));
    let sample = decompressobj.call((), vm)?;
    patch_type(vm, sample.class().to_owned())?;
    let decompress = vm.ctx.new_method_def("decompress", decompress, PyMethodFlags::empty(), ItemDoc::NONE);
    module.set_attr("decompress", decompress.build_function(vm, None), vm)?;
    module.del_attr("_ZlibDecompressor", vm)?;
    native.set_attr("zlib", module, vm)
}

/// Replaces `Decompress.decompress` and `Decompress.flush`, the first time on this thread.
fn patch_type(vm: &VirtualMachine, class: PyRef<PyType>) -> PyResult<()> {
    if METHODS.with(|m| m.get().is_some()) {
        return Ok(());
    }
    let original = |name: &'static str| {
        class
            .get_attr(vm.ctx.intern_str(name))
            .ok_or_else(|| vm.new_attribute_error(format!("Decompress.{name} is missing")))
    };
    let methods = Methods { decompress: original("decompress")?, flush: original("flush")? };
    METHODS.with(|m| {
        m.get_or_init(|| methods);
    });
    // A static type lives as long as its thread: one more reference to it leaks nothing.
    let class = PyRef::leak(class);
    let replacements = [
        ("decompress", vm.ctx.new_method_def("decompress", method_decompress, PyMethodFlags::METHOD, ItemDoc::NONE)),
        ("flush", vm.ctx.new_method_def("flush", method_flush, PyMethodFlags::METHOD, ItemDoc::NONE)),
    ];
    for (name, def) in replacements {
        class.set_attr(vm.ctx.intern_str(name), def.build_method(class, vm).into());
    }
    Ok(())
}

fn with_methods<R>(vm: &VirtualMachine, f: impl FnOnce(&Methods) -> PyResult<R>) -> PyResult<R> {
    METHODS.with(|m| match m.get() {
        Some(methods) => f(methods),
        None => Err(vm.new_system_error("zlib is not initialised")),
    })
}

fn module_parts(vm: &VirtualMachine) -> PyResult<(PyObjectRef, PyObjectRef)> {
    MODULE.with_borrow(Clone::clone).ok_or_else(|| vm.new_system_error("zlib is not initialised"))
}

fn too_much(vm: &VirtualMachine, what: &str) -> PyBaseExceptionRef {
    vm.new_memory_error(format!("zlib: decompressed data exceeds {what}"))
}

/// Makes room for `more` bytes in `out`, growing it as `Vec` would, if the new buffer fits in
/// the budget (the old one is still held while it is copied).
fn grow(vm: &VirtualMachine, out: &mut Vec<u8>, more: usize) -> PyResult<()> {
    let needed = out.len() + more;
    if needed <= out.capacity() {
        return Ok(());
    }
    let capacity = needed.max(out.capacity() * 2).min(MAX_OUTPUT);
    if !crate::memory::fits(capacity) {
        return Err(too_much(vm, "the Python memory limit"));
    }
    out.reserve_exact(capacity - out.len());
    Ok(())
}

/// Inflates `input` through `obj` into `out`, a chunk per native call, until the input is used
/// up and nothing is pending, or the stream ends.
fn drain(vm: &VirtualMachine, obj: &PyObjectRef, mut input: PyObjectRef, out: &mut Vec<u8>) -> PyResult<()> {
    with_methods(vm, |methods| {
        // What was left of the input after the previous call: a call that neither consumed nor
        // produced anything has stalled (the native method reports real errors itself).
        let mut previous = None;
        loop {
            let chunk = methods.decompress.call((obj.clone(), input, CHUNK), vm)?;
            let chunk = chunk
                .downcast::<PyBytes>()
                .map_err(|_| vm.new_type_error("Decompress.decompress must return bytes"))?;
            let bytes = chunk.as_bytes();
            if out.len() + bytes.len() > MAX_OUTPUT {
                return Err(too_much(
                    vm,
                    &format!("{MAX_OUTPUT} bytes, the most one zlib call may produce in the rustgears sandbox"),
                ));
            }
            grow(vm, out, bytes.len())?;
            out.extend_from_slice(bytes);
            if obj.get_attr("eof", vm)?.try_to_bool(vm)? {
                return Ok(());
            }
            let tail = obj.get_attr("unconsumed_tail", vm)?;
            let left = tail.length(vm)?;
            let stalled = bytes.is_empty() && previous == Some(left);
            previous = Some(left);
            if stalled || (left == 0 && bytes.len() < CHUNK) {
                return Ok(());
            }
            input = tail;
        }
    })
}

#[derive(FromArgs)]
struct DecompressArgs {
    #[pyarg(positional)]
    data: PyObjectRef,
    #[pyarg(any, optional)]
    wbits: OptionalArg<PyObjectRef>,
    #[pyarg(any, optional)]
    bufsize: OptionalArg<isize>,
}

/// `zlib.decompress(data, /, wbits=MAX_WBITS, bufsize=DEF_BUF_SIZE)`.
fn decompress(args: DecompressArgs, vm: &VirtualMachine) -> PyResult {
    if matches!(args.bufsize, OptionalArg::Present(n) if n < 0) {
        return Err(vm.new_value_error("bufsize must be non-negative"));
    }
    let (decompressobj, error) = module_parts(vm)?;
    let mut call = FuncArgs::default();
    if let OptionalArg::Present(wbits) = args.wbits {
        call.args.push(wbits);
    }
    let obj = decompressobj.call(call, vm)?;
    let mut out = Vec::new();
    drain(vm, &obj, args.data, &mut out)?;
    if !obj.get_attr("eof", vm)?.try_to_bool(vm)? {
        let error = error.downcast::<PyType>().map_err(|_| vm.new_type_error("zlib.error is not a type"))?;
        return Err(vm.new_exception_msg(error, TRUNCATED.into()));
    }
    Ok(vm.ctx.new_bytes(out).into())
}

/// `Decompress.decompress(data, /, max_length=0)`: a `max_length` up to the cap is the native
/// call's own bound.
fn method_decompress(
    zelf: PyObjectRef,
    data: PyObjectRef,
    max_length: OptionalArg<PyObjectRef>,
    vm: &VirtualMachine,
) -> PyResult {
    if let OptionalArg::Present(n) = max_length {
        let unbounded = n
            .downcast_ref::<PyInt>()
            .and_then(|i| i.try_to_primitive::<i64>(vm).ok())
            .is_some_and(|i| i == 0 || i > MAX_OUTPUT as i64);
        // Otherwise a bound of its own, or invalid (negative, not an int): the native method's.
        if !unbounded {
            return with_methods(vm, |m| m.decompress.call((zelf, data, n), vm));
        }
    }
    let mut out = Vec::new();
    drain(vm, &zelf, data, &mut out)?;
    Ok(vm.ctx.new_bytes(out).into())
}

/// `Decompress.flush(length=DEF_BUF_SIZE, /)`: the native flush inflates all of
/// `unconsumed_tail` at once, so that goes through `drain` first.
fn method_flush(zelf: PyObjectRef, length: OptionalArg<PyObjectRef>, vm: &VirtualMachine) -> PyResult {
    let mut out = Vec::new();
    if !zelf.get_attr("eof", vm)?.try_to_bool(vm)? {
        let tail = zelf.get_attr("unconsumed_tail", vm)?;
        drain(vm, &zelf, tail, &mut out)?;
    }
    let mut call = FuncArgs::from(vec![zelf]);
    if let OptionalArg::Present(length) = length {
        call.args.push(length);
    }
    let rest = with_methods(vm, |m| m.flush.call(call, vm))?;
    let rest = rest.downcast::<PyBytes>().map_err(|_| vm.new_type_error("Decompress.flush must return bytes"))?;
    if out.is_empty() {
        return Ok(rest.into());
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(vm.ctx.new_bytes(out).into())
}
