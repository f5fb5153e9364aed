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

/// Installs the Prometheus recorder once per process; its handle renders `/metrics`.
pub(crate) fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Histograms as buckets (not summaries), so Prometheus can aggregate latencies
            // across instances: from 1 ms (a record) to 10 min (a long narration).
            const BUCKETS: [f64; 16] = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                120.0, 600.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .inspect_err(|err| tracing::warn!(%err, "metrics disabled"))
                .ok()
        })
        .clone()
}

/// Serves `GET /metrics` on `addr` until `shutdown`, for a role without the HTTP API.
pub(crate) async fn serve_metrics(
    addr: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let Some(handle) = install_metrics() else {
        anyhow::bail!("cannot install the metrics recorder");
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (--metrics-addr / NOTESAGA_METRICS_ADDR)")
    })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::warn!(%err, "metrics listener stopped");
        }
    });
    Ok(())
}
