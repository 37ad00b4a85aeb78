//! Every RG.* command's arguments, parsed into a `Command` without touching Redis, so that the
//! whole grammar (and its error texts, in RedisGears' order of checks) can be unit-tested and
//! fuzzed.

pub use super::registrations::DumpSessions;
use crate::error::GearsError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PyExecute {
        script: Vec<u8>,
        options: ExecuteOptions,
    },
    GetResults {
        id: String,
    },
    GetResultsBlocking {
        id: String,
    },
    DumpExecutions,
    DropExecution {
        id: String,
    },
    AbortExecution {
        id: String,
    },
    /// `cluster`: every shard's entry (CLUSTER), not only this one's.
    GetExecution {
        id: String,
        cluster: bool,
    },
    ConfigGet {
        names: Vec<String>,
    },
    /// Pairs, and a last name given without a value.
    ConfigSet {
        pairs: Vec<(String, String)>,
        dangling: Option<String>,
    },
    PyStats,
    /// A test hook: the script run on behalf of the main thread.
    TestSync {
        script: Vec<u8>,
    },
    DumpRegistrations,
    Unregister {
        id: String,
        abort_pending: bool,
    },
    Pause {
        ids: Vec<String>,
        pause: bool,
    },
    ClearRegistrationsStats,
    /// RG.TRIGGER / RG.TRIGGERONKEY: the trigger's name, then its arguments.
    Trigger {
        args: Vec<Vec<u8>>,
    },
    PyDumpSessions(DumpSessions),
    PyProfile {
        reset: bool,
        session: String,
    },
    /// A command that registrations intercept, sent by the command filter (`proven`: with its
    /// proof; `authenticated`: through the inner command Redis authenticates).
    Hook {
        record: Vec<Vec<u8>>,
        proven: bool,
        authenticated: bool,
    },
    /// Replication and AOF only (docs/architecture.md#persistence-and-replication).
    InnerRegister {
        blob: Vec<u8>,
    },
    InnerUnregister {
        id: String,
    },
    /// The cluster as the module sees it, read again first.
    InfoCluster,
    RefreshCluster,
    /// Commands whose reply never depends on state (docs/commands.md#other-commands).
    Fixed(Fixed),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    DumpPlugins,
    PyExecuteRemote,
    PyFreeInterpreter,
    PyDumpReqs,
    PyExportReq,
    PyImportReq,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecuteOptions {
    pub unblocking: bool,
    pub id: Option<String>,
    pub description: Option<String>,
    pub upgrade: bool,
    pub replace_with: Option<String>,
    pub requirements: Vec<String>,
}

/// The names the module registers, in the order it registers them.
pub const NAMES: &[&str] = &[
    "rg.pyexecute",
    "rg.getresults",
    "rg.getresultsblocking",
    "rg.dumpexecutions",
    "rg.dropexecution",
    "rg.abortexecution",
    "rg.getexecution",
    "rg.configget",
    "rg.configset",
    "rg.pystats",
    "rg.dumpplugins",
    "rg.pyexecuteremote",
    "rg.pyfreeinterpreter",
    "rg.infocluster",
    "rg.refreshcluster",
    "rg.pydumpreqs",
    "rg.pyexportreq",
    "rg.pyimportreq",
    "rg.testsync",
    "rg.dumpregistrations",
    "rg.unregister",
    "rg.pauseregistrations",
    "rg.unpauseregistrations",
    "rg.clearregistrationsstats",
    "rg.trigger",
    "rg.triggeronkey",
    "rg.pydumpsessions",
    "rg.pyprofile",
    "rg.innerregister",
    "rg.innerunregister",
    "rg.innerhook",
    "rg.innerhookauth",
];

fn lossy_text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Parses a whole command line, name first.
pub fn parse(args: &[Vec<u8>]) -> Result<Command, GearsError> {
    let name = args.first().map(|n| lossy_text(n).to_ascii_lowercase()).unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default();
    let one_id = || match rest {
        [id] => Ok(lossy_text(id)),
        _ => Err(GearsError::WrongArity),
    };
    Ok(match name.as_str() {
        "rg.pyexecute" => {
            let [script, options @ ..] = rest else { return Err(GearsError::WrongArity) };
            let options: Vec<String> = options.iter().map(|o| lossy_text(o)).collect();
            Command::PyExecute { script: script.clone(), options: ExecuteOptions::parse(&options)? }
        }
        // RedisGears ignores whatever follows the id here.
        "rg.getresults" => Command::GetResults { id: lossy_text(rest.first().ok_or(GearsError::WrongArity)?) },
        "rg.getresultsblocking" => Command::GetResultsBlocking { id: one_id()? },
        "rg.dumpexecutions" => Command::DumpExecutions,
        "rg.dropexecution" => Command::DropExecution { id: one_id()? },
        "rg.abortexecution" => Command::AbortExecution { id: one_id()? },
        "rg.getexecution" => get_execution_args(rest)?,
        "rg.configget" if !rest.is_empty() => {
            Command::ConfigGet { names: rest.iter().map(|n| lossy_text(n)).collect() }
        }
        "rg.configset" if !rest.is_empty() => config_set_args(rest),
        "rg.pystats" => Command::PyStats,
        "rg.testsync" => match rest {
            [script] => Command::TestSync { script: script.clone() },
            _ => return Err(GearsError::WrongArity),
        },
        "rg.dumpregistrations" => Command::DumpRegistrations,
        "rg.infocluster" => Command::InfoCluster,
        "rg.refreshcluster" => Command::RefreshCluster,
        "rg.unregister" => unregister_args(rest)?,
        "rg.pauseregistrations" | "rg.unpauseregistrations" if !rest.is_empty() => Command::Pause {
            ids: rest.iter().map(|id| lossy_text(id)).collect(),
            pause: name == "rg.pauseregistrations",
        },
        "rg.clearregistrationsstats" if rest.is_empty() => Command::ClearRegistrationsStats,
        "rg.trigger" if !rest.is_empty() => Command::Trigger { args: rest.to_vec() },
        "rg.triggeronkey" if rest.len() >= 2 => Command::Trigger { args: rest.to_vec() },
        "rg.pydumpsessions" => Command::PyDumpSessions(dump_sessions_args(rest)?),
        "rg.pyprofile" => py_profile(rest)?,
        "rg.innerhook" | "rg.innerhookauth" if rest.len() >= 2 => Command::Hook {
            record: rest[1..].to_vec(),
            proven: crate::redis::filter::proves(&rest[0]),
            authenticated: name == "rg.innerhookauth",
        },
        "rg.innerhook" | "rg.innerhookauth" => return Err(GearsError::HookInternal),
        "rg.innerregister" if rest.len() == 1 => Command::InnerRegister { blob: rest[0].clone() },
        "rg.innerunregister" if rest.len() == 1 => Command::InnerUnregister { id: lossy_text(&rest[0]) },
        _ => Command::Fixed(fixed_command(&name, rest).ok_or(GearsError::WrongArity)?),
    })
}

fn get_execution_args(rest: &[Vec<u8>]) -> Result<Command, GearsError> {
    let (id, mode) = match rest {
        [id] => (id, None),
        [id, mode] => (id, Some(lossy_text(mode).to_ascii_uppercase())),
        _ => return Err(GearsError::WrongArity),
    };
    match mode.as_deref() {
        None | Some("SHARD") => Ok(Command::GetExecution { id: lossy_text(id), cluster: false }),
        Some("CLUSTER") => Ok(Command::GetExecution { id: lossy_text(id), cluster: true }),
        Some(_) => Err(GearsError::UnknownSubcommand),
    }
}

fn config_set_args(rest: &[Vec<u8>]) -> Command {
    let mut pairs = Vec::new();
    let mut chunks = rest.chunks_exact(2);
    for pair in chunks.by_ref() {
        pairs.push((lossy_text(&pair[0]), lossy_text(&pair[1])));
    }
    Command::ConfigSet { pairs, dangling: chunks.remainder().first().map(|n| lossy_text(n)) }
}

fn unregister_args(rest: &[Vec<u8>]) -> Result<Command, GearsError> {
    match rest {
        [id] => Ok(Command::Unregister { id: lossy_text(id), abort_pending: false }),
        [id, flag] if flag.eq_ignore_ascii_case(b"abortpending") => {
            Ok(Command::Unregister { id: lossy_text(id), abort_pending: true })
        }
        _ => Err(GearsError::WrongArity),
    }
}

fn py_profile(rest: &[Vec<u8>]) -> Result<Command, GearsError> {
    let [sub, session, ..] = rest else { return Err(GearsError::WrongArity) };
    if rest.len() > 3 {
        return Err(GearsError::WrongArity);
    }
    match lossy_text(sub).to_ascii_uppercase().as_str() {
        "STATS" => Ok(Command::PyProfile { reset: false, session: lossy_text(session) }),
        "RESET" if rest.len() == 2 => Ok(Command::PyProfile { reset: true, session: lossy_text(session) }),
        "RESET" => Err(GearsError::WrongArity),
        _ => Err(GearsError::ProfileSubcommand),
    }
}

/// The commands whose reply never changes here (requirements and retired ones).
fn fixed_command(name: &str, rest: &[Vec<u8>]) -> Option<Fixed> {
    Some(match name {
        "rg.dumpplugins" => Fixed::DumpPlugins,
        "rg.pyexecuteremote" => Fixed::PyExecuteRemote,
        "rg.pyfreeinterpreter" => Fixed::PyFreeInterpreter,
        "rg.pydumpreqs" => Fixed::PyDumpReqs,
        "rg.pyexportreq" if rest.len() == 1 => Fixed::PyExportReq,
        "rg.pyimportreq" if !rest.is_empty() => Fixed::PyImportReq,
        _ => return None,
    })
}

/// RG.PYDUMPSESSIONS [VERBOSE] [DEAD] [SESSIONS <id> ...], options in any case.
fn dump_sessions_args(args: &[Vec<u8>]) -> Result<DumpSessions, GearsError> {
    let mut options = DumpSessions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match lossy_text(arg).to_ascii_uppercase().as_str() {
            "VERBOSE" => options.verbose = true,
            "DEAD" => options.dead = true,
            "SESSIONS" => {
                options.sessions = Some(args.by_ref().map(|id| lossy_text(id)).collect());
            }
            _ => return Err(GearsError::UnknownOption(lossy_text(arg))),
        }
    }
    Ok(options)
}

impl ExecuteOptions {
    /// Parses what follows the script. Every token is read first, then the checks run in
    /// RedisGears' order (docs/commands.md#rgpyexecute): a missing value, a bad ID, an unknown token, ...
    pub fn parse(args: &[String]) -> Result<ExecuteOptions, GearsError> {
        let mut options = ExecuteOptions::default();
        let mut missing = None;
        let mut unknown = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &'static str| {
                let value = args.next().cloned();
                if value.is_none() {
                    missing.get_or_insert(name);
                }
                value
            };
            match arg.to_ascii_uppercase().as_str() {
                "UNBLOCKING" => options.unblocking = true,
                "UPGRADE" => options.upgrade = true,
                "FORCE_REINSTALL_REQUIREMENTS" => {}
                "ID" => options.id = value("ID"),
                "DESCRIPTION" => options.description = value("DESCRIPTION"),
                "REPLACE_WITH" => options.replace_with = value("REPLACE_WITH"),
                "REQUIREMENTS" => {
                    options.requirements = args.cloned().collect();
                    break;
                }
                _ => {
                    unknown.get_or_insert_with(|| arg.clone());
                }
            }
        }
        if let Some(name) = missing {
            return Err(GearsError::MissingValue(name.to_owned()));
        }
        if let Some(id) = &options.id
            && !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(GearsError::BadSessionId);
        }
        if let Some(token) = unknown {
            return Err(GearsError::UnknownArgument(token));
        }
        // The checks that need the session table (an existing session, the one to replace) and
        // the requirements' come after, in `pyexecute`.
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn options(args: &[&str]) -> Result<ExecuteOptions, GearsError> {
        ExecuteOptions::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_in_any_order_and_case() {
        let o = options(&["unblocking", "Id", "my_id-1", "DESCRIPTION", "d", "upgrade", "requirements"]).unwrap();
        assert!(o.unblocking && o.upgrade);
        assert_eq!(o.id.as_deref(), Some("my_id-1"));
        assert_eq!(o.description.as_deref(), Some("d"));
    }

    #[test]
    fn option_errors_in_redisgears_order() {
        assert_eq!(options(&["ID"]), Err(GearsError::MissingValue("ID".into())));
        assert_eq!(options(&["ID", "a b"]), Err(GearsError::BadSessionId));
        assert_eq!(options(&["NOPE"]), Err(GearsError::UnknownArgument("NOPE".into())));
        assert_eq!(options(&["NOPE", "ID", "a.b"]), Err(GearsError::BadSessionId));
        assert_eq!(options(&["NOPE", "ID"]), Err(GearsError::MissingValue("ID".into())));
        assert_eq!(options(&["REPLACE_WITH", "x", "NOPE"]), Err(GearsError::UnknownArgument("NOPE".into())));
    }

    #[test]
    fn registration_commands() {
        assert_eq!(
            parse(&line(&["rg.unregister", "x", "AbortPending"])),
            Ok(Command::Unregister { id: "x".into(), abort_pending: true })
        );
        assert_eq!(parse(&line(&["rg.unregister", "x", "later"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.clearregistrationsstats", "x"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.triggeronkey", "t"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.pyprofile", "stats"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.pyprofile", "nope", "s"])), Err(GearsError::ProfileSubcommand));
        assert_eq!(
            parse(&line(&["rg.pydumpsessions", "verbose", "nope"])),
            Err(GearsError::UnknownOption("nope".into()))
        );
        assert_eq!(
            parse(&line(&["rg.pydumpsessions", "dead", "SESSIONS", "a", "verbose"])),
            Ok(Command::PyDumpSessions(DumpSessions {
                verbose: false,
                dead: true,
                sessions: Some(vec!["a".into(), "verbose".into()])
            }))
        );
    }

    #[test]
    fn arities() {
        assert_eq!(parse(&line(&["RG.PYEXECUTE"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.getresults", "x", "ignored"])), Ok(Command::GetResults { id: "x".into() }));
        assert_eq!(parse(&line(&["rg.getresultsblocking", "x", "y"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.dumpexecutions", "ignored"])), Ok(Command::DumpExecutions));
        assert_eq!(parse(&line(&["rg.configget"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&line(&["rg.pyexportreq"])), Err(GearsError::WrongArity));
        assert_eq!(parse(&[]), Err(GearsError::WrongArity));
    }

    #[test]
    fn getexecution_modes() {
        assert_eq!(
            parse(&line(&["rg.getexecution", "x", "shard"])),
            Ok(Command::GetExecution { id: "x".into(), cluster: false })
        );
        assert_eq!(
            parse(&line(&["rg.getexecution", "x", "cluster"])),
            Ok(Command::GetExecution { id: "x".into(), cluster: true })
        );
        assert_eq!(parse(&line(&["rg.getexecution", "x", "y"])), Err(GearsError::UnknownSubcommand));
    }

    #[test]
    fn configset_pairs_and_a_dangling_name() {
        let c = parse(&line(&["rg.configset", "a", "1", "b"])).unwrap();
        assert_eq!(c, Command::ConfigSet { pairs: vec![("a".into(), "1".into())], dangling: Some("b".into()) });
    }

    #[test]
    fn every_registered_name_parses() {
        for name in NAMES {
            // RG.CLEARREGISTRATIONSSTATS takes no argument; RG.TRIGGERONKEY and RG.PYPROFILE
            // at least two.
            let args: &[&str] = match *name {
                "rg.clearregistrationsstats" => &[],
                "rg.triggeronkey" => &["t", "k"],
                "rg.pyprofile" => &["stats", "s"],
                _ => &["x"],
            };
            let result = parse(&line(&[&[*name], args].concat()));
            assert_ne!(result, Err(GearsError::WrongArity), "{name}");
        }
    }
}
