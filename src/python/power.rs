//! A bound on integer powers.
//!
//! `9**9**9` or `111**111111111` is one native call that runs for minutes: it cannot be
//! interrupted, so the watchdog can only abandon its worker (which keeps a core busy until the
//! call returns). A power whose result would exceed `MAX_POWER_BITS` is refused up front with
//! MemoryError instead; the result size is known from the operands. Patched on `int`'s number
//! slot, which `**`, `pow()` and `operator.pow` go through, and on its `__pow__`/`__rpow__`
//! methods, which method calls and the slots of int subclasses go through.

use std::sync::OnceLock;

use rustpython_vm::builtins::PyInt;
use rustpython_vm::function::{ItemDoc, OptionalArg, PyMethodFlags};
use rustpython_vm::types::PyComparisonOp;
use rustpython_vm::{AsObject, PyObject, PyObjectRef, PyResult, VirtualMachine};

type Power = fn(&PyObject, &PyObject, &PyObject, &VirtualMachine) -> PyResult;

/// 16 Mibit (2 MiB of digits): computed in well under a second.
const MAX_POWER_BITS: u64 = 1 << 24;

static UNBOUNDED_POWER: OnceLock<Power> = OnceLock::new();

fn guarded_pow(base: &PyObject, exponent: &PyObject, modulus: &PyObject, vm: &VirtualMachine) -> PyResult {
    if vm.is_none(modulus)
        && let (Some(b), Some(e)) = (base.downcast_ref::<PyInt>(), exponent.downcast_ref::<PyInt>())
    {
        // |base| <= 1 gives 0, 1 or -1 at any exponent; a negative exponent gives a float.
        let base_bits = b.as_bigint().bits();
        let bits = match e.try_to_primitive::<i64>(vm) {
            Ok(e) => (e > 0).then(|| (e as u64).saturating_mul(base_bits.saturating_sub(1))),
            // Beyond i64: too large if positive.
            Err(_) => exponent
                .rich_compare_bool(vm.ctx.new_int(0).as_object(), PyComparisonOp::Gt, vm)
                .is_ok_and(|positive| positive)
                .then_some(u64::MAX),
        };
        if let Some(bits) = bits.filter(|&bits| base_bits > 1 && bits > MAX_POWER_BITS) {
            return Err(
                vm.new_memory_error(format!("integer power too large: about {bits} bits (at most {MAX_POWER_BITS})"))
            );
        }
    }
    match UNBOUNDED_POWER.get() {
        Some(power) => power(base, exponent, modulus, vm),
        None => Err(vm.new_system_error("int power slot not initialised")),
    }
}

fn pow(zelf: PyObjectRef, value: PyObjectRef, modulus: OptionalArg<PyObjectRef>, vm: &VirtualMachine) -> PyResult {
    guarded_pow(&zelf, &value, &modulus.unwrap_or_none(vm), vm)
}

fn rpow(zelf: PyObjectRef, value: PyObjectRef, modulus: OptionalArg<PyObjectRef>, vm: &VirtualMachine) -> PyResult {
    guarded_pow(&value, &zelf, &modulus.unwrap_or_none(vm), vm)
}

/// Patches this thread's `int` type (types belong to the thread's genesis context); a VM
/// rebuilt on the same thread finds it patched already.
pub fn guard_power(vm: &VirtualMachine) {
    let int = vm.ctx.types.int_type;
    let slot = &int.slots.as_number.power;
    if let Some(current) = slot.load() {
        // The first thread records the original; a patched slot is not recorded again.
        UNBOUNDED_POWER.get_or_init(|| current);
        slot.store(Some(guarded_pow));
    }
    let methods = [
        ("__pow__", vm.ctx.new_method_def("__pow__", pow, PyMethodFlags::METHOD, ItemDoc::NONE)),
        ("__rpow__", vm.ctx.new_method_def("__rpow__", rpow, PyMethodFlags::METHOD, ItemDoc::NONE)),
    ];
    for (name, def) in methods {
        int.attributes.set(vm.ctx.intern_str(name), def.build_method(int, vm).into());
    }
    int.modified();
}
