//! Command hooks (`CommandReader` with `hook=`) and the commands that KeysReader registrations
//! with `commands=` follow: which commands are intercepted, and the chain a hook's `call_next`
//! walks (docs/python-api.md#hooks).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{Kind, Registration, registry};
use crate::redis::blocked::BlockedClient;
use crate::reply::Reply;
use crate::store::RunAs;
use crate::unpoisoned::Unpoisoned;

/// Registrations that intercept commands: while none exists the command filter returns at once.
static INTERCEPTING: AtomicUsize = AtomicUsize::new(0);

/// Recounts the intercepting registrations (the caller holds the registry).
pub(super) fn recount_hooks(registrations: &[Arc<Registration>]) {
    let n = registrations.iter().filter(|r| intercepted_commands(&r.spec.kind).is_some()).count();
    INTERCEPTING.store(n, Ordering::Release);
}

fn intercepted_commands(kind: &Kind) -> Option<Vec<&str>> {
    match kind {
        Kind::Command { hook: Some(hook), .. } => Some(vec![hook.as_str()]),
        Kind::Keys { commands: Some(commands), .. } => Some(commands.iter().map(String::as_str).collect()),
        _ => None,
    }
}

/// Whether the command filter should send `command` to the module (any case).
pub fn intercepts(command: &[u8]) -> bool {
    if INTERCEPTING.load(Ordering::Acquire) == 0 {
        return false;
    }
    registry()
        .registrations
        .iter()
        .filter_map(|r| intercepted_commands(&r.spec.kind))
        .any(|names| names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(command)))
}

/// The hooks of `command` (lower case) that apply to a call with these keys, newest first.
/// `keys` is asked only if a hook filters by key prefix.
pub fn chain(command: &str, keys: &mut dyn FnMut() -> Vec<Vec<u8>>) -> Vec<Arc<Registration>> {
    let hooks: Vec<Arc<Registration>> =
        registry().registrations.iter().rev().filter(|r| r.spec.kind.hook() == Some(command)).cloned().collect();
    let mut known_keys: Option<Vec<Vec<u8>>> = None;
    hooks
        .into_iter()
        .filter(|r| match &r.spec.kind {
            Kind::Command { keyprefix: Some(prefix), .. } => {
                let keys = known_keys.get_or_insert_with(&mut *keys);
                keys.iter().any(|k| k.starts_with(prefix.as_bytes()))
            }
            _ => true,
        })
        .collect()
}

/// Whether a KeysReader registration follows `command`.
pub fn any_follows(command: &str) -> bool {
    registry().registrations.iter().any(|r| match &r.spec.kind {
        Kind::Keys { commands: Some(names), .. } => names.iter().any(|n| n == command),
        _ => false,
    })
}

/// Where a hook execution's `call_next` goes: the older hooks of the command that apply, then
/// the command itself.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The command's name, lower case.
    pub command: String,
    pub rest: Vec<Arc<Registration>>,
    pub db: i32,
    /// Whom `call_next` runs as: the owner of the hook that holds the chain (the client that
    /// sent the command was checked when it was intercepted).
    pub run_as: RunAs,
}

/// The command a KeysReader registration with `commands=` was fired by, shared by the
/// executions it started: `get_command` reads it, `override_reply` sets the reply its client
/// gets (once). The client waits for the async executions it started.
pub struct CommandLink {
    pub command: Vec<Vec<u8>>,
    pub reply: Mutex<Option<Reply>>,
    /// Executions the client waits for, plus one held by the command until it has parked it.
    waiting: AtomicUsize,
    parked: Mutex<Option<(BlockedClient, Reply)>>,
}

impl CommandLink {
    pub fn new(command: Vec<Vec<u8>>) -> Arc<CommandLink> {
        Arc::new(CommandLink {
            command,
            reply: Mutex::new(None),
            waiting: AtomicUsize::new(1),
            parked: Mutex::new(None),
        })
    }

    /// One more execution the client waits for.
    pub fn wait_for_one(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    /// True if executions are still awaited (besides the command's own hold).
    pub fn awaited(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 1
    }

    /// One awaited execution ended (or the command parked its client): the last one answers.
    pub fn one_done(&self) {
        if self.waiting.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some((client, original)) = self.parked.locked().take()
        {
            client.reply(Arc::new(self.take_reply(original)));
        }
    }

    /// The command's reply: the override if an execution set one.
    pub fn take_reply(&self, original: Reply) -> Reply {
        self.reply.locked().take().unwrap_or(original)
    }

    /// Leaves the blocked client to be answered when the awaited executions end.
    pub fn park(&self, client: BlockedClient, original: Reply) {
        *self.parked.locked() = Some((client, original));
        self.one_done();
    }
}
