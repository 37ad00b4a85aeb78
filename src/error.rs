//! Every error a client can see, and its exact text. RedisGears clients match on these strings
//! (typos included), so the text is decided here and nowhere else.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GearsError {
    /// Answered with Redis's own wrong-arity error, not with this text.
    #[error("wrong number of arguments")]
    WrongArity,
    #[error("Can not run gears inside a multi exec, lua, or when blocking is not allowed")]
    BlockingNotAllowed,
    #[error("{0} is missing")]
    MissingValue(String),
    #[error("ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']")]
    BadSessionId,
    #[error("Can not replace with {0}, session does not exists.")]
    NoSessionToReplace(String),
    #[error("Can not replace an existing session {0} with {1}")]
    CanNotReplaceExisting(String, String),
    #[error("Session {0} already exists")]
    SessionExists(String),
    #[error("execution is not registered")]
    NotRegistered,
    #[error("Execution {0} does not exists on shard {1}")]
    NoRegistrationOnShard(String, String),
    #[error("Reader {0} does not support pause")]
    NoPause(String),
    #[error("Reader {0} does not support unpause")]
    NoUnpause(String),
    #[error("ERR subcommand not found")]
    NoSuchTrigger,
    #[error("ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.")]
    NonSyncNotAllowed,
    #[error("Command hook must return exactly one result")]
    HookResults,
    #[error("Unknown option {0}")]
    UnknownOption(String),
    #[error("session does not exists")]
    NoSuchSession,
    #[error("Wrong subcommand given to RG.PYPROFILE")]
    ProfileSubcommand,
    #[error("no profile data was collected for session {0} (set ProfileExecutions to 1)")]
    NothingProfiled(String),
    /// Replication and AOF commands, refused from clients.
    #[error("rustgears: {0} is internal (replication and AOF only)")]
    InternalCommand(String),
    #[error("rustgears: RG.INNERHOOK is internal: it runs only the commands that registrations intercept")]
    HookInternal,
    #[error("rustgears: bad registration data: {0}")]
    BadRegistrationData(String),
    #[error("Could not satisfy requirements, Python package installation is not supported")]
    RequirementsNotSupported,
    #[error("requirement does not exists")]
    NoSuchRequirement,
    #[error("Unknown arguments were given: {0}")]
    UnknownArgument(String),
    #[error("execution plan does not exist")]
    NoSuchExecution,
    #[error("execution does not exist")]
    NoSuchAbortTarget,
    #[error("unknown subcommand")]
    UnknownSubcommand,
    #[error("no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead")]
    NoCluster,
    #[error("execution is still running")]
    StillRunning,
    #[error("can not drop a not yet finished execution, abort it first.")]
    DropRunning,
    #[error("failed running the given script")]
    ScriptFailed,
    /// A Python exception, already formatted as docs/commands.md#python-error-texts says.
    #[error("{0}")]
    Python(String),
    /// `execute()` with no Redis to run it (outside a server), or a reply it cannot convert.
    #[error("Failed executing command")]
    CommandFailed,
    /// A command name no command has (one with a NUL byte), in Redis's words.
    #[error("ERR unknown command '{0}', with args beginning with: ")]
    UnknownCommand(String),
    /// ACL refusals of what a script runs: Redis's words for a client's (docs/sandbox.md#security-model).
    #[error("NOPERM this user has no permissions to run the '{0}' command")]
    NoPermCommand(String),
    #[error("NOPERM this user has no permissions to access one of the keys used as arguments")]
    NoPermKey,
    #[error("NOPERM this user has no permissions to access one of the channels used as arguments")]
    NoPermChannel,
    #[error("NOPERM the user '{0}' this runs as does not exist")]
    NoSuchUser(String),
    #[error("NOPERM this runs as no user")]
    NoUser,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("NOPERM only the user that registered session {0}, or one that may run ACL SETUSER, may change it")]
    NotOwner(String),
    #[error(
        "ERR {0} command not allowed. If the {1} option is set to \"local\", you can run it from a local \
         connection, otherwise you need to set this option in the configuration file, and then restart the server."
    )]
    ProtectedCommand(&'static str, &'static str),
    #[error("rustgears: sync executions nested more than {0} deep (does a sync registration fire itself?)")]
    NestedTooDeep(usize),
    #[error("rustgears: a record nested more than {0} lists deep cannot be replied")]
    NestedTooDeepReply(usize),
    #[error("Already inside an atomic block")]
    AlreadyAtomic,
    #[error("Execution was stopped because the module is shutting down")]
    ShuttingDown,
    /// The watchdog gave up on a worker stuck in native code while it ran this script.
    #[error("{} (its worker is stuck in native code and was replaced)", .0.message())]
    StuckWorker(Reason),
    /// Every worker that could take the job is stuck in native code and none was replaced.
    #[error("rustgears: no worker left to run this (every one is stuck in native code; see the Redis log)")]
    NoWorker,
    /// A call on behalf of the main thread found its worker busy in native code.
    #[error("rustgears: the session's worker did not take the call in time (busy in native code)")]
    HomeBusy,
    #[error("Future object can only be created inside certain execution steps")]
    FutureOutsideStep,
    #[error("Step does not support async")]
    StepNotAsync,
    #[error("Can not create async record twice on the same step")]
    FutureTwice,
    #[error("Can not continue with the same future twice")]
    FutureContinuedTwice,
    #[error("Can not handle future untill it returned from the callback")]
    FutureNotReturned,
    #[error("Creating async record is not allowed")]
    AsyncNotAllowed,
    #[error("Async record did not called continue")]
    FutureDropped,
    #[error("coroutine are not allow on extractor")]
    CoroutineOnExtractor,
    #[error("coroutine are not allow on reduce")]
    CoroutineOnReduce,
    /// A record that cannot cross to another shard (RedisGears: it failed to pickle).
    #[error("Failed serializing a record for another shard: {0} can not be sent")]
    NotSerializable(String),
    /// No shard said anything about a distributed execution for ExecutionMaxIdleTime.
    #[error("Execution max idle reached")]
    ExecutionMaxIdle,
    /// A shard could not take part in a distributed execution.
    #[error("shard {0} could not run its part: {1}")]
    ShardFailed(String, String),
    /// A peer restarted (a new run id) while a distributed execution counted on it.
    #[error("shard {0} restarted during the execution")]
    ShardRestarted(String),
    #[error("the test hooks are off: load the module with TestHooks 1")]
    TestHooksOff,
    #[error("rustgears internal error: {0}")]
    Internal(String),
}

/// Errors found while reading load arguments; the module refuses to load with one of these.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no value given for load argument {0}")]
    MissingValue(String),
    #[error("invalid value {value:?} for {name}: {why}")]
    InvalidValue { name: String, value: String, why: &'static str },
}

/// Why an execution is being stopped; decides the exception it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Aborted = 1,
    TimedOut = 2,
    OutOfMemory = 3,
}

impl Reason {
    pub(crate) fn from_u8(n: u8) -> Option<Reason> {
        match n {
            1 => Some(Reason::Aborted),
            2 => Some(Reason::TimedOut),
            3 => Some(Reason::OutOfMemory),
            _ => None,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reason::Aborted => "Execution was aborted",
            Reason::TimedOut => "Execution time limit reached",
            Reason::OutOfMemory => "Python memory limit reached",
        }
    }
}
