//! The broker's own Prometheus metrics, and the small HTTP endpoint that serves them
//! (`--metrics-addr`, `GET /metrics`). Names live here once.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tracing::{info, warn};

/// Records appended, by topic (retried idempotent batches not counted).
pub(crate) const APPENDED_RECORDS: &str = "notesaga_broker_appended_records_total";
/// Bytes of record batches appended, by topic.
pub(crate) const APPENDED_BYTES: &str = "notesaga_broker_appended_bytes_total";
/// Fetch requests answered, by how: `immediate` (data was there), `wake` (data arrived
/// while it waited), `timeout` (max wait passed).
pub(crate) const FETCHES: &str = "notesaga_broker_fetch_requests_total";
/// Seconds one fsync of the native log took.
pub(crate) const FSYNC_SECONDS: &str = "notesaga_broker_fsync_seconds";
/// Bytes of the native log's segments on disk.
pub(crate) const LOG_BYTES: &str = "notesaga_broker_log_bytes";

pub(crate) fn appended(topic: &str, records: u64, bytes: u64) {
    metrics::counter!(APPENDED_RECORDS, "topic" => topic.to_owned()).increment(records);
    metrics::counter!(APPENDED_BYTES, "topic" => topic.to_owned()).increment(bytes);
}

pub(crate) fn fetch_answered(outcome: &'static str) {
    metrics::counter!(FETCHES, "outcome" => outcome).increment(1);
}

pub(crate) fn fsync(took: Duration) {
    metrics::histogram!(FSYNC_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn log_size(bytes: u64) {
    metrics::gauge!(LOG_BYTES).set(bytes as f64);
}

/// Installs the recorder; serves `/metrics` on `addr` when given.
pub(crate) async fn serve(addr: Option<SocketAddr>) -> Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(FSYNC_SECONDS.into()),
            &[
                0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0,
            ],
        )
        .context("metric buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let Some(addr) = addr else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    info!(%addr, "broker metrics on /metrics");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, handle.clone()));
                }
                Err(error) => warn!(%error, "metrics accept failed"),
            }
        }
    });
    Ok(())
}

/// One HTTP/1.1 exchange: `/metrics` or 404, then close.
async fn answer(mut stream: tokio::net::TcpStream, handle: PrometheusHandle) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    // Read the request head (bounded): the path is all that matters.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", handle.render())
    } else {
        (
            "404 Not Found",
            "not found: the broker serves /metrics\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    _ = stream.write_all(response.as_bytes()).await;
    _ = stream.shutdown().await;
}
