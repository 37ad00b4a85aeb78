//! What an execution leaves behind besides its reply (RG.GETEXECUTION): plain data, built by
//! `engine` and kept by `executions`.

#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub kind: &'static str,
    pub name: &'static str,
    pub arg: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub results: usize,
    pub errors: Vec<String>,
    pub total_ms: u64,
    pub read_ms: u64,
    /// In plan order, the reader's record mapper first.
    pub steps: Vec<StepReport>,
}
