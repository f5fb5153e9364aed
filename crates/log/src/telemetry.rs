//! Metric names, in one place so dashboards and code agree.

/// Counter: records a consumer loop finished, by `group`, `topic` and `outcome`
/// (`handled` or `dead_lettered`).
pub const RECORDS_TOTAL: &str = "notesaga_records_total";
/// Histogram: seconds from receiving a record to its durable outcome, by `group`.
pub const HANDLE_SECONDS: &str = "notesaga_handle_seconds";
/// Counter: records applied by a projection, by `projection`.
pub const PROJECTION_APPLIED_TOTAL: &str = "notesaga_projection_applied_total";
