//! Source size bounds for everything that compiles text, and a way around a compiler panic.
//!
//! RustPython's compiler recurses on nesting in the source (`-` chains, `not` chains, lambdas)
//! and a deep enough chain overflows even a 256 MiB worker stack: a segfault that takes Redis
//! down. Measured on this build: every 1 MiB shape we tried ends in RecursionError, 10 MiB of
//! `-` crashes. So nothing larger than `MAX_SOURCE` reaches the compiler, whether it comes as
//! the RG.PYEXECUTE script or through `compile`, `eval` or `exec`, whose builtins are replaced
//! by these guarded versions (the originals live only here, out of reach of scripts).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ruff_python_parser::ParseOptions;
use rustpython_vm::builtins::{PyByteArray, PyBytes, PyMemoryView, PyStr};
use rustpython_vm::function::FuncArgs;
use rustpython_vm::{PyObjectRef, PyResult, VirtualMachine};

pub const MAX_SOURCE: usize = 1 << 20;

/// The source to hand to the compiler. RustPython 0.6 scans string literals for invalid escapes
/// before parsing, assuming each ends with its quote; in an unterminated one (`'é`, `f'{0:é'`)
/// it slices inside a multi-byte character and panics (fuzz-found). Only sources that fail to
/// parse can hold such a literal, and an all-ASCII one cannot split a character, so a failing
/// non-ASCII source is compiled with every non-ASCII character masked by as many `?` bytes:
/// byte offsets, and so the SyntaxError's position and message, stay the same.
pub fn compilable(source: &str) -> Cow<'_, str> {
    if source.is_ascii() {
        return Cow::Borrowed(source);
    }
    let parsed = ruff_python_parser::parse_unchecked(source, ParseOptions::from(ruff_python_parser::Mode::Module));
    if parsed.has_valid_syntax() {
        return Cow::Borrowed(source);
    }
    Cow::Owned(
        source.chars().flat_map(|c| std::iter::repeat_n(if c.is_ascii() { c } else { '?' }, c.len_utf8())).collect(),
    )
}

thread_local! {
    static UNGUARDED_BUILTINS: RefCell<Vec<(&'static str, PyObjectRef)>> = const { RefCell::new(Vec::new()) };
    static POISONED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a panic was contained on this thread's VM since it was built.
pub fn poisoned() -> bool {
    POISONED.get()
}

pub fn too_large(len: usize) -> Option<String> {
    (len > MAX_SOURCE).then(|| format!("source code of {len} bytes exceeds the limit of {MAX_SOURCE} bytes"))
}

fn source_len(obj: &PyObjectRef, vm: &VirtualMachine) -> Option<usize> {
    if let Some(s) = obj.downcast_ref::<PyStr>() {
        return Some(s.as_wtf8().len());
    }
    if let Some(b) = obj.downcast_ref::<PyBytes>() {
        return Some(b.as_bytes().len());
    }
    if let Some(b) = obj.downcast_ref::<PyByteArray>() {
        return Some(b.borrow_buf().len());
    }
    obj.downcast_ref::<PyMemoryView>()?;
    obj.get_attr("nbytes", vm).ok()?.try_into_value::<usize>(vm).ok()
}

/// Calls the original builtin `name` after checking the size of its source argument.
pub fn call_checked(name: &'static str, mut args: FuncArgs, vm: &VirtualMachine) -> PyResult {
    let source = args.args.first().cloned().or_else(|| args.kwargs.get("source").cloned());
    if let Some(msg) = source.as_ref().and_then(|s| source_len(s, vm)).and_then(too_large) {
        return Err(vm.new_exception_msg(vm.ctx.exceptions.memory_error.to_owned(), msg.into()));
    }
    if let Some(text) = source.as_ref().and_then(|s| s.downcast_ref::<PyStr>()).and_then(|s| s.to_str())
        && let Cow::Owned(masked) = compilable(text)
    {
        let masked: PyObjectRef = vm.ctx.new_str(masked).into();
        match args.args.first_mut() {
            Some(first) => *first = masked,
            None => {
                // Given as `source=`: no positional argument came before it.
                args.kwargs.swap_remove("source");
                args.args.push(masked);
            }
        }
    }
    let original = UNGUARDED_BUILTINS.with_borrow(|o| o.iter().find(|(n, _)| *n == name).map(|(_, f)| f.clone()));
    let Some(f) = original else { return Err(vm.new_runtime_error(format!("{name} is not available"))) };
    // The compiler panics on some malformed sources. Contained here, the script gets an
    // exception, and the worker rebuilds its VM after the job since the panic may have left
    // it half-way through something.
    match catch_unwind(AssertUnwindSafe(|| f.call(args, vm))) {
        Ok(result) => result.inspect_err(|e| super::errors::normalize_syntax_error(vm, e)),
        Err(_) => {
            POISONED.set(true);
            Err(vm.new_exception_msg(vm.ctx.exceptions.syntax_error.to_owned(), "invalid syntax".into()))
        }
    }
}

/// Swaps the builtins for the guarded versions of the native module. Called once per VM built
/// on this thread; forgets the previous VM's originals.
pub fn guard_builtins(vm: &VirtualMachine, native: &PyObjectRef) -> PyResult<()> {
    UNGUARDED_BUILTINS.with_borrow_mut(Vec::clear);
    POISONED.set(false);
    for (name, guarded) in [("compile", "guarded_compile"), ("eval", "guarded_eval"), ("exec", "guarded_exec")] {
        let original = vm.builtins.get_attr(name, vm)?;
        UNGUARDED_BUILTINS.with_borrow_mut(|o| o.push((name, original)));
        vm.builtins.set_attr(name, native.get_attr(guarded, vm)?, vm)?;
    }
    Ok(())
}
