//! `notesaga-broker`: the single-node Kafka-compatible broker.
//!
//! tansu's protocol layer (request and response codecs, most per-API handlers) served
//! through our own assembly (`server.rs`): our storage engine (`native`), a Fetch that
//! wakes on produce (`wake.rs`), our group coordinator (`groups`) and `ApiVersions`
//! (`api_versions.rs`). tansu's SQLite engine stays selectable (`--storage sqlite`); its
//! libsql bundles a sqlite3 whose symbols clash with sqlx's SQLite at link time, which is
//! why the broker is an executable of its own. `notesaga dev` starts it as a child
//! process; every notesaga role reaches it over TCP through rdkafka, exactly as it would
//! reach Apache Kafka.

mod api_versions;
mod frames;
mod groups;
mod indexes;
mod metrics;
mod native;
mod server;
mod wake;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use tansu_storage::{BrokerRegistrationRequest, Storage, StorageContainer};
use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use url::Url;
use uuid::Uuid;

use crate::native::{wal::Fsync, NativeStorage};

/// mimalloc instead of glibc's malloc: tansu's codec makes many small short-lived
/// allocations per request (docs/benchmarks.md, as for the `notesaga` binary).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The broker's node id: a single node, so any fixed id.
const NODE_ID: i32 = 1;

/// tansu's SQLite database, relative to the data directory the broker runs in.
const DB_FILE: &str = "broker.db";

/// The native engine's directory inside the data directory.
const NATIVE_DIR: &str = "native";

/// Run the single-node Kafka-compatible broker that `notesaga dev` uses.
#[derive(Debug, Parser)]
#[command(name = "notesaga-broker", version)]
struct Args {
    /// Directory that holds the broker's durable log (`native/` or, with `--storage
    /// sqlite`, `broker.db` inside it). Created if missing, readable by its owner only.
    /// Topics, records and committed offsets survive a restart.
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
    /// engine, `broker.db`). Each keeps its own files: a data directory written by one
    /// is refused by the other, with the flag that reads it.
    #[arg(long, env = "NOTESAGA_BROKER_STORAGE", value_enum, default_value_t = StorageKind::Native)]
    storage: StorageKind,

    /// When the native engine acknowledges a write: `always` fsyncs each group of
    /// appends first (an acknowledged record survives a killed broker and a power cut);
    /// `never` leaves flushing to the OS (survives a killed broker, not a power cut).
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
    private_dir(&args.data_dir)?;
    // tansu resolves a `sqlite://` path relative to the working directory (even an
    // absolute one), so run from inside the data directory and name the file only.
    std::env::set_current_dir(&args.data_dir)
        .with_context(|| format!("cannot enter broker data dir {}", args.data_dir.display()))?;
    refuse_the_other_engine(args.storage, &args.data_dir)?;

    let listener = Url::parse(&format!("tcp://{}", args.kafka_addr))
        .with_context(|| format!("--kafka-addr {} is not HOST:PORT", args.kafka_addr))?;
    metrics::serve(args.metrics_addr).await?;
    let stop = CancellationToken::new();
    match args.storage {
        StorageKind::Native => {
            let storage = NativeStorage::open(
                Path::new(NATIVE_DIR),
                args.fsync,
                &args.cluster_id,
                NODE_ID,
                listener,
            )
            .context("cannot open the native log")?;
            serve(args, storage, stop).await
        }
        StorageKind::Sqlite => {
            let storage = StorageContainer::builder()
                .cluster_id(args.cluster_id.clone())
                .node_id(NODE_ID)
                .advertised_listener(listener)
                .schema_registry(None)
                .lake_house(None)
                .storage(Url::parse(&format!("sqlite://{DB_FILE}"))?)
                .cancellation(stop.clone())
                .silent(true)
                .build()
                .await
                .context("cannot open the broker's storage")?;
            // tansu has created its schema by now; add the indexes it lacks.
            indexes::ensure(Path::new(DB_FILE))
                .await
                .context("cannot add the missing indexes to tansu's database")?;
            serve(args, storage, stop).await
        }
    }
}

/// Creates the data directory readable by its owner only, or tightens an existing one
/// (it holds every user's notes).
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create broker data dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "{} is readable by others (mode {mode:o}) and cannot be made private",
                    dir.display()
                )
            },
        )?;
        tracing::warn!(dir = %dir.display(), was = format!("{mode:o}"), "made the broker data dir private (0700)");
    }
    Ok(())
}

/// A data directory holds one engine's log: starting the other would serve an empty
/// log beside the real one, so it is refused with the flag that reads it.
fn refuse_the_other_engine(storage: StorageKind, dir: &Path) -> Result<()> {
    let native = Path::new(NATIVE_DIR).exists();
    let sqlite = Path::new(DB_FILE).exists();
    match storage {
        StorageKind::Native if sqlite && !native => bail!(
            "{} holds a log of tansu's SQLite engine ({DB_FILE}), not of the native engine. \
             Start with --storage sqlite (NOTESAGA_BROKER_STORAGE=sqlite) to keep serving it, \
             or move the directory aside to start an empty native log",
            dir.display()
        ),
        StorageKind::Sqlite if native && !sqlite => bail!(
            "{} holds a log of the native engine ({NATIVE_DIR}/), not of tansu's SQLite engine. \
             Start with --storage native to keep serving it, or move the directory aside",
            dir.display()
        ),
        _ => Ok(()),
    }
}

/// Registers the broker with its storage and serves Kafka clients until SIGINT/SIGTERM.
async fn serve<S: Storage>(args: Args, storage: S, stop: CancellationToken) -> Result<()> {
    storage
        .register_broker(BrokerRegistrationRequest {
            broker_id: NODE_ID,
            cluster_id: args.cluster_id.clone(),
            incarnation_id: Uuid::new_v4(),
            rack: None,
        })
        .await
        .context("cannot register the broker with its storage")?;
    let groups = groups::Groups::new(storage.clone(), stop.clone());
    let tcp = TcpListener::bind(&args.kafka_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.kafka_addr))?;

    if args.exit_with_parent {
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
    eprintln!(
        "notesaga-broker listening on {} ({:?} storage)",
        args.kafka_addr, args.storage
    );
    // Serve until SIGINT or SIGTERM, then close the connections and stop.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        on_signal.cancel();
    });
    server::Server::new(args.cluster_id, storage, groups)
        .serve(tcp, stop)
        .await
        .context("broker stopped with an error")
}
