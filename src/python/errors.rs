//! The text of a Python exception, as clients see it (docs/python-api.md, "Error texts").
//!
//! Formatted in Rust, not by Python code: no bytecode runs here except an exception's own
//! `__str__`, so a stop request (abort, time limit) still reaches a script whose `__str__` loops,
//! and cannot cut short the formatting of the stop's own exception.
//!
//! Three departures from the plain formats make errors easier to read; each keeps the beginning
//! of the text, which is what RedisGears clients match: frames of the module's own Python (the shim) are left
//! out of tracebacks, as RedisGears' C frames never showed; a callback that fails before its
//! frame exists (called with the wrong arguments) gets the line it was defined on; and a generic
//! parse failure reads `invalid syntax`, as CPython 3.7 said, followed by the parser's detail.

use std::collections::HashSet;

use rustpython_vm::builtins::{PyBaseExceptionRef, PyStr};
use rustpython_vm::function::IntoFuncArgs;
use rustpython_vm::{AsObject, PyObject, PyObjectRef, PyResult, VirtualMachine};

use super::native::with_types;

include!(concat!(env!("OUT_DIR"), "/shim_modules.rs"));

/// Runs of the same frame collapse after this many lines, as in CPython's StackSummary.format.
const RECURSIVE_CUTOFF: usize = 3;

/// Beginnings of the parser's messages for what CPython 3.7 called `invalid syntax`. Messages
/// that 3.7 had a text of its own for (unterminated strings, `'return' outside function`,
/// assignments to literals, ...) and IndentationError are left as they are.
const GENERIC_SYNTAX: &[&str] = &[
    "invalid decimal literal",
    "invalid hexadecimal literal",
    "invalid octal literal",
    "invalid binary literal",
    "invalid digit",
    "expected ",
    "Expected ",
    "unexpected token",
    "Unexpected token",
    "unmatched ",
];

pub fn error_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> String {
    let is_flat = with_types(|t| exc.fast_isinstance(&t.flat_error)).unwrap_or(false);
    if is_flat {
        return str_of(vm, exc.as_object()).unwrap_or_default();
    }
    normalize_syntax_error(vm, exc);
    let with_traceback = crate::config::with(|c| c.python_attempt_traceback != 0);
    if with_traceback
        && exc.__traceback__().is_some_and(|tb| user_frames(vm, tb.into()))
        && let Some(text) = traceback_text(vm, exc)
    {
        return text;
    }
    if let Some(text) = plain_text(vm, exc) {
        return text;
    }
    // The exception's own `__str__` failed, perhaps cut short by a stop request: then the stop
    // is what the client should read.
    match crate::stop::stop_reason() {
        Some(reason) => plain_text(vm, &super::interrupt::stop_exception(vm, reason)),
        None => None,
    }
    .unwrap_or_else(|| crate::error::GearsError::ScriptFailed.to_string())
}

/// Calls a script's callback. An exception raised before any frame of the script ran (the
/// callback called with the wrong arguments) notes where the callback was defined, which the
/// error text then shows: it has no traceback to show it otherwise.
pub fn call_callback(vm: &VirtualMachine, callback: &PyObject, args: impl IntoFuncArgs) -> PyResult {
    callback.call(args, vm).inspect_err(|exc| {
        if !exc.__traceback__().is_some_and(|tb| user_frames(vm, tb.into()))
            && let Some(note) = definition(vm, callback)
        {
            let _ = vm.call_method(exc.as_object(), "add_note", (note,));
        }
    })
}

/// `callback defined at <file>, line <n>`, for a function of the script.
fn definition(vm: &VirtualMachine, callback: &PyObject) -> Option<String> {
    let code = attr(vm, callback, "__code__")?;
    let file = attr(vm, &code, "co_filename")?;
    let file = str_of(vm, &file)?;
    let line = attr(vm, &code, "co_firstlineno")?.try_into_value::<i64>(vm).ok()?;
    (!is_shim(&file)).then(|| format!("callback defined at {file}, line {line}"))
}

/// Rewrites the message of a SyntaxError (not of its subclasses) that CPython 3.7 reported as
/// `invalid syntax`, keeping the parser's detail after it.
pub fn normalize_syntax_error(vm: &VirtualMachine, exc: &PyBaseExceptionRef) {
    if !exc.class().is(vm.ctx.exceptions.syntax_error) {
        return;
    }
    let Some(msg) = attr(vm, exc.as_object(), "msg").and_then(|m| str_of(vm, &m)) else { return };
    if GENERIC_SYNTAX.iter().any(|p| msg.starts_with(p)) || msg.ends_with(" was never closed") {
        let _ = exc.as_object().set_attr("msg", vm.ctx.new_str(format!("invalid syntax: {msg}")), vm);
    }
}

fn is_shim(file: &str) -> bool {
    SHIM_MODULES.contains(&file)
}

fn frame_code(vm: &VirtualMachine, tb: &PyObject) -> Option<(PyObjectRef, String)> {
    let frame = attr(vm, tb, "tb_frame")?;
    let code = attr(vm, &frame, "f_code")?;
    let file = attr(vm, &code, "co_filename")?;
    let file = str_of(vm, &file)?;
    Some((code, file))
}

/// Whether a traceback holds a frame that is not the shim's.
fn user_frames(vm: &VirtualMachine, tb: PyObjectRef) -> bool {
    let mut next = Some(tb);
    while let Some(tb) = next {
        if frame_code(vm, &tb).is_some_and(|(_, f)| !is_shim(&f)) {
            return true;
        }
        next = attr(vm, &tb, "tb_next");
    }
    false
}

fn str_of(vm: &VirtualMachine, obj: &PyObject) -> Option<String> {
    obj.str(vm).ok().map(|s| s.to_string_lossy().into_owned())
}

fn attr(vm: &VirtualMachine, obj: &PyObject, name: &'static str) -> Option<PyObjectRef> {
    obj.get_attr(name, vm).ok().filter(|v| !vm.is_none(v))
}

/// `str(traceback.format_exception(...))`: the repr of the list of lines.
fn traceback_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let mut lines = Vec::new();
    cause_chain(vm, exc, &mut lines, &mut HashSet::new())?;
    let list = vm.ctx.new_list(lines.into_iter().map(|l| vm.ctx.new_str(l).into()).collect());
    list.as_object().repr(vm).ok().map(|s| s.to_string_lossy().into_owned())
}

fn cause_chain(
    vm: &VirtualMachine,
    exc: &PyBaseExceptionRef,
    lines: &mut Vec<String>,
    seen: &mut HashSet<usize>,
) -> Option<()> {
    seen.insert(exc.as_object().get_id());
    let unseen = |e: &PyBaseExceptionRef, seen: &HashSet<usize>| !seen.contains(&e.as_object().get_id());
    let suppressed = attr(vm, exc.as_object(), "__suppress_context__").is_some_and(|v| v.is(&vm.ctx.true_value));
    if let Some(cause) = exc.__cause__().filter(|c| unseen(c, seen)) {
        cause_chain(vm, &cause, lines, seen)?;
        lines.push("\nThe above exception was the direct cause of the following exception:\n\n".to_owned());
    } else if let Some(context) = exc.__context__().filter(|c| !suppressed && unseen(c, seen)) {
        cause_chain(vm, &context, lines, seen)?;
        lines.push("\nDuring handling of the above exception, another exception occurred:\n\n".to_owned());
    }
    if let Some(tb) = exc.__traceback__().filter(|tb| user_frames(vm, tb.clone().into())) {
        lines.push("Traceback (most recent call last):\n".to_owned());
        frames(vm, tb.into(), lines)?;
    }
    lines.push(exception_only(vm, exc)?);
    lines.extend(notes(vm, exc).into_iter().map(|note| format!("{note}\n")));
    Some(())
}

/// The exception's `__notes__` that are strings, as CPython prints them.
fn notes(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Vec<String> {
    let Some(notes) = attr(vm, exc.as_object(), "__notes__") else { return Vec::new() };
    let Some(list) = notes.downcast_ref::<rustpython_vm::builtins::PyList>() else { return Vec::new() };
    let items = list.borrow_vec().to_vec();
    items.iter().filter(|n| n.downcast_ref::<PyStr>().is_some()).filter_map(|n| str_of(vm, n)).collect()
}

fn frames(vm: &VirtualMachine, tb: PyObjectRef, lines: &mut Vec<String>) -> Option<()> {
    let mut last: Option<(String, i64, String)> = None;
    let mut count = 0;
    let mut next = Some(tb);
    while let Some(tb) = next {
        let (code, filename) = frame_code(vm, &tb)?;
        if is_shim(&filename) {
            next = attr(vm, &tb, "tb_next");
            continue;
        }
        let line = attr(vm, &tb, "tb_lineno")?.try_into_value::<i64>(vm).ok()?;
        let name = attr(vm, &code, "co_name")?;
        let frame = (filename, line, str_of(vm, &name)?);
        if last.as_ref() != Some(&frame) {
            repeated(count, lines);
            last = Some(frame.clone());
            count = 0;
        }
        count += 1;
        if count <= RECURSIVE_CUTOFF {
            lines.push(format!("  File \"{}\", line {}, in {}\n", frame.0, frame.1, frame.2));
        }
        next = attr(vm, &tb, "tb_next");
    }
    repeated(count, lines);
    Some(())
}

fn repeated(count: usize, lines: &mut Vec<String>) {
    if count > RECURSIVE_CUTOFF {
        let more = count - RECURSIVE_CUTOFF;
        lines.push(format!("  [Previous line repeated {more} more time{}]\n", if more > 1 { "s" } else { "" }));
    }
}

/// The last line: `module.Qualname: str(exc)`, the module left out for builtins.
fn exception_only(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let class: PyObjectRef = exc.class().to_owned().into();
    let qualname = attr(vm, &class, "__qualname__")?;
    let mut name = str_of(vm, &qualname)?;
    let module = attr(vm, &class, "__module__")
        .and_then(|m| m.downcast_ref::<PyStr>().map(|s| s.to_string_lossy().into_owned()));
    if let Some(module) = module.filter(|m| m != "builtins" && m != "__main__") {
        name = format!("{module}.{name}");
    }
    let value = str_of(vm, exc.as_object())?;
    Some(if value.is_empty() { format!("{name}\n") } else { format!("{name}: {value}\n") })
}

/// `Error type: <class 'T'>, Value: <str(exc)>`, then ` (<note>)` for each of its notes.
fn plain_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let class = str_of(vm, exc.class().as_object())?;
    let value = str_of(vm, exc.as_object())?;
    let notes: String = notes(vm, exc).iter().map(|note| format!(" ({note})")).collect();
    Some(format!("Error type: {class}, Value: {value}{notes}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_modules_are_named_as_frozen() {
        for name in ["gears", "redisgears", "os", "posix", "marshal", "zlib"] {
            assert!(is_shim(name), "{name} missing from {SHIM_MODULES:?}");
        }
        assert!(!is_shim("<string>") && !is_shim("json") && !is_shim("gears.__init__"));
    }
}
