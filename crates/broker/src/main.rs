//! `notesaga-broker`: the single-node Kafka-compatible broker.
//!
//! It serves tansu's SQLite (libsql) storage engine through our own assembly of tansu's
//! route functions (`server.rs`), built as its own executable because libsql bundles a
//! sqlite3 whose symbols clash with sqlx's SQLite at link time. `notesaga dev` starts it
//! as a child process; every notesaga role reaches it over TCP through rdkafka, exactly
//! as it would reach Apache Kafka.

mod api_versions;
mod fetch;
mod groups;
mod indexes;
mod server;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Parser;
use tansu_storage::{BrokerRegistrationRequest, Storage as _, StorageContainer};
use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use url::Url;
use uuid::Uuid;

/// The broker's node id: a single node, so any fixed id.
const NODE_ID: i32 = 1;

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
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create broker data dir {}", args.data_dir.display()))?;
    // tansu resolves a `sqlite://` path relative to the working directory (even an
    // absolute one), so run from inside the data directory and name the file only.
    std::env::set_current_dir(&args.data_dir)
        .with_context(|| format!("cannot enter broker data dir {}", args.data_dir.display()))?;

    let listener = Url::parse(&format!("tcp://{}", args.kafka_addr))
        .with_context(|| format!("--kafka-addr {} is not HOST:PORT", args.kafka_addr))?;
    let storage = Url::parse(&format!("sqlite://{DB_FILE}"))?;

    let stop = CancellationToken::new();
    let storage = StorageContainer::builder()
        .cluster_id(args.cluster_id.clone())
        .node_id(NODE_ID)
        .advertised_listener(listener)
        .schema_registry(None)
        .lake_house(None)
        .storage(storage)
        .cancellation(stop.clone())
        .silent(true)
        .build()
        .await
        .context("cannot open the broker's storage")?;
    // tansu has created its schema by now; add the indexes it lacks before serving.
    indexes::ensure(Path::new(DB_FILE))
        .await
        .context("cannot add the missing indexes to tansu's database")?;
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
    eprintln!("notesaga-broker listening on {}", args.kafka_addr);
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
