//! Owned RESP values: what a client is answered with.
//!
//! Replies are built on worker threads (results of an execution) and written on the main thread
//! (`redis::reply`), so they are plain Rust data that any layer, and the fuzz targets, can build.

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Bulk(Vec<u8>),
    Int(i64),
    /// A double: RESP3's own type, a bulk string in RESP2.
    Double(f64),
    Null,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn bulk(s: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(s.into())
    }

    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// `[results, errors]`, the reply of a finished execution.
    pub fn results(results: Vec<Reply>, errors: &[String]) -> Reply {
        let errors = errors.iter().map(|e| Reply::bulk(e.as_bytes())).collect();
        Reply::Array(vec![Reply::Array(results), Reply::Array(errors)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_shape() {
        let r = Reply::results(vec![Reply::Int(1)], &["boom".to_owned()]);
        assert_eq!(r, Reply::Array(vec![Reply::Array(vec![Reply::Int(1)]), Reply::Array(vec![Reply::bulk("boom")])]));
    }
}
