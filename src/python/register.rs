//! `register()`'s native half: the shim has checked the kwargs' types and values (RedisGears'
//! texts, in its order); here they become a `Spec`, the checks that need Redis or the session
//! run, and the registration is recorded in the session (applied when the script body ends) or,
//! outside a script body, applied at once.

use rustpython_vm::builtins::{PyDict, PyStr};
use rustpython_vm::{AsObject, PyObjectRef, PyResult, VirtualMachine};

use super::held::{self, Callbacks, Pending};
use super::native::gears_error;
use super::session;
use crate::registrations::{FailurePolicy, Kind, Mode, Spec};
use crate::reply::Reply;
use crate::store;

pub struct Request {
    pub reader: String,
    pub desc: Option<String>,
    pub mode: String,
    pub args: PyObjectRef,
    pub steps: PyObjectRef,
    pub on_registered: Option<PyObjectRef>,
}

pub fn submit(request: Request, vm: &VirtualMachine) -> PyResult<String> {
    let mode = Mode::parse(&request.mode).ok_or_else(|| gears_error(vm, "unknown execution mode"))?;
    let kind = kind(&request.reader, &request.args, vm)?;
    check_commands(&kind, vm)?;
    check_session(&kind, vm)?;
    let restored = session::with_job(|s| s.restoring.as_mut().map(|ids| ids.pop_front()));
    let id = match restored {
        Some(Some(id)) => id,
        // The source registers more than it did when it was saved: the extra ones are left out.
        Some(None) => return Err(gears_error(vm, "the session's source registers more than it did when saved")),
        None => crate::ids::next_plan_id(),
    };
    let spec = Spec { id: id.clone(), desc: request.desc, mode, kind };
    let callbacks = Callbacks { steps: request.steps, on_registered: request.on_registered };
    let in_body = session::with_job(|s| s.in_body);
    if in_body || session::restoring() {
        session::with_job(|s| s.registrations.push(Pending { spec, callbacks }));
        return Ok(id);
    }
    // From a step callback or a time event: joins the session of the code that called it.
    let (Some(session_id), source) = session::with_job(|s| (s.session_id.clone(), s.source.clone())) else {
        return Err(gears_error(vm, "register() here belongs to no session"));
    };
    held::keep_callbacks(&id, callbacks.clone());
    let source = source.map_or_else(String::new, |s| s.to_string());
    if let Err(text) = super::upcalls::upcalls().join_session(&session_id, &source, spec, callbacks) {
        held::drop_callbacks(&id);
        return Err(gears_error(vm, text));
    }
    Ok(id)
}

fn item(dict: &rustpython_vm::Py<PyDict>, name: &str, vm: &VirtualMachine) -> Option<PyObjectRef> {
    dict.get_item_opt(name, vm).ok().flatten().filter(|v| !vm.is_none(v))
}

fn str_arg(value: Option<PyObjectRef>) -> Option<String> {
    value.and_then(|v| v.downcast_ref::<PyStr>().map(|s| s.to_string_lossy().into_owned()))
}

fn texts(value: Option<PyObjectRef>, vm: &VirtualMachine) -> Option<Vec<String>> {
    let list = value?;
    let items: Vec<PyObjectRef> = list.try_to_value(vm).ok()?;
    Some(items.into_iter().filter_map(|i| str_arg(Some(i))).collect())
}

fn int_arg(value: Option<PyObjectRef>, default: u64, vm: &VirtualMachine) -> u64 {
    value.and_then(|v| v.try_to_value::<i64>(vm).ok()).map_or(default, |n| n.max(0) as u64)
}

fn flag(value: Option<PyObjectRef>, default: bool, vm: &VirtualMachine) -> bool {
    value.map_or(default, |v| v.is(&vm.ctx.true_value))
}

fn kind(reader: &str, args: &PyObjectRef, vm: &VirtualMachine) -> PyResult<Kind> {
    let dict = args.downcast_ref::<PyDict>().ok_or_else(|| gears_error(vm, "register arguments must be a dict"))?;
    let get = |name: &str| item(dict, name, vm);
    Ok(match reader {
        "KeysReader" => Kind::Keys {
            prefix: str_arg(get("prefix")).unwrap_or_else(|| "*".to_owned()),
            event_types: texts(get("eventTypes"), vm),
            key_types: texts(get("keyTypes"), vm),
            read_value: flag(get("readValue"), true, vm),
            commands: texts(get("commands"), vm).map(|c| c.iter().map(|c| c.to_ascii_lowercase()).collect()),
        },
        "StreamReader" => Kind::Stream {
            prefix: str_arg(get("prefix")).unwrap_or_else(|| "*".to_owned()),
            batch: int_arg(get("batch"), 1, vm).max(1),
            duration_ms: int_arg(get("duration"), 0, vm),
            policy: str_arg(get("onFailedPolicy"))
                .and_then(|p| FailurePolicy::parse(&p))
                .unwrap_or(FailurePolicy::Continue),
            retry_secs: int_arg(get("retryInterval"), 1, vm),
            trim: flag(get("trimStream"), true, vm),
        },
        "CommandReader" => Kind::Command {
            trigger: str_arg(get("trigger")),
            hook: str_arg(get("hook")).map(|h| h.to_ascii_lowercase()),
            keyprefix: str_arg(get("keyprefix")),
            inorder: flag(get("inorder"), false, vm),
        },
        _ => return Err(gears_error(vm, "given reader does not exists or does not support register")),
    })
}

/// What Redis says of a command: (exists, flags).
fn command_flags(name: &str) -> Option<Vec<String>> {
    let store = store::current()?;
    match store.introspect("COMMAND", &[b"INFO", name.as_bytes()]) {
        Reply::Array(mut entries) => match entries.pop() {
            Some(Reply::Array(info)) => match info.get(2) {
                Some(Reply::Array(flags)) => Some(
                    flags
                        .iter()
                        .filter_map(|f| match f {
                            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
                            Reply::Simple(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => Some(Vec::new()),
            },
            _ => None,
        },
        _ => None,
    }
}

/// Hooks and `commands=` need commands that exist, may run inside a script (hooks run there),
/// and, filtered by key prefix, have fixed key positions.
fn check_commands(kind: &Kind, vm: &VirtualMachine) -> PyResult<()> {
    match kind {
        Kind::Command { hook: Some(hook), keyprefix, .. } => {
            let flags = command_flags(hook).ok_or_else(|| gears_error(vm, "Can not override an unexisting command"))?;
            if flags.iter().any(|f| f == "noscript") {
                return Err(gears_error(vm, "Can not override a command which are not allowed inside a script"));
            }
            if keyprefix.is_some() && flags.iter().any(|f| f == "movablekeys") {
                return Err(gears_error(vm, "Can not override a command with moveable keys by key prefix"));
            }
        }
        Kind::Keys { commands: Some(commands), .. } => {
            for command in commands {
                let flags = command_flags(command)
                    .ok_or_else(|| gears_error(vm, format!("Failed getting command info of {command}, bad reply")))?;
                if flags.iter().any(|f| f == "noscript") {
                    return Err(gears_error(vm, "Can not hook a command which are not allowed inside a script"));
                }
                // A KeysReader registration always carries a prefix.
                if flags.iter().any(|f| f == "movablekeys") {
                    return Err(gears_error(vm, "Can not hook a command with moveable keys by key prefix"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Conflicts with what the same script registered before.
fn check_session(kind: &Kind, vm: &VirtualMachine) -> PyResult<()> {
    session::with_job(|s| {
        for pending in &s.registrations {
            if kind.trigger().is_some() && pending.spec.kind.trigger() == kind.trigger() {
                return Err(gears_error(vm, "trigger already registered in this session"));
            }
            if kind.hook().is_some() && pending.spec.kind.hook() == kind.hook() && pending.spec.mode != Mode::Sync {
                return Err(gears_error(
                    vm,
                    "Can not override a none sync registration which already created on this session",
                ));
            }
        }
        Ok(())
    })
}

/// Whether `command` writes, for `execute()` while a session is rebuilt from its source (its
/// writes happened when the script first ran).
pub fn is_write(command: &str) -> bool {
    command_flags(command).is_some_and(|flags| flags.iter().any(|f| f == "write"))
}
