//! RG.DUMPREGISTRATIONS, RG.UNREGISTER, RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS,
//! RG.CLEARREGISTRATIONSSTATS and RG.PYDUMPSESSIONS (docs/commands.md#registrations).

use redis_module::{Context, ContextFlags};

use super::Response;
use crate::cluster::message::Message;
use crate::error::GearsError;
use crate::executions::{self, shard_id};
use crate::registrations::{self, Kind, Outcome, Registration, SessionRecord, persist};
use crate::reply::Reply;

/// Registration ids a session string lists at most: it is part of every registration's entry
/// (RG.DUMPREGISTRATIONS, INFO), which would otherwise grow with the square of a session's
/// registrations. RG.PYDUMPSESSIONS lists them all.
pub const LISTED_REGISTRATIONS: usize = 10;
/// Bytes of a session's description a session string shows at most (then `...`).
pub const SHOWN_DESCRIPTION: usize = 256;

/// How a session is shown in the `PD` field and INFO (`ref_count`: `SessionRecord::ref_count`).
pub fn session_string(session: &SessionRecord, dead: bool, ref_count: usize) -> String {
    let desc = match session.desc.as_deref() {
        None => "null".to_owned(),
        Some(desc) if desc.len() <= SHOWN_DESCRIPTION => desc.to_owned(),
        Some(desc) => {
            let mut end = SHOWN_DESCRIPTION;
            while !desc.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}...", &desc[..end])
        }
    };
    let mut registrations: Vec<String> =
        session.registrations.iter().take(LISTED_REGISTRATIONS).map(|r| format!("'{r}'")).collect();
    if let Some(more) = session.registrations.len().checked_sub(LISTED_REGISTRATIONS).filter(|n| *n > 0) {
        registrations.push(format!("'...({more} more)'"));
    }
    format!(
        "{{'sessionName':'{}', 'sessionDescription':'{desc}', 'refCount': {ref_count}, 'linkedTo': {}, 'dead': {}, 'isInstallationNeeded':0, 'registrationsList':[{}], 'depsList':[]}}",
        session.id,
        if dead { "None" } else { "primary" },
        dead,
        registrations.join(","),
    )
}

/// Every registration with its session string (made once per session; empty if none).
pub fn with_session_strings() -> Vec<(std::sync::Arc<Registration>, std::sync::Arc<str>)> {
    registrations::all_described(|s, dead, refs| std::sync::Arc::<str>::from(session_string(s, dead, refs)))
        .into_iter()
        .map(|(r, pd)| (r, pd.unwrap_or_else(|| std::sync::Arc::from(""))))
        .collect()
}

fn optional(text: &Option<String>) -> Reply {
    text.as_ref().map_or(Reply::Null, |t| Reply::bulk(t.as_bytes()))
}

fn string_list(list: &Option<Vec<String>>) -> Reply {
    list.as_ref().map_or(Reply::Null, |l| Reply::Array(l.iter().map(|s| Reply::bulk(s.as_bytes())).collect()))
}

/// The reader's arguments as INFO shows them (lists joined by `|`, none as `None`).
pub fn info_args(kind: &Kind) -> Vec<(String, String)> {
    let text = |r: Reply| match r {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        Reply::Int(n) => n.to_string(),
        Reply::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Reply::Bulk(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("|"),
        _ => "None".to_owned(),
    };
    let Reply::Array(flat) = reader_args(kind) else { return Vec::new() };
    let mut flat = flat.into_iter();
    let mut pairs = Vec::new();
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        pairs.push((text(name), text(value)));
    }
    pairs
}

/// The reader's `args` of RG.DUMPREGISTRATIONS.
fn reader_args(kind: &Kind) -> Reply {
    let b = |s: &str| Reply::bulk(s.as_bytes());
    Reply::Array(match kind {
        Kind::Keys { prefix, event_types, key_types, commands, .. } => vec![
            b("regex"),
            b(prefix),
            b("eventTypes"),
            string_list(event_types),
            b("keyTypes"),
            string_list(key_types),
            b("hookCommands"),
            string_list(commands),
        ],
        Kind::Stream { prefix, batch, duration_ms, policy, retry_secs, trim } => vec![
            b("batchSize"),
            Reply::Int(*batch as i64),
            b("durationMS"),
            Reply::Int(*duration_ms as i64),
            b("stream"),
            b(prefix),
            b("trimStream"),
            Reply::Int(*trim as i64),
            b("onFailedPolicy"),
            b(policy.as_str()),
            b("retryInterval"),
            Reply::Int(*retry_secs as i64),
        ],
        Kind::Command { trigger, hook, inorder, .. } => vec![
            b("trigger"),
            optional(&trigger.clone().or_else(|| hook.clone())),
            b("inorder"),
            Reply::Int(*inorder as i64),
        ],
    })
}

/// The reader data of one registration: mode, statistics, arguments (and a stream's status).
fn registration_data(registration: &Registration) -> Reply {
    let stats = registration.live.stats();
    let b = |s: &str| Reply::bulk(s.as_bytes());
    let mut data = vec![
        b("mode"),
        b(registration.spec.mode.as_str()),
        b("numTriggered"),
        Reply::Int(stats.triggered as i64),
        b("numSuccess"),
        Reply::Int(stats.success as i64),
        b("numFailures"),
        Reply::Int(stats.failures as i64),
        b("numAborted"),
        Reply::Int(stats.aborted as i64),
        b("lastRunDurationMS"),
        Reply::Int(stats.last_ms as i64),
        b("totalRunDurationMS"),
        Reply::Int(stats.total_ms as i64),
        b("avgRunDurationMS"),
        Reply::Double(stats.avg_ms()),
    ];
    let stream = matches!(registration.spec.kind, Kind::Stream { .. });
    if stream {
        data.extend([
            b("lastEstimatedLagMS"),
            Reply::Int(stats.last_lag_ms as i64),
            b("avgEstimatedLagMS"),
            Reply::Double(stats.avg_lag_ms()),
        ]);
    }
    data.extend([b("lastError"), optional(&stats.last_error), b("args"), reader_args(&registration.spec.kind)]);
    if stream {
        data.extend([b("status"), b(registration.live.status().as_str())]);
    }
    Reply::Array(data)
}

/// One RG.DUMPREGISTRATIONS entry; `pd`: with this session string.
fn entry(registration: &Registration, pd: Option<&str>) -> Reply {
    let b = |s: &str| Reply::bulk(s.as_bytes());
    let mut entry = vec![
        b("id"),
        b(&registration.spec.id),
        b("reader"),
        b(registration.spec.kind.reader()),
        b("desc"),
        optional(&registration.spec.desc),
        b("RegistrationData"),
        registration_data(registration),
    ];
    if let Some(pd) = pd {
        entry.extend([b("PD"), b(pd)]);
    }
    entry.extend([b("ExecutionThreadPool"), b("DefaultPool")]);
    Reply::Array(entry)
}

pub fn dump_registrations() -> Result<Response, GearsError> {
    let all = with_session_strings();
    Ok(Response::Reply(Reply::Array(all.iter().map(|(r, pd)| entry(r, Some(pd))).collect())))
}

pub fn unregister_command(ctx: &Context, id: &str, abort_pending: bool) -> Result<Response, GearsError> {
    if let Some(registration) = registrations::find(id) {
        check_may_manage(ctx, &registration)?;
    }
    let (registration, finished) = registrations::unregister(id)?;
    persist::share_unregister(ctx, id);
    for execution in finished {
        let _ = executions::drop_execution(&execution);
    }
    if abort_pending {
        for execution in executions::abort_registration(id) {
            crate::sessions::dispatch::ended(&registration, Outcome::Aborted, 0, execution);
        }
    }
    crate::sessions::apply::release_elsewhere(vec![registration]);
    Ok(Response::Reply(Reply::ok()))
}

/// Internal commands come only from the replication link or the AOF.
fn internal(ctx: &Context, name: &str) -> Result<(), GearsError> {
    if ctx.get_flags().intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        Ok(())
    } else {
        Err(GearsError::InternalCommand(name.to_owned()))
    }
}

pub fn inner_register(ctx: &Context, blob: &[u8]) -> Result<Response, GearsError> {
    internal(ctx, persist::REGISTER_COMMAND)?;
    let session = persist::parse_session(blob).map_err(GearsError::BadRegistrationData)?;
    crate::sessions::persisted::load(session);
    Ok(Response::Reply(Reply::ok()))
}

pub fn inner_unregister(ctx: &Context, id: &str) -> Result<Response, GearsError> {
    internal(ctx, persist::UNREGISTER_COMMAND)?;
    crate::sessions::persisted::unregister_here(id);
    Ok(Response::Reply(Reply::ok()))
}

pub fn profile(session: &str, reset: bool) -> Result<Response, GearsError> {
    registrations::session(session).ok_or(GearsError::NoSuchSession)?;
    if reset {
        crate::profile::reset(session);
        return Ok(Response::Reply(Reply::ok()));
    }
    let report = crate::profile::summary(session).ok_or_else(|| GearsError::NothingProfiled(session.to_owned()))?;
    Ok(Response::Reply(Reply::bulk(report)))
}

/// Refuses a client that may not change `registration` (docs/sandbox.md#security-model).
fn check_may_manage(ctx: &Context, registration: &registrations::Registration) -> Result<(), GearsError> {
    match crate::redis::acl::may_manage(ctx, registration.run_as.name().unwrap_or("default")) {
        true => Ok(()),
        false => Err(GearsError::NotOwner(registration.session.clone())),
    }
}

pub fn pause_registrations(ctx: &Context, ids: &[String], pause: bool) -> Result<Response, GearsError> {
    let found: Vec<_> = ids
        .iter()
        .map(|id| {
            registrations::find(id).ok_or_else(|| GearsError::NoRegistrationOnShard(id.clone(), shard_id().to_owned()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(other) = found.iter().find(|r| !matches!(r.spec.kind, Kind::Stream { .. })) {
        let reader = other.spec.kind.reader().to_owned();
        return Err(if pause { GearsError::NoPause(reader) } else { GearsError::NoUnpause(reader) });
    }
    for registration in &found {
        check_may_manage(ctx, registration)?;
    }
    executions::skip_id();
    executions::next_plan_id();
    let ids: Vec<String> = found.iter().map(|r| r.spec.id.clone()).collect();
    crate::sessions::streams::pause_here(&ids, pause);
    crate::cluster::send_to_peers(ctx, &Message::Pause { pause, ids });
    Ok(Response::Reply(Reply::ok()))
}

pub fn clear_stats(ctx: &Context) -> Result<Response, GearsError> {
    executions::skip_id();
    executions::next_plan_id();
    registrations::clear_all_stats();
    crate::cluster::send_to_peers(ctx, &Message::ClearStats);
    Ok(Response::Reply(Reply::ok()))
}

/// RG.PYDUMPSESSIONS's options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpSessions {
    pub verbose: bool,
    pub dead: bool,
    pub sessions: Option<Vec<String>>,
}

/// Registrations by id, for VERBOSE (built once per reply).
type ById<'a> = std::collections::HashMap<&'a str, &'a std::sync::Arc<Registration>>;

fn session_entry(session: &SessionRecord, dead: bool, refs: usize, verbose: bool, by_id: &ById<'_>) -> Reply {
    let b = |s: &str| Reply::bulk(s.as_bytes());
    let registrations = if verbose {
        session.registrations.iter().filter_map(|id| by_id.get(id.as_str())).map(|r| entry(r, None)).collect()
    } else {
        session.registrations.iter().map(|r| b(r)).collect()
    };
    Reply::Array(vec![
        b("ID"),
        b(&session.id),
        b("sessionDescription"),
        optional(&session.desc),
        b("refCount"),
        Reply::Int(refs as i64),
        b("linked"),
        b(if dead { "None" } else { "primary" }),
        b("dead"),
        b(if dead { "true" } else { "false" }),
        b("requirementInstallationNeeded"),
        Reply::Int(0),
        b("requirements"),
        Reply::Array(Vec::new()),
        b("registrations"),
        Reply::Array(registrations),
    ])
}

pub fn dump_sessions(options: &DumpSessions) -> Result<Response, GearsError> {
    let all = if options.verbose { registrations::all() } else { Vec::new() };
    let by_id: ById<'_> = all.iter().map(|r| (r.spec.id.as_str(), r)).collect();
    let entries = match &options.sessions {
        Some(ids) => ids
            .iter()
            .map(|id| match registrations::session(id) {
                Some((session, dead)) => {
                    let refs = session.ref_count();
                    session_entry(&session, dead, refs, options.verbose, &by_id)
                }
                None => Reply::bulk(format!("Session {id} does not exists")),
            })
            .collect(),
        None => registrations::sessions_described(!options.dead, options.dead, |session, dead, refs| {
            session_entry(session, dead, refs, options.verbose, &by_id)
        }),
    };
    Ok(Response::Reply(Reply::Array(entries)))
}
