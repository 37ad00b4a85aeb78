//! The module's INFO sections (`INFO rg`, `INFO modules`, `INFO everything`): counts of
//! executions and registrations; each registration and session; the interpreters' memory; the
//! workers, including those lost to native code.

use super::registrations::{info_args, session_string, with_session_strings};
use crate::redis::info::{Section, Value};
use crate::registrations::{self, Kind};
use crate::{executions, memory, pool};

pub fn sections() -> Vec<Section> {
    let (total, peak, current) = memory::stats();
    let listed = executions::dump().len() as i64;
    let all = with_session_strings();
    let int = |name: &str, n: i64| (name.to_owned(), Value::Int(n));
    vec![
        Section { name: "", fields: vec![int("nexecutions", listed), int("nregistrations", all.len() as i64)] },
        Section {
            name: "stats",
            fields: vec![
                int("executions", listed),
                int("workers", pool::workers() as i64),
                int("stuck_workers", pool::stuck_workers() as i64),
                int("python_total_allocated", total),
                int("python_peak_allocated", peak),
                int("python_current_allocated", current),
            ],
        },
        Section {
            name: "regisrations",
            fields: all.iter().map(|(r, pd)| (r.spec.id.clone(), registration(r, pd))).collect(),
        },
        Section {
            name: "plugins",
            fields: vec![(
                "GearsPythonPlugin".to_owned(),
                Value::Dict(vec![("version".to_owned(), "10000".to_owned())]),
            )],
        },
        Section {
            name: "python_stats",
            fields: vec![int("TotalAllocated", total), int("PeakAllocated", peak), int("CurrAllocated", current)],
        },
        Section { name: "python_requirements", fields: Vec::new() },
        Section {
            name: "python_sessions",
            fields: registrations::sessions_described(true, true, |session, dead, refs| {
                (session.id.clone(), Value::Text(session_string(session, dead, refs)))
            }),
        },
    ]
}

/// A registration as one INFO dict field: commas separate its entries, so texts use `|`.
fn registration(registration: &registrations::Registration, pd: &str) -> Value {
    let stats = registration.live.stats();
    let text = |t: &str| t.replace(',', "|");
    let mut pairs = vec![
        ("desc".to_owned(), registration.spec.desc.as_deref().map_or("None".to_owned(), text)),
        ("reader".to_owned(), registration.spec.kind.reader().to_owned()),
        ("mode".to_owned(), registration.spec.mode.as_str().to_owned()),
        ("numTriggered".to_owned(), stats.triggered.to_string()),
        ("numSuccess".to_owned(), stats.success.to_string()),
        ("numFailures".to_owned(), stats.failures.to_string()),
        ("numAborted".to_owned(), stats.aborted.to_string()),
        ("lastRunDurationMS".to_owned(), stats.last_ms.to_string()),
        ("totalRunDurationMS".to_owned(), stats.total_ms.to_string()),
        ("avgRunDurationMS".to_owned(), stats.avg_ms().to_string()),
    ];
    if matches!(registration.spec.kind, Kind::Stream { .. }) {
        pairs.push(("lastEstimatedLagMS".to_owned(), stats.last_lag_ms.to_string()));
        pairs.push(("avgEstimatedLagMS".to_owned(), stats.avg_lag_ms().to_string()));
    }
    pairs.push(("lastError".to_owned(), stats.last_error.as_deref().map_or("None".to_owned(), text)));
    pairs.extend(info_args(&registration.spec.kind).into_iter().map(|(k, v)| (k, text(&v))));
    if matches!(registration.spec.kind, Kind::Stream { .. }) {
        pairs.push(("status".to_owned(), registration.live.status().as_str().to_owned()));
    }
    pairs.push(("PD".to_owned(), text(pd)));
    Value::Dict(pairs)
}
