//! What a registration is, as plain data: its reader's arguments and mode. This is what is
//! listed, persisted and replicated; the Python callbacks stay on the session's home worker.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Async,
    AsyncLocal,
    Sync,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "async" => Some(Mode::Async),
            "async_local" => Some(Mode::AsyncLocal),
            "sync" => Some(Mode::Sync),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::AsyncLocal => "async_local",
            Mode::Sync => "sync",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailurePolicy {
    Continue,
    Abort,
    Retry,
}

impl FailurePolicy {
    pub fn parse(text: &str) -> Option<FailurePolicy> {
        match text.to_ascii_lowercase().as_str() {
            "continue" => Some(FailurePolicy::Continue),
            "abort" => Some(FailurePolicy::Abort),
            "retry" => Some(FailurePolicy::Retry),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Continue => "continue",
            FailurePolicy::Abort => "abort",
            FailurePolicy::Retry => "retry",
        }
    }
}

/// The reader a registration listens with, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Keys {
        prefix: String,
        event_types: Option<Vec<String>>,
        key_types: Option<Vec<String>>,
        read_value: bool,
        commands: Option<Vec<String>>,
    },
    Stream {
        prefix: String,
        batch: u64,
        duration_ms: u64,
        policy: FailurePolicy,
        retry_secs: u64,
        trim: bool,
    },
    Command {
        trigger: Option<String>,
        hook: Option<String>,
        keyprefix: Option<String>,
        inorder: bool,
    },
}

impl Kind {
    pub fn reader(&self) -> &'static str {
        match self {
            Kind::Keys { .. } => "KeysReader",
            Kind::Stream { .. } => "StreamReader",
            Kind::Command { .. } => "CommandReader",
        }
    }

    /// The trigger name of a trigger registration.
    pub fn trigger(&self) -> Option<&str> {
        match self {
            Kind::Command { trigger, .. } => trigger.as_deref(),
            _ => None,
        }
    }

    /// The hooked command (lower case) of a hook registration.
    pub fn hook(&self) -> Option<&str> {
        match self {
            Kind::Command { hook, .. } => hook.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub id: String,
    pub desc: Option<String>,
    pub mode: Mode,
    pub kind: Kind,
}

/// A key prefix as registrations use it: ending in `*`, the keys starting with the rest; else
/// the one key. No other glob character means anything.
pub fn prefix_matches(prefix: &[u8], key: &[u8]) -> bool {
    match prefix.strip_suffix(b"*") {
        Some(start) => key.starts_with(start),
        None => prefix == key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rule() {
        assert!(prefix_matches(b"*", b"anything"));
        assert!(prefix_matches(b"user:*", b"user:1"));
        assert!(!prefix_matches(b"user:*", b"use"));
        assert!(prefix_matches(b"user", b"user"));
        assert!(!prefix_matches(b"user", b"user:1"));
        // Only a trailing star is special.
        assert!(!prefix_matches(b"u?er", b"user"));
        assert!(prefix_matches(b"u?er", b"u?er"));
    }
}
