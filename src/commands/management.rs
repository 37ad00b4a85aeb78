//! RG.ABORTEXECUTION, RG.CONFIGGET, RG.CONFIGSET, and the small informational commands.

use redis_module::{Context, RedisResult, RedisString};

use super::{Response, dispatch, refuse_unblockable, text};
use crate::config::{self, ConfigValue, SetOutcome};
use crate::error::GearsError;
use crate::executions;
use crate::redis::blocked::BlockedClient;
use crate::redis::reply::Reply;

pub fn rg_abortexecution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |ctx, args| {
        let [_, id] = args else { return Err(GearsError::WrongArity) };
        let client = || {
            refuse_unblockable(ctx)?;
            Ok(BlockedClient::block(ctx))
        };
        Ok(match executions::abort(&text(id), client)? {
            true => Response::Reply(Reply::ok()),
            false => Response::Blocked,
        })
    })
}

pub fn rg_configget(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, args| {
        if args.len() < 2 {
            return Err(GearsError::WrongArity);
        }
        let config = config::get();
        let elements = args[1..]
            .iter()
            .map(|name| {
                let name = text(name);
                match config.get_element(&name) {
                    ConfigValue::Int(n) => Reply::Int(n),
                    ConfigValue::Str(s) => Reply::bulk(s),
                    ConfigValue::List(items) => Reply::Array(items.into_iter().map(Reply::bulk).collect()),
                    ConfigValue::Unsupported => Reply::Error(format!("(error) Unsupported config parameter: {name}")),
                }
            })
            .collect();
        Ok(Response::Reply(Reply::Array(elements)))
    })
}

pub fn rg_configset(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, args| {
        if args.len() < 2 {
            return Err(GearsError::WrongArity);
        }
        let mut elements = Vec::new();
        let mut pairs = args[1..].iter().map(text);
        while let Some(name) = pairs.next() {
            let Some(value) = pairs.next() else {
                elements.push(Reply::Error(format!("(error) Value was not given to {name}")));
                break;
            };
            elements.push(match config::update(|c| c.set_at_runtime(&name, &value)) {
                SetOutcome::Ok => Reply::ok(),
                SetOutcome::SavedInExtra => Reply::Simple("OK - value was saved in extra config dictionary".to_owned()),
                SetOutcome::NotModifiable => Reply::Error(format!("(error) Config value {name} not modifiable at runtime")),
                SetOutcome::Failed => Reply::Error(format!("(error) Failed setting config value {name}")),
                SetOutcome::PythonNotConfigurable => Reply::Error(format!("(error) {name} is not configurable at runtime")),
                SetOutcome::PythonFailed => {
                    Reply::Error(format!("Failed setting config value for key '{name}' with value '{value}'"))
                }
            });
        }
        Ok(Response::Reply(Reply::Array(elements)))
    })
}

/// Commands whose answer is fixed outside cluster mode, or by what an embedded interpreter
/// cannot do (SPEC 2.11).
pub fn rg_fixed(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, args| {
        let name = args.first().map(text).unwrap_or_default().to_ascii_lowercase();
        let reply = match name.as_str() {
            "rg.dumpplugins" => Reply::Array(vec![Reply::Array(vec![Reply::bulk("GearsPythonPlugin"), Reply::Int(10000)])]),
            "rg.pyexecuteremote" => Reply::bulk("Execute remote is not longer supported"),
            "rg.pyfreeinterpreter" => Reply::bulk("Free interpreter is not longer supported"),
            "rg.infocluster" => Reply::bulk("no cluster mode"),
            "rg.refreshcluster" => Reply::ok(),
            "rg.pydumpreqs" => Reply::Array(Vec::new()),
            "rg.pyexportreq" => {
                if args.len() != 2 {
                    return Err(GearsError::WrongArity);
                }
                Reply::Error("requirement does not exists".to_owned())
            }
            "rg.pyimportreq" => Reply::Error(GearsError::RequirementsNotSupported.to_string()),
            _ => return Err(GearsError::Internal(format!("no fixed reply for {name}"))),
        };
        Ok(Response::Reply(reply))
    })
}

pub fn rg_pystats(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, |_, _| {
        let (total, peak, current) = crate::memory::stats();
        Ok(Response::Reply(Reply::Array(vec![
            Reply::bulk("TotalAllocated"),
            Reply::Int(total),
            Reply::bulk("PeakAllocated"),
            Reply::Int(peak),
            Reply::bulk("CurrAllocated"),
            Reply::Int(current),
        ])))
    })
}
