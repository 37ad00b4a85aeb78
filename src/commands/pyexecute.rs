//! RG.PYEXECUTE <script> [UNBLOCKING] [ID id] [DESCRIPTION text] [UPGRADE] [REPLACE_WITH id]
//!              [FORCE_REINSTALL_REQUIREMENTS] [REQUIREMENTS dep ...]

use redis_module::{Context, RedisResult, RedisString};

use super::{Response, dispatch, refuse_unblockable, text};
use crate::error::GearsError;
use crate::executions;
use crate::pool;
use crate::python::interrupt::{Abort, Reason};
use crate::redis::blocked::BlockedClient;
use crate::redis::gil::selected_db;

#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub unblocking: bool,
    pub id: Option<String>,
    pub description: Option<String>,
    pub upgrade: bool,
    pub replace_with: Option<String>,
    pub requirements: Vec<String>,
}

impl Options {
    /// Parses what follows the script, checking in RedisGears' order.
    pub fn parse(args: &[String]) -> Result<Options, GearsError> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().cloned().ok_or_else(|| GearsError::MissingValue(name.to_owned()));
            match arg.to_ascii_uppercase().as_str() {
                "UNBLOCKING" => options.unblocking = true,
                "UPGRADE" => options.upgrade = true,
                "FORCE_REINSTALL_REQUIREMENTS" => {}
                "ID" => options.id = Some(value("ID")?),
                "DESCRIPTION" => options.description = Some(value("DESCRIPTION")?),
                "REPLACE_WITH" => options.replace_with = Some(value("REPLACE_WITH")?),
                "REQUIREMENTS" => {
                    options.requirements = args.cloned().collect();
                    break;
                }
                _ => return Err(GearsError::UnknownArgument(arg.clone())),
            }
        }
        if let Some(id) = &options.id {
            if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(GearsError::BadSessionId);
            }
        }
        // No session is ever kept before registrations exist, so there is nothing to replace.
        if let Some(old) = &options.replace_with {
            return Err(GearsError::NoSessionToReplace(old.clone()));
        }
        if !options.requirements.is_empty() {
            return Err(GearsError::RequirementsNotSupported);
        }
        Ok(options)
    }
}

pub fn rg_pyexecute(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, pyexecute)
}

fn pyexecute(ctx: &Context, args: &[RedisString]) -> Result<Response, GearsError> {
    refuse_unblockable(ctx)?;
    let [_, script, rest @ ..] = args else { return Err(GearsError::WrongArity) };
    let rest: Vec<String> = rest.iter().map(text).collect();
    let options = Options::parse(&rest)?;
    let script = text(script);
    let db = selected_db(ctx);
    // A client that leaves a blocking run takes its execution with it (RedisGears cannot).
    let abort = Abort::new();
    let on_disconnect = abort.clone();
    let client = BlockedClient::block_watching(ctx, move || on_disconnect.request(Reason::Aborted));
    // If the pool is gone the job is dropped, and dropping its client answers it.
    let _ = pool::submit(Box::new(move |runtime| {
        executions::run_script(runtime, &script, db, options.unblocking, client, abort)
    }));
    Ok(Response::Blocked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, GearsError> {
        Options::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_in_any_order_and_case() {
        let o = parse(&["unblocking", "Id", "my_id-1", "DESCRIPTION", "d", "upgrade", "requirements"]).unwrap();
        assert!(o.unblocking && o.upgrade);
        assert_eq!(o.id.as_deref(), Some("my_id-1"));
        assert_eq!(o.description.as_deref(), Some("d"));
    }

    #[test]
    fn errors_in_redisgears_order() {
        assert_eq!(parse(&["ID"]), Err(GearsError::MissingValue("ID".into())));
        assert_eq!(parse(&["ID", "a b"]), Err(GearsError::BadSessionId));
        assert_eq!(parse(&["NOPE"]), Err(GearsError::UnknownArgument("NOPE".into())));
        assert_eq!(parse(&["REPLACE_WITH", "x"]), Err(GearsError::NoSessionToReplace("x".into())));
        assert_eq!(parse(&["REQUIREMENTS", "redis"]), Err(GearsError::RequirementsNotSupported));
    }
}
