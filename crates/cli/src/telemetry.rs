//! Logs (tracing) and metrics (Prometheus) set-up.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Logs to stderr, filtered by `NOTESAGA_LOG` (default `info`, quieter dependencies).
pub(crate) fn init_tracing(format: &LogFormat) {
    let filter = EnvFilter::try_from_env("NOTESAGA_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Installs the Prometheus recorder; its handle renders `/metrics`.
pub(crate) fn install_metrics() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .install_recorder()
        .inspect_err(|err| tracing::warn!(%err, "metrics disabled"))
        .ok()
}
