//! RG.DUMPREGISTRATIONS, RG.UNREGISTER, RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS,
//! RG.CLEARREGISTRATIONSSTATS and RG.PYDUMPSESSIONS (docs/commands.md#registrations).

use redis_module::{Context, ContextFlags};

use super::Response;
use crate::error::GearsError;
use crate::executions::{self, SHARD_ID};
use crate::registrations::{self, Kind, Outcome, Registration, Session, persist};
use crate::reply::Reply;

/// How a session is shown in the `PD` field and INFO.
pub fn session_string(session: &Session, dead: bool) -> String {
    let desc = session.desc.as_deref().unwrap_or("null");
    let registrations = session.registrations.iter().map(|r| format!("'{r}'")).collect::<Vec<_>>().join(",");
    format!(
        "{{'sessionName':'{}', 'sessionDescription':'{desc}', 'refCount': {}, 'linkedTo': {}, 'dead': {}, 'isInstallationNeeded':0, 'registrationsList':[{registrations}], 'depsList':[]}}",
        session.id,
        session.ref_count(),
        if dead { "None" } else { "primary" },
        dead,
    )
}

fn optional(text: &Option<String>) -> Reply {
    text.as_ref().map_or(Reply::Null, |t| Reply::bulk(t.as_bytes()))
}

fn strings(list: &Option<Vec<String>>) -> Reply {
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
            strings(event_types),
            b("keyTypes"),
            strings(key_types),
            b("hookCommands"),
            strings(commands),
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

/// One RG.DUMPREGISTRATIONS entry; `pd`: with the session string.
fn entry(registration: &Registration, pd: bool) -> Reply {
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
    if pd {
        let session = registrations::session(&registration.session);
        let pd = session.map_or_else(String::new, |(s, dead)| session_string(&s, dead));
        entry.extend([b("PD"), Reply::bulk(pd)]);
    }
    entry.extend([b("ExecutionThreadPool"), b("DefaultPool")]);
    Reply::Array(entry)
}

pub fn dump() -> Result<Response, GearsError> {
    Ok(Response::Reply(Reply::Array(registrations::all().iter().map(|r| entry(r, true)).collect())))
}

pub fn unregister(ctx: &Context, id: &str, abort_pending: bool) -> Result<Response, GearsError> {
    let (registration, finished) = registrations::unregister(id)?;
    persist::replicate_unregister(ctx, id);
    for execution in finished {
        let _ = executions::drop_execution(&execution);
    }
    if abort_pending {
        for execution in executions::abort_registration(id) {
            crate::sessions::registered::ended(&registration, Outcome::Aborted, 0, execution);
        }
    }
    crate::sessions::registered::release_elsewhere(vec![registration]);
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
    if let Ok((registration, _)) = registrations::unregister(id) {
        crate::sessions::registered::release_elsewhere(vec![registration]);
    }
    Ok(Response::Reply(Reply::ok()))
}

pub fn profile(session: &str, reset: bool) -> Result<Response, GearsError> {
    registrations::session(session).ok_or(GearsError::NoSuchSession)?;
    if reset {
        crate::profile::reset(session);
        return Ok(Response::Reply(Reply::ok()));
    }
    let report = crate::profile::report(session).ok_or_else(|| GearsError::NothingProfiled(session.to_owned()))?;
    Ok(Response::Reply(Reply::bulk(report)))
}

pub fn pause(ids: &[String], pause: bool) -> Result<Response, GearsError> {
    let found: Vec<_> = ids
        .iter()
        .map(|id| {
            registrations::find(id).ok_or_else(|| GearsError::NoRegistrationOnShard(id.clone(), SHARD_ID.to_owned()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(other) = found.iter().find(|r| !matches!(r.spec.kind, Kind::Stream { .. })) {
        let reader = other.spec.kind.reader().to_owned();
        return Err(if pause { GearsError::NoPause(reader) } else { GearsError::NoUnpause(reader) });
    }
    executions::skip_id();
    executions::next_plan_id();
    for registration in found {
        crate::sessions::streams::pause(&registration, pause);
    }
    Ok(Response::Reply(Reply::ok()))
}

pub fn clear_stats() -> Result<Response, GearsError> {
    executions::skip_id();
    executions::next_plan_id();
    for registration in registrations::all() {
        registration.live.clear_stats();
    }
    Ok(Response::Reply(Reply::ok()))
}

/// RG.PYDUMPSESSIONS's options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpSessions {
    pub verbose: bool,
    pub dead: bool,
    pub sessions: Option<Vec<String>>,
}

fn session_entry(session: &Session, dead: bool, verbose: bool) -> Reply {
    let b = |s: &str| Reply::bulk(s.as_bytes());
    let registrations = if verbose {
        let all = registrations::all();
        session
            .registrations
            .iter()
            .filter_map(|id| all.iter().find(|r| &r.spec.id == id))
            .map(|r| entry(r, false))
            .collect()
    } else {
        session.registrations.iter().map(|r| b(r)).collect()
    };
    Reply::Array(vec![
        b("ID"),
        b(&session.id),
        b("sessionDescription"),
        optional(&session.desc),
        b("refCount"),
        Reply::Int(session.ref_count() as i64),
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
    let entries = match &options.sessions {
        Some(ids) => ids
            .iter()
            .map(|id| match registrations::session(id) {
                Some((session, dead)) => session_entry(&session, dead, options.verbose),
                None => Reply::bulk(format!("Session {id} does not exists")),
            })
            .collect(),
        None => registrations::sessions(!options.dead, options.dead)
            .iter()
            .map(|(session, dead)| session_entry(session, *dead, options.verbose))
            .collect(),
    };
    Ok(Response::Reply(Reply::Array(entries)))
}
