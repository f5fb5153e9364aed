//! `notesaga-broker`: the single-node Kafka-compatible broker.
//!
//! It is tansu's broker with its SQLite (libsql) storage engine, built as its own
//! executable because libsql bundles a sqlite3 whose symbols clash with sqlx's SQLite at
//! link time. `notesaga dev` starts it as a child process; every notesaga role reaches it
//! over TCP through rdkafka, exactly as it would reach Apache Kafka.

mod indexes;
mod metrics;
mod native;
mod wake;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Parser;
use native::{wal::Fsync, NativeStorage};
use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
use tansu_storage::StorageContainer;
use tracing_subscriber::EnvFilter;
use url::Url;
use uuid::Uuid;

/// tansu's SQLite database, relative to the data directory the broker runs in.
const DB_FILE: &str = "broker.db";

/// Run the single-node Kafka-compatible broker that `notesaga dev` uses.
#[derive(Debug, Parser)]
#[command(name = "notesaga-broker", version)]
struct Args {
    /// Directory that holds the broker's durable log (`broker.db` inside it). Created if
    /// missing. Topics, records and committed offsets survive a restart.
    #[arg(
        long,
        env = "NOTESAGA_BROKER_DATA_DIR",
        default_value = "./data/broker"
    )]
    data_dir: PathBuf,

    /// Address to listen on for Kafka clients. Keep it on loopback for a single node.
    #[arg(long, env = "NOTESAGA_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    kafka_addr: String,

    /// Exit when the process that started this one goes away (`notesaga dev` passes it,
    /// so a killed single node does not leave its broker behind).
    #[arg(long, env = "NOTESAGA_BROKER_EXIT_WITH_PARENT")]
    exit_with_parent: bool,

    /// Cluster id reported to clients.
    #[arg(long, env = "NOTESAGA_BROKER_CLUSTER_ID", default_value = "notesaga")]
    cluster_id: String,

    /// Storage engine: `native` (notesaga's own log: record batches stored as produced,
    /// group commit, under `native/` in the data directory) or `sqlite` (tansu's SQLite
    /// engine, `broker.db`). Each keeps its own files; switching engines starts from an
    /// empty log (see docs/operations.md).
    #[arg(long, env = "NOTESAGA_BROKER_STORAGE", value_enum, default_value_t = StorageKind::Native)]
    storage: StorageKind,

    /// When the native engine acknowledges a write: `always` fsyncs each group of
    /// appends first (survives a power cut); `never` leaves flushing to the OS (survives
    /// a killed broker, not a power cut).
    #[arg(long, env = "NOTESAGA_BROKER_FSYNC", value_enum, default_value_t = Fsync::Always)]
    fsync: Fsync,

    /// Serve the broker's Prometheus metrics on this address (`GET /metrics`); off when
    /// unset.
    #[arg(long, env = "NOTESAGA_BROKER_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// The storage engines the broker can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StorageKind {
    Native,
    Sqlite,
}

/// The native engine's directory inside the data directory.
const NATIVE_DIR: &str = "native";

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("NOTESAGA_BROKER_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,notesaga_broker=info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create broker data dir {}", args.data_dir.display()))?;
    // tansu resolves a `sqlite://` path relative to the working directory (even an
    // absolute one), so run from inside the data directory and name the file only.
    std::env::set_current_dir(&args.data_dir)
        .with_context(|| format!("cannot enter broker data dir {}", args.data_dir.display()))?;

    let listener = Url::parse(&format!("tcp://{}", args.kafka_addr))
        .with_context(|| format!("--kafka-addr {} is not HOST:PORT", args.kafka_addr))?;
    metrics::serve(args.metrics_addr).await?;
    if args.storage == StorageKind::Native {
        let storage = NativeStorage::open(
            Path::new(NATIVE_DIR),
            args.fsync,
            &args.cluster_id,
            1,
            listener.clone(),
        )
        .context("cannot open the native log")?;
        let groups = Controller::with_storage(storage.clone())
            .context("cannot start the group coordinator")?;
        exit_with_parent(args.exit_with_parent);
        eprintln!(
            "notesaga-broker listening on {} (native storage)",
            args.kafka_addr
        );
        Broker::new(
            1,
            &args.cluster_id,
            listener.clone(),
            listener,
            storage,
            groups,
            Uuid::new_v4(),
        )
        .main(tokio::time::Instant::now())
        .await
        .context("broker stopped with an error")?;
        return Ok(());
    }
    let storage = Url::parse(&format!("sqlite://{DB_FILE}"))?;

    let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(1)
        .cluster_id(args.cluster_id)
        .incarnation_id(Uuid::new_v4())
        .advertised_listener(listener.clone())
        .listener(listener)
        .storage(storage)
        .silent(true)
        .build()
        .await
        .context("cannot build the broker")?;
    // tansu has created its schema by now; add the indexes it lacks before serving.
    indexes::ensure(Path::new(DB_FILE))
        .await
        .context("cannot add the missing indexes to tansu's database")?;

    exit_with_parent(args.exit_with_parent);
    eprintln!("notesaga-broker listening on {}", args.kafka_addr);
    // `main` serves until SIGINT or SIGTERM and then shuts down cleanly.
    broker
        .main(tokio::time::Instant::now())
        .await
        .context("broker stopped with an error")?;
    Ok(())
}

/// Exits when the process that started this one goes away (`--exit-with-parent`).
fn exit_with_parent(enabled: bool) {
    if enabled {
        let parent = std::os::unix::process::parent_id();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if std::os::unix::process::parent_id() != parent {
                    eprintln!("notesaga-broker: parent {parent} is gone, exiting");
                    std::process::exit(0);
                }
            }
        });
    }
}
