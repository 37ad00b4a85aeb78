//! The module's own Python machinery, put back as it was after every job.
//!
//! Every script on a worker shares one interpreter, and imported modules are shared on purpose
//! (docs/python-api.md#script-environment: a module attribute set by one script is seen by the next;
//! ours is per worker). What is not shared is what the module itself is built from: `builtins`,
//! `sys` (its hooks, `stdout` that `print` writes to the Redis log through, the import lists),
//! and the `gears` shim with its native half. A script that patched those (`GB.run = ...`,
//! `sys.stdout = ...`, a finder in `sys.meta_path`, `sys.modules['gears'] = ...`) would change
//! how every later script on that worker runs, or watch it; so their namespaces and classes are
//! recorded at start-up and put back after each job, where they changed.
//!
//! Comparisons are by identity and in order, and a class's by its version tag, so checking an
//! untouched interpreter is one pass over a few hundred entries, with no hashing.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use rustpython_vm::builtins::{PyDict, PyDictRef, PyList, PyListRef, PyModule, PyStr, PyType};
use rustpython_vm::{AsObject, PyObjectRef, PyRef, PyResult, VirtualMachine};

/// The modules the module's machinery is made of. The sandbox's `os`/`posix`/`marshal` stand-ins
/// are not: they stand for stdlib modules, which are shared.
const MACHINERY: &[&str] = &["builtins", "sys", "_redisgears", "gears", "redisgears", "asyncio"];
/// `sys` attributes that are lists scripts may change in place: the import machinery.
const SYS_LISTS: &[&str] = &["meta_path", "path_hooks", "path"];

/// A namespace and its entries, in order.
struct Namespace {
    /// The class that owns the namespace (set through it, so that its slots follow), or none
    /// for a module's dict.
    class: Option<PyRef<PyType>>,
    /// The class's version tag when recorded. The VM clears a tag whenever its class changes
    /// and the next lookup assigns a new one, so an unchanged nonzero tag means an unchanged
    /// class, without a pass over its dict.
    version: u32,
    dict: PyDictRef,
    entries: Vec<(PyObjectRef, PyObjectRef)>,
}

impl Namespace {
    fn new(class: Option<PyRef<PyType>>, dict: PyDictRef, vm: &VirtualMachine) -> Namespace {
        let mut ns = Namespace { class, version: 0, dict, entries: Vec::new() };
        ns.rerecord(vm);
        ns
    }

    /// Records the namespace as it is now.
    fn rerecord(&mut self, vm: &VirtualMachine) {
        self.entries = self.dict.items_vec();
        self.version = match &self.class {
            Some(class) => {
                // A lookup assigns the class a tag if it has none.
                class.lookup_ref(vm.ctx.intern_str("__module__"), vm);
                class.tp_version_tag.load(Ordering::Acquire)
            }
            None => 0,
        };
    }

    fn intact(&self) -> bool {
        if let Some(class) = &self.class
            && self.version != 0
            && class.tp_version_tag.load(Ordering::Acquire) == self.version
        {
            return true;
        }
        // One read lock for the whole dict: much cheaper than iterating it entry by entry.
        let items = self.dict.items_vec();
        items.len() == self.entries.len()
            && items.iter().zip(&self.entries).all(|((k, v), (rk, rv))| k.is(rk) && v.is(rv))
    }

    /// Puts the recorded entries back; false if the class refused one.
    fn restore(&mut self, vm: &VirtualMachine) -> bool {
        if self.intact() {
            return true;
        }
        let Some(class) = &self.class else {
            self.dict.clear();
            for (k, v) in &self.entries {
                let _ = self.dict.set_item(&**k, v.clone(), vm);
            }
            return true;
        };
        // Through the class, so that slots (`__call__`, `__getattr__`, ...) follow the dict.
        let class = class.as_object();
        let mut ok = true;
        for (k, _) in (&self.dict).into_iter() {
            if !self.entries.iter().any(|(rk, _)| rk.is(&k)) {
                ok &= k.downcast::<PyStr>().is_ok_and(|k| class.del_attr(&k, vm).is_ok());
            }
        }
        for (k, v) in &self.entries {
            if !self.dict.get_item_opt(&**k, vm).ok().flatten().is_some_and(|c| c.is(v)) {
                ok &= k.clone().downcast::<PyStr>().is_ok_and(|k| class.set_attr(&k, v.clone(), vm).is_ok());
            }
        }
        // Same contents, maybe in another order, and a new version tag: record those.
        self.rerecord(vm);
        ok
    }
}

struct Pristine {
    /// Module namespaces, then the classes they define.
    namespaces: Vec<Namespace>,
    /// The machinery's entries in `sys.modules`.
    modules: Vec<(PyObjectRef, PyObjectRef)>,
    lists: Vec<(PyListRef, Vec<PyObjectRef>)>,
    /// The interpreter's `builtins` module: which interpreter this record is of.
    builtins: PyObjectRef,
}

thread_local! {
    static PRISTINE: RefCell<Option<Pristine>> = const { RefCell::new(None) };
}

/// Records the machinery of `vm`, once it is set up.
pub fn record(vm: &VirtualMachine) -> PyResult<()> {
    let mut namespaces = Vec::new();
    let mut modules = Vec::new();
    for name in MACHINERY {
        let module = vm.import(*name, 0)?;
        let Some(m) = module.downcast_ref::<PyModule>() else { continue };
        let dict = m.dict();
        for (_, value) in (&dict).into_iter() {
            let Ok(class) = value.downcast::<PyType>() else { continue };
            // Classes defined here; others belong to their own module.
            let Some(class_dict) = class.attributes.as_dict().map(|d| d.to_owned()) else { continue };
            if defined_in(&class_dict, name, vm) {
                namespaces.push(Namespace::new(Some(class), class_dict, vm));
            }
        }
        namespaces.push(Namespace::new(None, dict, vm));
        modules.push((vm.ctx.new_str(*name).into(), module));
    }
    let mut lists = Vec::new();
    for name in SYS_LISTS {
        let list = vm.sys_module.get_attr(*name, vm)?.downcast::<PyList>().map_err(|_| vm.new_type_error(*name))?;
        let entries = list.borrow_vec().to_vec();
        lists.push((list, entries));
    }
    PRISTINE.set(Some(Pristine { namespaces, modules, lists, builtins: vm.builtins.clone().into() }));
    Ok(())
}

fn defined_in(class_dict: &rustpython_vm::Py<PyDict>, module: &str, vm: &VirtualMachine) -> bool {
    class_dict
        .get_item_opt("__module__", vm)
        .ok()
        .flatten()
        .and_then(|m| m.downcast::<PyStr>().ok())
        .is_some_and(|m| m.as_wtf8() == module)
}

/// Drops the record of `vm`, which is being torn down: its objects must go while it exists.
/// A record of another interpreter (built on this thread since) is left.
pub fn discard_record(vm: &VirtualMachine) {
    let mine = PRISTINE.with_borrow(|p| p.as_ref().is_some_and(|p| p.builtins.is(&vm.builtins)));
    if mine {
        drop(PRISTINE.take());
    }
}

/// Puts back what the last job changed. False if something could not be put back: the
/// interpreter must then be rebuilt.
pub fn put_back(vm: &VirtualMachine) -> bool {
    // Taken out while restoring: dropping a script's object, or setting a class attribute,
    // can run Python code.
    let Some(mut p) = PRISTINE.take() else { return false };
    let mut ok = true;
    for ns in &mut p.namespaces {
        ok &= ns.restore(vm);
    }
    if let Ok(modules) = vm.sys_module.get_attr("modules", vm) {
        for (name, module) in &p.modules {
            if !modules.get_item(&**name, vm).is_ok_and(|m| m.is(module)) {
                ok &= modules.set_item(&**name, module.clone(), vm).is_ok();
            }
        }
    }
    for (list, entries) in &p.lists {
        if !same(&list.borrow_vec(), entries) {
            let old = std::mem::replace(&mut *list.borrow_vec_mut(), entries.clone());
            drop(old);
        }
    }
    PRISTINE.set(Some(p));
    ok
}

fn same(list: &[PyObjectRef], recorded: &[PyObjectRef]) -> bool {
    list.len() == recorded.len() && list.iter().zip(recorded).all(|(a, b)| a.is(b))
}
