//! RG.ABORTEXECUTION, RG.CONFIGGET, RG.CONFIGSET, RG.PYSTATS and the fixed-reply commands.

use redis_module::Context;

use super::parse::Fixed;
use super::{Response, refuse_unblockable};
use crate::config::{self, ConfigValue, SetOutcome};
use crate::error::GearsError;
use crate::executions::{self, AbortOutcome};
use crate::redis::blocked::BlockedClient;
use crate::registrations::Outcome;
use crate::reply::Reply;

pub fn abort_execution(ctx: &Context, id: &str) -> Result<Response, GearsError> {
    let client = || {
        refuse_unblockable(ctx)?;
        Ok(BlockedClient::block(ctx))
    };
    let registration = executions::registration_of(id);
    Ok(match executions::abort(id, client)? {
        AbortOutcome::NotStarted(_) => {
            // A registration's execution that will never run counts as aborted now.
            if let Some(registration) = registration.as_deref().and_then(crate::registrations::find) {
                crate::sessions::dispatch::ended(&registration, Outcome::Aborted, 0, id.to_owned());
            }
            Response::Reply(Reply::ok())
        }
        AbortOutcome::Ended => Response::Reply(Reply::ok()),
        AbortOutcome::Stopping => Response::Blocked,
    })
}

pub fn get_config(names: &[String]) -> Result<Response, GearsError> {
    let config = config::get();
    let elements = names
        .iter()
        .map(|name| match config.get_element(name) {
            ConfigValue::Int(n) => Reply::Int(n),
            ConfigValue::Str(s) => Reply::bulk(s),
            ConfigValue::List(items) => Reply::Array(items.into_iter().map(Reply::bulk).collect()),
            ConfigValue::Unsupported => Reply::Error(format!("(error) Unsupported config parameter: {name}")),
        })
        .collect();
    Ok(Response::Reply(Reply::Array(elements)))
}

pub fn set_config(pairs: &[(String, String)], dangling: Option<&str>) -> Result<Response, GearsError> {
    let mut elements: Vec<Reply> = pairs
        .iter()
        .map(|(name, value)| match config::update(|c| c.set_at_runtime(name, value)) {
            SetOutcome::Ok => Reply::ok(),
            SetOutcome::SavedInExtra => Reply::Simple("OK - value was saved in extra config dictionary".to_owned()),
            SetOutcome::NotModifiable => Reply::Error(format!("(error) Config value {name} not modifiable at runtime")),
            SetOutcome::Failed => Reply::Error(format!("(error) Failed setting config value {name}")),
            SetOutcome::PythonNotConfigurable => Reply::Error(format!("(error) {name} is not configurable at runtime")),
            SetOutcome::PythonFailed => {
                Reply::Error(format!("Failed setting config value for key '{name}' with value '{value}'"))
            }
        })
        .collect();
    if let Some(name) = dangling {
        elements.push(Reply::Error(format!("(error) Value was not given to {name}")));
    }
    Ok(Response::Reply(Reply::Array(elements)))
}

pub fn py_stats() -> Result<Response, GearsError> {
    let (total, peak, current) = crate::memory::stats();
    Ok(Response::Reply(Reply::Array(vec![
        Reply::bulk("TotalAllocated"),
        Reply::Int(total),
        Reply::bulk("PeakAllocated"),
        Reply::Int(peak),
        Reply::bulk("CurrAllocated"),
        Reply::Int(current),
    ])))
}

/// Fixed by what an embedded interpreter cannot do (docs/commands.md#other-commands).
pub fn fixed_reply(which: Fixed) -> Result<Response, GearsError> {
    Ok(Response::Reply(match which {
        Fixed::DumpPlugins => {
            Reply::Array(vec![Reply::Array(vec![Reply::bulk("GearsPythonPlugin"), Reply::Int(10000)])])
        }
        Fixed::PyExecuteRemote => Reply::bulk("Execute remote is not longer supported"),
        Fixed::PyFreeInterpreter => Reply::bulk("Free interpreter is not longer supported"),
        Fixed::PyDumpReqs => Reply::Array(Vec::new()),
        Fixed::PyExportReq => return Err(GearsError::NoSuchRequirement),
        Fixed::PyImportReq => return Err(GearsError::RequirementsNotSupported),
    }))
}
