//! A native-stack check on iterators that wrap iterators.
//!
//! `map`, `zip`, `itertools.chain`, ... fetch their next item by calling the next of the
//! iterator they wrap, in Rust, without a Python frame in between: the VM's recursion check
//! never runs, and a million of them nested (`for _ in range(10**6): it = map(f, it)`) overflow
//! the worker's stack on the first `next()`, which kills Redis. CPython has the same hole
//! (it crashes too); RustPython already checks the stack on the paths CPython checks
//! (`Py_EnterRecursiveCall`), so these slots get the same check: past the soft limit of the
//! stack, `next()` raises RecursionError.
//!
//! Builtin types live in the thread's genesis context (rustpython-vm is built without its
//! `threading` feature), so each worker thread patches its own; a VM rebuilt on the same thread
//! finds them patched already.

use std::sync::OnceLock;

use rustpython_vm::builtins::PyType;
use rustpython_vm::protocol::PyIterReturn;
use rustpython_vm::{PyObject, PyObjectRef, PyResult, VirtualMachine};

type IterNext = fn(&PyObject, &VirtualMachine) -> PyResult<PyIterReturn>;

/// Builtins whose instances hold another iterator and pull from it natively.
const BUILTIN_WRAPPERS: &[&str] = &["map", "filter", "zip", "enumerate"];
/// The same in `itertools`.
const ITERTOOLS_WRAPPERS: &[&str] = &[
    "chain",
    "compress",
    "cycle",
    "starmap",
    "takewhile",
    "dropwhile",
    "groupby",
    "islice",
    "filterfalse",
    "accumulate",
    "zip_longest",
    "pairwise",
    "batched",
];
/// Wrapping types that are not exported under a name, reached through an instance.
const UNNAMED_WRAPPERS: &[&str] = &[
    "type(next(__import__('itertools').groupby([1]))[1])",
    "type(__import__('itertools').tee([1])[0])",
    "type(iter(int, 1))",
];

/// One guarded slot per wrapped type, by its position in the lists above: a fn pointer cannot
/// capture the original it calls, so each position is its own monomorphised function. The
/// originals are the same code on every thread.
const GUARDED_SLOTS: usize = 32;
static ORIGINALS: [OnceLock<IterNext>; GUARDED_SLOTS] = [const { OnceLock::new() }; GUARDED_SLOTS];

fn guarded_next<const N: usize>(zelf: &PyObject, vm: &VirtualMachine) -> PyResult<PyIterReturn> {
    match ORIGINALS[N].get() {
        Some(next) => vm.with_recursion("while iterating", || next(zelf, vm)),
        None => Err(vm.new_system_error("iterator slot not initialised")),
    }
}

const GUARDED: [IterNext; GUARDED_SLOTS] = {
    macro_rules! table {
        ($($n:literal)*) => { [$(guarded_next::<$n>),*] };
    }
    table!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
};

/// Patches the wrapping iterator types of this thread; types already patched (by an earlier VM
/// on this thread) are left as they are.
pub fn guard_iterators(vm: &VirtualMachine) -> PyResult<()> {
    let itertools = vm.import("itertools", 0)?;
    let mut types: Vec<PyObjectRef> = Vec::new();
    for name in BUILTIN_WRAPPERS {
        types.push(vm.builtins.get_attr(*name, vm)?);
    }
    for name in ITERTOOLS_WRAPPERS {
        types.push(itertools.get_attr(*name, vm)?);
    }
    for expr in UNNAMED_WRAPPERS {
        types.push(vm.run_block_expr(vm.new_scope_with_builtins(), expr)?);
    }

    for (n, ty) in types.into_iter().enumerate() {
        let ty =
            ty.downcast::<PyType>().map_err(|o| vm.new_type_error(format!("{} is not a type", o.class().name())))?;
        let (Some(guarded), Some(current)) = (GUARDED.get(n), ty.slots.iternext.load()) else {
            return Err(vm.new_system_error(format!("cannot guard the iterator type {}", ty.name())));
        };
        // The first thread to get here records the original; on a VM rebuilt on a thread whose
        // types are guarded already, `current` is the guard and is not recorded.
        ORIGINALS[n].get_or_init(|| current);
        ty.slots.iternext.store(Some(*guarded));
    }
    Ok(())
}
