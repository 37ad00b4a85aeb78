//! `_redisgears`: the native half of the `gears` shim. Every capability a script has beyond pure
//! computation goes through here, and is checked here, in Rust.

pub(crate) use _redisgears::module_def;

use std::cell::RefCell;

use rustpython_vm::builtins::PyTypeRef;
use rustpython_vm::{PyObjectRef, VirtualMachine};

/// The shim's exception types, handed over once per interpreter by `register_types`.
pub struct ErrorTypes {
    pub error: PyTypeRef,
    pub forcestopped: PyTypeRef,
    pub flat_error: PyTypeRef,
}

thread_local! {
    static TYPES: RefCell<Option<ErrorTypes>> = const { RefCell::new(None) };
}

pub fn with_types<R>(f: impl FnOnce(&ErrorTypes) -> R) -> Option<R> {
    TYPES.with_borrow(|t| t.as_ref().map(f))
}

/// A `gears.error` with `msg` (a RuntimeError before the shim has registered its types).
pub fn gears_error(vm: &VirtualMachine, msg: impl Into<String>) -> rustpython_vm::builtins::PyBaseExceptionRef {
    let msg = msg.into();
    let class = with_types(|t| t.error.clone()).unwrap_or_else(|| vm.ctx.exceptions.runtime_error.to_owned());
    vm.new_exception_msg(class, msg.into())
}

fn set_types(types: ErrorTypes) {
    TYPES.set(Some(types));
}

fn is_none(obj: &PyObjectRef, vm: &VirtualMachine) -> bool {
    vm.is_none(obj)
}

#[rustpython_vm::pymodule]
mod _redisgears {
    use rustpython_vm::builtins::{PyStrRef, PyTypeRef};
    use rustpython_vm::function::PosArgs;
    use rustpython_vm::{PyObjectRef, PyResult, VirtualMachine};

    use super::{ErrorTypes, gears_error, is_none, set_types};
    use crate::error::GearsError;
    use crate::python::convert::{command_arg, to_python};
    use crate::python::future;
    use crate::python::session::{self, RawPlan};
    use crate::redis::log::{self, Level};
    use crate::reply::Reply;
    use crate::store;

    #[pyfunction]
    fn register_types(error: PyTypeRef, forcestopped: PyTypeRef, flat_error: PyTypeRef) {
        set_types(ErrorTypes { error, forcestopped, flat_error });
    }

    /// Records the execution a builder's `run()` asks for; the worker runs it when the script
    /// body is done (or, for `run()` outside the body, when the current job ends: `done`, an
    /// asyncio future, then gets its `[results, errors]`).
    #[pyfunction(name = "run")]
    fn py_run(
        reader: PyStrRef,
        arg: PyObjectRef,
        steps: PyObjectRef,
        options: PyObjectRef,
        done: PyObjectRef,
        vm: &VirtualMachine,
    ) -> PyResult<()> {
        let plan = RawPlan { reader: reader.to_string_lossy().into_owned(), arg, steps, options };
        // A session rebuilt from its source: its execution ran when it first ran.
        if session::restoring() {
            return Ok(());
        }
        session::with_job(|s| {
            if !s.in_body {
                s.nested.push((plan, (!is_none(&done, vm)).then_some(done)));
                return Ok(());
            }
            if s.body_run.is_some() {
                return Err(gears_error(vm, "Can not run more then 1 executions in a single script"));
            }
            s.body_run = Some(plan);
            Ok(())
        })
    }

    /// A builder takes a plan id, as in RedisGears (docs/commands.md#ids).
    #[pyfunction]
    fn take_plan_id() {
        crate::ids::next_plan_id();
    }

    #[pyfunction]
    fn register(
        reader: PyStrRef,
        desc: PyObjectRef,
        mode: PyStrRef,
        args: PyObjectRef,
        steps: PyObjectRef,
        on_registered: PyObjectRef,
        vm: &VirtualMachine,
    ) -> PyResult<String> {
        let desc = desc.downcast_ref::<rustpython_vm::builtins::PyStr>().map(|d| d.to_string_lossy().into_owned());
        let request = crate::python::register::Request {
            reader: reader.to_string_lossy().into_owned(),
            desc,
            mode: mode.to_string_lossy().into_owned(),
            args,
            steps,
            on_registered: (!is_none(&on_registered, vm)).then_some(on_registered),
        };
        crate::python::register::submit(request, vm)
    }

    #[pyfunction]
    fn execute(args: PosArgs, vm: &VirtualMachine) -> PyResult {
        let args = args.into_vec();
        let Some((command, rest)) = args.split_first() else {
            return Ok(vm.ctx.new_list(Vec::new()).into());
        };
        let Some(command) = command.downcast_ref::<rustpython_vm::builtins::PyStr>() else {
            return Err(gears_error(vm, "the given command must be a string"));
        };
        let command = command.to_string_lossy().into_owned();
        let rest = rest.iter().map(|a| command_arg(a, vm)).collect::<PyResult<Vec<Vec<u8>>>>()?;
        let rest: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
        // A session rebuilt from its source: its writes were made when it first ran.
        if session::restoring() && crate::python::register::is_write(&command) {
            return Ok(vm.ctx.none());
        }
        let reply = match store::current() {
            Some(store) => store.call(&command, &rest),
            None => Reply::Error(GearsError::CommandFailed.to_string()),
        };
        match reply {
            Reply::Error(text) => Err(gears_error(vm, text)),
            reply => Ok(to_python(reply, vm)),
        }
    }

    /// `registerTE(seconds, callback, keyName)`, checked by the shim.
    #[pyfunction]
    fn register_time_event(
        seconds: i64,
        callback: PyObjectRef,
        key: PyObjectRef,
        vm: &VirtualMachine,
    ) -> PyResult<bool> {
        use crate::python::upcalls::{self, TimerRequest, TimerStart};
        let key = key.downcast_ref::<rustpython_vm::builtins::PyStr>().map(|k| k.as_wtf8().as_bytes().to_vec());
        let (session, source, restoring) =
            session::with_job(|s| (s.session_id.clone(), s.source.clone(), s.restoring.is_some()));
        let source = source.map(|s| s.to_string());
        let run_as = store::current().map(|s| s.run_as()).unwrap_or_default();
        let request = TimerRequest { seconds: seconds.max(0) as u64, key, session, source, run_as, restoring };
        match upcalls::upcalls().start_timer(request).map_err(|e| gears_error(vm, e))? {
            TimerStart::Started(id) => {
                crate::python::held::hold_timer(id, callback);
                Ok(true)
            }
            TimerStart::KeyExists => Ok(false),
            TimerStart::Skipped => Ok(true),
        }
    }

    /// `call_next(*args)` of a hook's execution.
    #[pyfunction(name = "call_next")]
    fn py_call_next(args: PosArgs, vm: &VirtualMachine) -> PyResult {
        let Some(chain) = session::with_job(|s| s.hook.clone()) else {
            return Err(gears_error(vm, "Can not get CommandHook ctx"));
        };
        let args = args.into_vec().iter().map(|a| command_arg(a, vm)).collect::<PyResult<Vec<Vec<u8>>>>()?;
        match crate::python::upcalls::upcalls().call_next(&chain, args) {
            Reply::Error(text) => Err(gears_error(vm, text)),
            reply => Ok(to_python(reply, vm)),
        }
    }

    #[pyfunction]
    fn get_command(vm: &VirtualMachine) -> PyResult {
        let Some(link) = session::with_job(|s| s.link.clone()) else {
            return Err(gears_error(vm, "Can not get command ctx"));
        };
        let parts = link.command.iter().map(|a| crate::python::redis_string(a.clone(), vm)).collect();
        Ok(vm.ctx.new_list(parts).into())
    }

    #[pyfunction]
    fn override_reply(value: PyObjectRef, vm: &VirtualMachine) -> PyResult<()> {
        let Some(link) = session::with_job(|s| s.link.clone()) else {
            return Err(gears_error(vm, "Can not get command ctx"));
        };
        let reply = crate::python::to_reply(&value, vm);
        let mut slot = crate::unpoisoned::Unpoisoned::locked(&link.reply);
        if slot.is_some() {
            return Err(gears_error(vm, "Can only override reply once"));
        }
        *slot = Some(reply);
        Ok(())
    }

    /// The profile function of executions profiled for RG.PYPROFILE.
    #[pyfunction]
    fn profile_event(frame: PyObjectRef, event: PyStrRef, _arg: PyObjectRef, vm: &VirtualMachine) -> PyResult<()> {
        match event.to_string_lossy().as_ref() {
            "call" => {
                let code = frame.get_attr("f_code", vm)?;
                let name = code.get_attr("co_qualname", vm).or_else(|_| code.get_attr("co_name", vm))?;
                crate::profile::called(&name.str(vm)?.to_string_lossy());
            }
            "return" => crate::profile::returned(),
            _ => {}
        }
        Ok(())
    }

    #[pyfunction]
    fn atomic_enter(vm: &VirtualMachine) -> PyResult<()> {
        if !store::current().is_some_and(|store| store.hold()) {
            return Err(gears_error(vm, GearsError::AlreadyAtomic.to_string()));
        }
        Ok(())
    }

    #[pyfunction]
    fn atomic_exit() {
        if let Some(store) = store::current() {
            store.release();
        }
    }

    /// True inside an execution that may go asynchronous; false in a script body.
    /// What ShardsIDReader yields on this shard (`shardReaderCallback`).
    #[pyfunction]
    fn shard_reader_id() -> &'static str {
        crate::ids::reader_id()
    }

    /// `hashtag()`: a tag of this shard's first slot.
    #[pyfunction]
    fn hashtag() -> &'static str {
        crate::cluster::my_hashtag()
    }

    #[pyfunction]
    fn is_async_allow() -> bool {
        session::with_job(|s| !s.in_body && s.async_allowed)
    }

    /// True in a script body (where `run()` is the script's own execution).
    #[pyfunction]
    fn in_body() -> bool {
        session::with_job(|s| s.in_body)
    }

    /// `gearsFuture()`: `future` becomes the future of the record the running callback handles.
    #[pyfunction]
    fn future_create(future: PyObjectRef, vm: &VirtualMachine) -> PyResult<u64> {
        future::new_future(future).map_err(|e| gears_error(vm, e.to_string()))
    }

    /// `continueRun(value)` (`ok`) or `continueFailed(error)` of future `id`.
    #[pyfunction]
    fn future_continue(id: u64, ok: bool, value: PyObjectRef, vm: &VirtualMachine) -> PyResult<()> {
        let outcome = if ok { Ok(value) } else { Err(value.str(vm)?.to_string_lossy().into_owned()) };
        future::resolve(id, outcome).map_err(|e| gears_error(vm, e.to_string()))
    }

    #[pyfunction]
    fn future_dropped(id: u64) {
        future::dropped(id);
    }

    /// The execution future `id` belongs to, while its record waits.
    #[pyfunction]
    fn future_owner(id: u64) -> Option<u64> {
        future::owner_of(id)
    }

    /// The execution whose code runs now: the event loop's callbacks run in the context of the
    /// one that scheduled them.
    #[pyfunction]
    fn current_owner() -> Option<u64> {
        future::running_owner()
    }

    /// Makes `owner` the execution whose code runs now (what the event loop's callbacks scheduled
    /// meanwhile belong to); the previous one, to put back.
    #[pyfunction]
    fn swap_owner(owner: Option<u64>) -> Option<u64> {
        future::replace_running_owner(owner)
    }

    /// Runs `callback(*args)` for the event loop, in the context of execution `owner`.
    #[pyfunction(name = "within")]
    fn py_within(owner: Option<u64>, callback: PyObjectRef, args: PyObjectRef, vm: &VirtualMachine) {
        let args: Vec<PyObjectRef> = args.try_to_value(vm).unwrap_or_default();
        crate::python::upcalls::upcalls().within(owner, &mut || {
            let _owning = future::own(owner);
            if let Err(e) = callback.call(args.clone(), vm)
                && !super::with_types(|t| {
                    rustpython_vm::AsObject::class(&e)
                        .fast_issubclass(rustpython_vm::AsObject::as_object(&t.forcestopped))
                })
                .unwrap_or(false)
            {
                log::log(
                    Level::Warning,
                    &format!("Exception in an event loop callback: {}", crate::python::error_text(vm, &e)),
                );
            }
        });
    }

    /// Execution `owner` has scheduled something on the event loop.
    #[pyfunction]
    fn loop_owns(owner: u64) {
        crate::python::event_loop::used_by(owner);
    }

    /// The event loop has something to run within `delay` seconds.
    #[pyfunction]
    fn loop_wake(delay: f64) {
        crate::python::event_loop::wake_within(delay);
    }

    #[pyfunction]
    fn in_atomic() -> bool {
        store::current().is_some_and(|store| store.holding())
    }

    #[pyfunction]
    fn guarded_compile(args: rustpython_vm::function::FuncArgs, vm: &VirtualMachine) -> PyResult {
        crate::python::guard::call_checked("compile", args, vm)
    }

    #[pyfunction]
    fn guarded_eval(args: rustpython_vm::function::FuncArgs, vm: &VirtualMachine) -> PyResult {
        crate::python::guard::call_checked("eval", args, vm)
    }

    #[pyfunction]
    fn guarded_exec(args: rustpython_vm::function::FuncArgs, vm: &VirtualMachine) -> PyResult {
        crate::python::guard::call_checked("exec", args, vm)
    }

    /// `sys.setrecursionlimit`, capped: frames live on the heap, so without a cap a raised
    /// limit is bounded only by the memory budget (3 million frames, 1 GiB).
    #[pyfunction]
    fn setrecursionlimit(limit: i64, vm: &VirtualMachine) -> PyResult<()> {
        if limit < 1 {
            return Err(vm.new_value_error("recursion limit must be greater or equal than 1"));
        }
        vm.recursion_limit.set(limit.min(crate::python::MAX_RECURSION_LIMIT as i64) as usize);
        Ok(())
    }

    #[pyfunction]
    fn sleep(seconds: rustpython_vm::function::ArgIntoFloat, vm: &VirtualMachine) -> PyResult<()> {
        crate::python::interrupt::stoppable_sleep(vm, seconds.into_float())
    }

    #[pyfunction(name = "log")]
    fn py_log(message: PyStrRef, level: PyStrRef) {
        let level = match level.to_string_lossy().as_ref() {
            "debug" => Level::Debug,
            "verbose" => Level::Verbose,
            "warning" => Level::Warning,
            _ => Level::Notice,
        };
        log::log(level, &message.to_string_lossy());
    }

    /// `os.urandom` for the sandbox's `os` stand-in (uuid, random and hashlib seed from it).
    #[pyfunction]
    fn urandom(size: isize, vm: &VirtualMachine) -> PyResult {
        const MAX: isize = 1 << 20;
        if !(0..=MAX).contains(&size) {
            return Err(vm.new_value_error(format!("urandom size must be between 0 and {MAX}")));
        }
        let mut buf = vec![0u8; size as usize];
        getrandom::fill(&mut buf).map_err(|e| vm.new_os_error(e.to_string()))?;
        Ok(vm.ctx.new_bytes(buf).into())
    }

    #[pyfunction]
    fn config_get(key: PyObjectRef, vm: &VirtualMachine) -> PyResult {
        if is_none(&key, vm) {
            return Ok(vm.ctx.none());
        }
        let key = key.str(vm)?;
        let value = crate::config::with(|c| c.extra(&key.to_string_lossy()).map(str::to_owned));
        Ok(match value {
            Some(v) => vm.ctx.new_str(v).into(),
            None => vm.ctx.none(),
        })
    }
}
