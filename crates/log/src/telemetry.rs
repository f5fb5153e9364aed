//! Metric names, in one place so dashboards and code agree.

/// Counter: records a consumer loop finished, by `group`, `topic` and `outcome`
/// (`handled` or `dead_lettered`).
pub const RECORDS_TOTAL: &str = "notesaga_records_total";
/// Histogram: seconds from receiving a record to its durable outcome, by `group`.
pub const HANDLE_SECONDS: &str = "notesaga_handle_seconds";
/// Counter: records applied by a projection, by `projection`.
pub const PROJECTION_APPLIED_TOTAL: &str = "notesaga_projection_applied_total";
/// Gauge: records of a partition its consumer group has yet to process (the partition's
/// end, or last stable offset under `read_committed`, minus the group's committed
/// offset), by `group`, `topic` and `partition`. From librdkafka's statistics, every
/// [`STATISTICS_INTERVAL_MS`].
pub const CONSUMER_LAG: &str = "notesaga_consumer_lag";

/// Counter: records written to a group's DLQ, by `group` and `topic` (the topic the
/// record was handled as). Every consumer loop registers its group's series at 0 on
/// start, so a dashboard sees the series, and `increase()` sees the first dead letter.
pub const DEAD_LETTERS_TOTAL: &str = "notesaga_dead_letters_total";
/// Gauge: 1 while a provider's circuit breaker refuses calls (open), else 0, by
/// `provider` (`embedding`, `narration`).
pub const BREAKER_OPEN: &str = "notesaga_breaker_open";
/// Counter: failed calls to a provider, by `provider` and `kind` (`retryable`,
/// `permanent`, or `refused` when the open breaker did not let the call through).
pub const PROVIDER_ERRORS_TOTAL: &str = "notesaga_provider_errors_total";

/// How often (`statistics.interval.ms`) a consumer that reports its lag gets librdkafka's
/// statistics: often enough for a dashboard, rarely enough that parsing them (a JSON
/// document per client) costs nothing noticeable.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// Sets the consumer lag gauges of `group` from one statistics report. A partition
/// whose lag librdkafka does not know yet (`-1`: not fetched, nothing committed) is
/// left out rather than reported as 0; the internal partition `-1` is not a partition.
pub fn record_lag(group: &str, statistics: &rdkafka::Statistics) {
    for (topic, partition, lag) in known_lags(statistics) {
        metrics::gauge!(
            CONSUMER_LAG,
            "group" => group.to_owned(),
            "topic" => topic.to_owned(),
            "partition" => partition.to_string(),
        )
        .set(lag as f64);
    }
}

/// `(topic, partition, lag)` of every partition whose lag is known.
fn known_lags(statistics: &rdkafka::Statistics) -> impl Iterator<Item = (&str, i32, i64)> {
    statistics.topics.iter().flat_map(|(name, topic)| {
        topic
            .partitions
            .iter()
            .filter(|(id, partition)| **id >= 0 && partition.consumer_lag >= 0)
            .map(move |(id, partition)| (name.as_str(), *id, partition.consumer_lag))
    })
}

/// A consumer context that reports its group's lag ([`record_lag`]) and otherwise
/// behaves like rdkafka's default one. For consumers that do not run on
/// [`crate::ConsumerLoop`] (which reports lag itself): create the client with
/// `statistics.interval.ms` set to [`STATISTICS_INTERVAL_MS`] and this context.
#[derive(Debug, Clone)]
pub struct LagContext {
    group: String,
}

impl LagContext {
    /// The context of a member of `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
        }
    }
}

impl rdkafka::ClientContext for LagContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        record_lag(&self.group, &statistics);
    }
}

impl rdkafka::consumer::ConsumerContext for LagContext {}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka's report: partition -1 and unknown lags (-1) are left out.
    #[test]
    fn only_known_lags_of_real_partitions() {
        let mut topic = serde_json::json!({"topic": "notes.events", "age": 0, "metadata_age": 0});
        topic["batchsize"] = window();
        topic["batchcnt"] = window();
        topic["partitions"] = serde_json::json!({
            "-1": partition(-1, -1),
            "0": partition(0, 7),
            "1": partition(1, -1),
            "2": partition(2, 0),
        });
        let mut report = serde_json::json!({
            "name": "c", "client_id": "c", "type": "consumer", "ts": 0, "time": 0, "age": 0,
            "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0,
            "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0,
            "rxmsgs": 0, "rxmsg_bytes": 0, "simple_cnt": 0, "metadata_cache_cnt": 0,
            "brokers": {},
        });
        report["topics"] = serde_json::json!({ "notes.events": topic });
        let statistics: rdkafka::Statistics =
            serde_json::from_value(report).expect("a statistics report");
        let mut lags: Vec<_> = known_lags(&statistics).collect();
        lags.sort();
        assert_eq!(lags, vec![("notes.events", 0, 7), ("notes.events", 2, 0)]);
    }

    fn window() -> serde_json::Value {
        let fields = [
            "min",
            "max",
            "avg",
            "sum",
            "stddev",
            "p50",
            "p75",
            "p90",
            "p95",
            "p99",
            "p99_99",
            "outofrange",
            "hdrsize",
            "cnt",
        ];
        fields
            .iter()
            .map(|f| ((*f).to_owned(), serde_json::json!(0)))
            .collect()
    }

    fn partition(id: i32, lag: i64) -> serde_json::Value {
        serde_json::json!({
            "partition": id, "broker": 1, "leader": 1, "desired": true, "unknown": false,
            "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
            "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "active", "query_offset": 0,
            "next_offset": 0, "app_offset": 0, "stored_offset": 0, "committed_offset": 0,
            "eof_offset": 0, "lo_offset": 0, "hi_offset": 0, "ls_offset": 0,
            "consumer_lag": lag, "consumer_lag_stored": lag, "txmsgs": 0, "txbytes": 0,
            "rxmsgs": 0, "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0, "msgs_inflight": 0,
            "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0
        })
    }
}
