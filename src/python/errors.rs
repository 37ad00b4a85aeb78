//! The text of a Python exception, as clients see it (SPEC 1.8).

use rustpython_vm::builtins::PyBaseExceptionRef;
use rustpython_vm::{AsObject, VirtualMachine};

use super::native::with_types;

pub fn error_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> String {
    // Formatting runs Python; a stop request must not cut it short (it is the stop's own text).
    super::interrupt::shielded(|| format(vm, exc))
}

fn format(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> String {
    let is_flat = with_types(|t| exc.fast_isinstance(&t.flat_error)).unwrap_or(false);
    if is_flat {
        return exc.as_object().str(vm).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    let with_traceback = crate::config::with(|c| c.python_attempt_traceback != 0);
    if with_traceback && exc.__traceback__().is_some() {
        if let Some(text) = traceback_text(vm, exc) {
            return text;
        }
    }
    plain_text(vm, exc).unwrap_or_else(|| crate::error::GearsError::ScriptFailed.to_string())
}

/// `str(traceback.format_exception(...))`, computed by the shim's `format_exception`.
fn traceback_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let gears = vm.import("gears", 0).ok()?;
    let format = gears.get_attr("format_exception", vm).ok()?;
    let text = format.call((exc.clone(),), vm).ok()?;
    text.str(vm).ok().map(|s| s.to_string_lossy().into_owned())
}

/// `Error type: <class 'T'>, Value: <str(exc)>`.
fn plain_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Option<String> {
    let class = exc.class().as_object().str(vm).ok()?;
    let value = exc.as_object().str(vm).ok()?;
    Some(format!("Error type: {}, Value: {}", class.to_string_lossy(), value.to_string_lossy()))
}
