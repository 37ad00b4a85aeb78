//! The text of a Python exception, as clients see it (SPEC 1.8).
//!
//! Formatted in Rust, not by Python code: no bytecode runs here except an exception's own
//! `__str__`, so a stop request (abort, time limit) still reaches a script whose `__str__` loops,
//! and cannot cut short the formatting of the stop's own exception.

use std::collections::HashSet;

use rustpython_vm::builtins::{PyBaseExceptionRef, PyStr};
use rustpython_vm::{AsObject, PyObject, PyObjectRef, VirtualMachine};

use super::native::with_types;

/// Runs of the same frame collapse after this many lines, as in CPython's StackSummary.format.
const RECURSIVE_CUTOFF: usize = 3;

pub fn error_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> String {
    let is_flat = with_types(|t| exc.fast_isinstance(&t.flat_error)).unwrap_or(false);
    if is_flat {
        return text(vm, exc.as_object()).unwrap_or_default();
    }
    let with_traceback = crate::config::with(|c| c.python_attempt_traceback != 0);
    if with_traceback && exc.__traceback__().is_some() {
        if let Some(text) = traceback_text(vm, exc) {
            return text;
        }
    }
    if let Some(text) = plain_text(vm, exc) {
        return text;
    }
    // The exception's own `__str__` failed, perhaps cut short by a stop request: then the stop
    // is what the client should read.
    match super::interrupt::stop_reason() {
        Some(reason) => plain_text(vm, &super::interrupt::stop_exception(vm, reason)),
        None => None,
    }
    .unwrap_or_else(|| crate::error::GearsError::ScriptFailed.to_string())
}

fn text(vm: &VirtualMachine, obj: &PyObject) -> Option<String> {
    obj.str(vm).ok().map(|s| s.to_string_lossy().into_owned())
}

fn attr(vm: &VirtualMachine, obj: &PyObject, name: &'static str) -> Option<PyObjectRef> {
    obj.get_attr(name, vm).ok().filter(|v| !vm.is_none(v))
}

/// `str(traceback.format_exception(...))`: the repr of the list of lines.
fn traceback_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let mut lines = Vec::new();
    chain(vm, exc, &mut lines, &mut HashSet::new())?;
    let list = vm.ctx.new_list(lines.into_iter().map(|l| vm.ctx.new_str(l).into()).collect());
    list.as_object().repr(vm).ok().map(|s| s.to_string_lossy().into_owned())
}

fn chain(vm: &VirtualMachine, exc: &PyBaseExceptionRef, lines: &mut Vec<String>, seen: &mut HashSet<usize>) -> Option<()> {
    seen.insert(exc.as_object().get_id());
    let unseen = |e: &PyBaseExceptionRef, seen: &HashSet<usize>| !seen.contains(&e.as_object().get_id());
    let suppressed = attr(vm, exc.as_object(), "__suppress_context__").is_some_and(|v| v.is(&vm.ctx.true_value));
    if let Some(cause) = exc.__cause__().filter(|c| unseen(c, seen)) {
        chain(vm, &cause, lines, seen)?;
        lines.push("\nThe above exception was the direct cause of the following exception:\n\n".to_owned());
    } else if let Some(context) = exc.__context__().filter(|c| !suppressed && unseen(c, seen)) {
        chain(vm, &context, lines, seen)?;
        lines.push("\nDuring handling of the above exception, another exception occurred:\n\n".to_owned());
    }
    if let Some(tb) = exc.__traceback__() {
        lines.push("Traceback (most recent call last):\n".to_owned());
        frames(vm, tb.into(), lines)?;
    }
    lines.push(exception_only(vm, exc)?);
    Some(())
}

fn frames(vm: &VirtualMachine, tb: PyObjectRef, lines: &mut Vec<String>) -> Option<()> {
    let mut last: Option<(String, i64, String)> = None;
    let mut count = 0;
    let mut next = Some(tb);
    while let Some(tb) = next {
        let frame = attr(vm, &tb, "tb_frame")?;
        let code = attr(vm, &frame, "f_code")?;
        let line = attr(vm, &tb, "tb_lineno")?.try_into_value::<i64>(vm).ok()?;
        let (filename, name) = (attr(vm, &code, "co_filename")?, attr(vm, &code, "co_name")?);
        let frame = (text(vm, &filename)?, line, text(vm, &name)?);
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
    let mut name = text(vm, &qualname)?;
    let module = attr(vm, &class, "__module__").and_then(|m| m.downcast_ref::<PyStr>().map(|s| s.to_string_lossy().into_owned()));
    if let Some(module) = module.filter(|m| m != "builtins" && m != "__main__") {
        name = format!("{module}.{name}");
    }
    let value = text(vm, exc.as_object())?;
    Some(if value.is_empty() { format!("{name}\n") } else { format!("{name}: {value}\n") })
}

/// `Error type: <class 'T'>, Value: <str(exc)>`.
fn plain_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let class = text(vm, exc.class().as_object())?;
    let value = text(vm, exc.as_object())?;
    Some(format!("Error type: {class}, Value: {value}"))
}
