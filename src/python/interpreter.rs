//! Building the sandboxed interpreter of one worker, and running scripts in it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

use rustpython_vm::builtins::{PyBaseExceptionRef, PyCode, PyDictRef};
use rustpython_vm::compiler::Mode;
use rustpython_vm::scope::Scope;
use rustpython_vm::{AsObject, Interpreter, PyPayload, PyRef, PyResult, Settings, VirtualMachine};

use super::errors::error_text;
use super::guard;
use super::interrupt::{self, Interrupter};
use super::job::JobContext;
use super::pristine;
use super::session::{self, JobState, RawPlan};
use crate::memory;
use crate::stop::{self, Abort, Armed, WorkerId};
use crate::store::Store;

/// Native modules of rustpython-stdlib that scripts may import. Left out on purpose (see
/// docs/sandbox.md): _bz2, _lzma, pyexpat, _elementtree (decompression and entity bombs run
/// inside one native call), _pickle (the pure-Python pickle is used), _queue (its blocking `get`
/// would wait in native code for a thread that cannot exist), _asyncio, _zoneinfo and the cjk
/// codecs. `zlib` is not importable as such: `inflate` wraps it with bounded decompression.
const NATIVE_ALLOW: &[&str] = &[
    "math",
    "cmath",
    "_random",
    "_json",
    "_datetime",
    "_heapq",
    "_bisect",
    "_struct",
    "binascii",
    "_contextvars",
    "_statistics",
    "_hashlib",
    "_blake2",
    "_opcode",
    "_tokenize",
    "unicodedata",
    "_csv",
    "array",
];

/// Modules of the vm itself that reach host state or let scripts forge code objects.
/// `_symtable` compiles source text outside the size guard of `compile`.
const NATIVE_DENY: &[&str] =
    &["marshal", "gc", "_symtable", "_interpreters", "_interpchannels", "_interpqueues", "_testinternalcapi"];

/// The gears shim and the sandbox stand-ins (`os`, ...), frozen into the binary.
static SHIM: &rustpython_vm::frozen::FrozenLib = rustpython_vm::py_freeze!(dir = "../../stdlib_shim/rg");
/// The pure-Python standard library subset scripts may import.
static LIB: &rustpython_vm::frozen::FrozenLib = rustpython_vm::py_freeze!(dir = "../../stdlib_shim/vendor");

/// How many compiled scripts a worker keeps, keyed by their text.
const CODE_CACHE_SIZE: usize = 256;

/// What a script asked for, once its body has run.
pub enum ScriptOutcome {
    /// The script raised (or did not compile): the formatted error.
    Failed(String),
    /// The script finished and started no execution.
    Done,
    /// The script called `run()`: the execution to run now.
    Run(RawPlan),
}

/// One worker's interpreter. Used through `&self`: a visit (a script body, a main-thread call)
/// may run nested inside a job that is using it.
pub struct Runtime {
    state: Option<Prepared>,
    interp: Option<Interpreter>,
    interrupter: Arc<Interrupter>,
    worker: WorkerId,
    /// Visits running nested in the job that runs now.
    nesting: Cell<u32>,
}

/// A visit running nested in the job it preempted (see `Runtime::nest`).
pub struct Nested<'r> {
    runtime: &'r Runtime,
    /// The job's recursion depth, added to the limit for the visit.
    depth: usize,
    /// The exception the job was handling when it was preempted.
    exception: Option<PyBaseExceptionRef>,
    _session: session::SavedJob,
}

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        let (depth, exception) = (self.depth, self.exception.take());
        self.runtime.enter(|vm| {
            vm.recursion_limit.set(vm.recursion_limit.get().saturating_sub(depth));
            vm.set_exception(exception);
        });
        self.runtime.nesting.set(self.runtime.nesting.get() - 1);
    }
}

/// Profiling on for one execution (see `Runtime::profile`).
pub struct Profiled<'r> {
    runtime: &'r Runtime,
    _profiling: crate::profile::Profiling,
}

impl Drop for Profiled<'_> {
    fn drop(&mut self) {
        self.runtime.enter(|vm| {
            vm.profile_func.replace(vm.ctx.none());
            vm.use_tracing.set(false);
        });
    }
}

/// Python objects prepared once per interpreter.
struct Prepared {
    env: PyDictRef,
    recursion_limit: usize,
    int_max_str_digits: usize,
    /// Set when interpreter-wide state could not be put back after a job: rebuild.
    tainted: Cell<bool>,
    codes: RefCell<HashMap<String, PyRef<PyCode>>>,
    /// `_redisgears.profile_event`, the profile function of profiled executions.
    profile_hook: rustpython_vm::PyObjectRef,
}

impl Runtime {
    pub fn new(worker: WorkerId) -> Result<Runtime, String> {
        let builder = Interpreter::builder(Settings::default());
        let stdlib: Vec<_> = rustpython_stdlib::stdlib_module_defs(&builder.ctx)
            .into_iter()
            .filter(|def| NATIVE_ALLOW.contains(&def.name.as_str()))
            .collect();
        let gears = super::native::module_def(&builder.ctx);
        let (interrupter, signals) = interrupt::channel();
        let interp = builder
            .add_native_modules(&stdlib)
            .add_native_module(gears)
            .add_frozen_modules(LIB)
            // Last, so that the stand-ins win over any module of the same name.
            .add_frozen_modules(SHIM)
            .init_hook(move |vm| {
                vm.set_user_signal_channel(signals);
                if let Some(state) = rustpython_vm::common::rc::PyRc::get_mut(&mut vm.state) {
                    for name in NATIVE_DENY {
                        state.module_defs.remove(name);
                    }
                }
            })
            .build();
        let state = interp.enter(|vm| prepare(vm).map_err(|e| error_text(vm, &e)))?;
        Ok(Runtime { state: Some(state), interp: Some(interp), interrupter, worker, nesting: Cell::new(0) })
    }

    pub fn enter<R>(&self, f: impl FnOnce(&VirtualMachine) -> R) -> R {
        match &self.interp {
            Some(interp) => memory::counted(|| interp.enter(f)),
            None => unreachable!("the interpreter lives as long as the runtime"),
        }
    }

    /// Compiles and runs one script in fresh globals, reaching Redis through `store`; `abort`
    /// stops it. `session` names the session once it owns registrations; `restoring` rebuilds
    /// one from its source (see `session::JobState::restoring`).
    pub fn run_script(
        &self,
        script: &str,
        store: Rc<dyn Store>,
        abort: Arc<Abort>,
        session: Option<String>,
        restoring: Option<VecDeque<String>>,
    ) -> ScriptOutcome {
        let state = JobState::body(session, restoring, store.run_as(), script);
        let _job = self.enter_job(JobContext { state: Some(state), store: store.clone(), abort, owner: None });
        let (Some(interp), Some(state)) = (&self.interp, &self.state) else {
            return ScriptOutcome::Failed(crate::error::GearsError::ScriptFailed.to_string());
        };
        memory::counted(|| {
            interp.enter(|vm| {
                let result = state.code(vm, script).and_then(|code| {
                    let globals = state.env.copy().into_ref(&vm.ctx);
                    vm.run_code_obj(code, Scope::with_builtins(None, globals, vm)).map(drop)
                });
                // A script that left an atomic block open (it can only by not using `with`).
                store.release();
                flush_stdout(vm);
                let plan = session::with_job(|s| {
                    s.in_body = false;
                    s.body_run.take()
                });
                match result {
                    // SystemExit too: RedisGears reports it like any exception.
                    Err(exc) => ScriptOutcome::Failed(memory::uncounted(|| error_text(vm, &exc))),
                    Ok(()) => match plan {
                        Some(plan) => ScriptOutcome::Run(plan),
                        None => ScriptOutcome::Done,
                    },
                }
            })
        })
    }

    /// Puts interpreter-wide state back as it was before the job (see `pristine`).
    ///
    /// Not after a visit nested in another job: the interpreter-wide state is that job's too (what
    /// it set on `builtins`, the recursion limit, ...), and is put back when the outermost job ends.
    pub fn end_job(&self) {
        if self.nesting.get() > 0 {
            return;
        }
        let (Some(interp), Some(state)) = (&self.interp, &self.state) else { return };
        memory::counted(|| interp.enter(|vm| state.restore(vm)));
    }

    /// True once the VM panicked inside a call it survived (see `guard`), or kept state a
    /// script changed: rebuild it.
    pub fn poisoned(&self) -> bool {
        guard::poisoned() || self.state.as_ref().is_some_and(|s| s.tainted.get())
    }

    /// Makes `abort` stop what this runtime runs until the guard is dropped.
    pub fn arm(&self, abort: Arc<Abort>) -> Armed {
        stop::arm(abort, self.interrupter.clone(), self.worker)
    }

    /// The worker thread this interpreter belongs to.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The handle that runs closures on this interpreter at its next bytecode instruction.
    pub fn interrupter(&self) -> Arc<Interrupter> {
        self.interrupter.clone()
    }

    /// Sets aside what the running job keeps on this thread, for a visit that runs nested in
    /// it; put back when the guard is dropped.
    ///
    /// The visit runs on top of the job's frames: it gets a recursion budget of its own (the
    /// limit is raised by the job's depth) and an exception state of its own (what the job is
    /// handling is neither seen nor chained to by the visit).
    pub fn nest(&self) -> Nested<'_> {
        self.nesting.set(self.nesting.get() + 1);
        let (depth, exception) = self.enter(|vm| {
            let depth = vm.current_recursion_depth();
            vm.recursion_limit.set(vm.recursion_limit.get().saturating_add(depth));
            let exception = vm.current_exception();
            vm.set_exception(None);
            (depth, exception)
        });
        Nested { runtime: self, depth, exception, _session: session::nest() }
    }

    /// Profiles the calls of Python functions for `session` until the guard is dropped.
    pub fn profile(&self, session: &str) -> Profiled<'_> {
        let hook = self.state.as_ref().map(|s| s.profile_hook.clone());
        self.enter(|vm| {
            if let Some(hook) = hook {
                vm.profile_func.replace(hook);
                vm.use_tracing.set(true);
            }
        });
        Profiled { runtime: self, _profiling: crate::profile::begin_profiling(session) }
    }

    /// The registrations the last script body recorded.
    pub fn take_registrations(&self) -> Vec<super::held::Pending> {
        session::with_job(|s| std::mem::take(&mut s.registrations))
    }

    /// Executions that callbacks asked for with `run()` while the last job ran, and the session
    /// they belong to.
    pub fn take_nested(&self) -> (Vec<(RawPlan, Option<rustpython_vm::PyObjectRef>)>, session::Origin) {
        session::with_job(|s| {
            let origin = session::Origin {
                session: s.session_id.clone(),
                source: s.source.clone(),
                run_as: s.run_as.clone(),
                ..Default::default()
            };
            (std::mem::take(&mut s.nested), origin)
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Python objects first, then the interpreter; finalize() frees what a plain drop leaks.
        super::held::clear_all();
        super::upcalls::upcalls().abandon_waiting();
        session::forget();
        self.state = None;
        if let Some(interp) = self.interp.take() {
            interp.enter(pristine::discard_record);
            interp.finalize(None);
        }
    }
}

impl Prepared {
    fn code(&self, vm: &VirtualMachine, script: &str) -> PyResult<PyRef<PyCode>> {
        if let Some(code) = self.codes.borrow().get(script) {
            return Ok(code.clone());
        }
        if let Some(msg) = guard::too_large(script.len()) {
            return Err(vm.new_exception_msg(vm.ctx.exceptions.memory_error.to_owned(), msg.into()));
        }
        // The 0.6 compiler panics on some malformed sources (an unterminated string ending in a
        // multi-byte character): that is a syntax error, not a reason to lose the worker.
        let source = guard::compilable(script);
        let compiled = catch_unwind(AssertUnwindSafe(|| vm.compile(&source, Mode::Exec, "<string>")));
        let code = match compiled {
            Ok(result) => result.map_err(|e| e.into_pyexception(vm, Some(&source)))?,
            Err(_) => {
                return Err(vm.new_exception_msg(vm.ctx.exceptions.syntax_error.to_owned(), "invalid syntax".into()));
            }
        };
        let mut codes = self.codes.borrow_mut();
        if codes.len() >= CODE_CACHE_SIZE {
            codes.clear();
        }
        codes.insert(script.to_owned(), code.clone());
        Ok(code)
    }

    /// Undoes what a job may have changed in interpreter-wide state.
    fn restore(&self, vm: &VirtualMachine) {
        vm.recursion_limit.set(self.recursion_limit);
        // 0 would make int <-> str conversions quadratic inside one native call.
        vm.state.int_max_str_digits.store(self.int_max_str_digits);
        if !pristine::put_back(vm) {
            self.tainted.set(true);
        }
    }
}

fn flush_stdout(vm: &VirtualMachine) {
    if let Ok(stdout) = vm.sys_module.get_attr("stdout", vm) {
        let _ = vm.call_method(&stdout, "flush", ());
    }
}

fn prepare(vm: &VirtualMachine) -> PyResult<Prepared> {
    scrub(vm)?;
    let gears = vm.import("gears", 0)?;
    let writer = gears.get_attr("_LogWriter", vm)?;
    vm.sys_module.set_attr("stdout", writer.call((), vm)?, vm)?;
    vm.sys_module.set_attr("stderr", writer.call((), vm)?, vm)?;
    let env = gears.get_attr("session_env", vm)?.call((), vm)?;
    let env = env
        .downcast::<rustpython_vm::builtins::PyDict>()
        .map_err(|_| vm.new_type_error("session_env() must return a dict"))?;
    env.set_item("__builtins__", vm.builtins.clone().into(), vm)?;
    let native = vm.import("_redisgears", 0)?;
    // The shim has registered its exception types: no script may register others.
    native.del_attr("register_types", vm)?;
    pristine::record(vm)?;
    let profile_hook = native.get_attr("profile_event", vm)?;
    Ok(Prepared {
        profile_hook,
        env,
        recursion_limit: vm.recursion_limit.get(),
        int_max_str_digits: vm.state.int_max_str_digits.load(),
        tainted: Cell::new(false),
        codes: RefCell::new(HashMap::new()),
    })
}

/// Host details that a host_env-free RustPython still exposes (redis-server's command line may
/// hold a password), and functions with process-wide effects.
fn scrub(vm: &VirtualMachine) -> PyResult<()> {
    let sys = &vm.sys_module;
    for name in ["orig_argv", "argv", "path"] {
        sys.set_attr(name, vm.ctx.new_list(Vec::new()), vm)?;
    }
    for name in
        ["executable", "_base_executable", "prefix", "exec_prefix", "base_prefix", "base_exec_prefix", "_stdlib_dir"]
    {
        sys.set_attr(name, vm.ctx.new_str(""), vm)?;
    }
    // Hooks that see every later script's frames and events: what settrace does, and more.
    for name in [
        "settrace",
        "setprofile",
        "_settraceallthreads",
        "_setprofileallthreads",
        "call_tracing",
        "breakpointhook",
        "monitoring",
        "addaudithook",
        "set_asyncgen_hooks",
    ] {
        let _ = sys.as_object().del_attr(name, vm);
    }
    let time = vm.import("time", 0)?;
    for name in ["clock_settime", "clock_settime_ns", "tzset"] {
        let _ = time.as_object().del_attr(name, vm);
    }
    // The VM's sleep ignores aborts; ours wakes every few milliseconds to check.
    let native = vm.import("_redisgears", 0)?;
    time.set_attr("sleep", native.get_attr("sleep", vm)?, vm)?;
    sys.set_attr("setrecursionlimit", native.get_attr("setrecursionlimit", vm)?, vm)?;
    guard::guard_builtins(vm, &native)?;
    super::inflate::install_zlib(vm, &native)?;
    super::nesting::guard_iterators(vm)?;
    super::power::guard_power(vm);
    // Hand-made code objects crash the VM (its eval loop trusts compiler output): scripts may
    // neither build one (`types.CodeType(...)`) nor derive one (`code.replace(co_code=...)`).
    let code_type = vm.ctx.types.code_type;
    for name in ["replace", "__replace__", "__new__"] {
        code_type.attributes.remove(vm.ctx.intern_str(name));
    }
    code_type.slots.new.store(None);
    code_type.modified();
    let builtins = vm.builtins.as_object();
    for name in ["input", "breakpoint"] {
        let _ = builtins.del_attr(name, vm);
    }
    Ok(())
}
