//! Each role as a function: connect, then run until shutdown. `notesaga dev` runs the
//! same functions as tasks of one process.

use std::{sync::Arc, time::Duration};

use anyhow::{bail, Context as _, Result};
use notesaga_api::{ApiConfig, AppState};
use notesaga_embedding::{EmbeddingProcessor, EmbeddingStore, Resilient};
use notesaga_events::{
    embedding::{EmbeddingCommand, EmbeddingEvent},
    narration::{NarrationCommand, NarrationEvent},
    notes::{NotesCommand, NotesEvent, NotesOutcome},
    saga::SagaEvent,
    topics::{self, group},
};
use notesaga_log::{
    topics::ensure_topics, AvroCodec, ConsumerLoop, FlowEvent, KafkaConfig, Publisher,
    FLOW_EVENT_TOPICS,
};
use notesaga_narration::{Blobs, NarrationProcessor, Narrator};
use notesaga_notes::NotesProcessor;
use notesaga_orchestrator::Orchestrator;
use notesaga_projections::{Projector, ReadStore};
use notesaga_registry::{Registry, RegistryConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    args::{
        ApiArgs, Connection, EmbeddingArgs, NarrationArgs, OrchestratorArgs, ProjectorArgs,
        RegistryArgs, RoleArgs, SagaPolicyArgs, Storage,
    },
    telemetry,
};

/// Cancelled on SIGINT or SIGTERM: every task finishes what it holds and stops.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down"),
            _ = term.recv() => info!("terminated: shutting down"),
        }
        cancel.cancel();
    });
    token
}

/// The most a role process takes to exit once asked (signal or failure): a consumer
/// loop lets the record in hand finish for `DRAIN_BOUND` (10 s) and commits and leaves
/// its group within `CLOSE_BOUND` (5 s) of `notesaga-log`; anything else still waiting
/// (a dead broker, a hung provider, a long `Prefer: wait`) is cut off here.
pub(crate) const SHUTDOWN_BOUND: Duration = Duration::from_secs(20);

/// The exit code of a process that did not stop within its bound.
const EXIT_OVERRUN: i32 = 70;

/// The exit code after a second SIGINT or SIGTERM.
const EXIT_SECOND_SIGNAL: i32 = 130;

/// Once `shutdown` is cancelled the process exits within `bound`, whatever it is
/// waiting for (docs/operations.md): a watchdog thread ends it with [`EXIT_OVERRUN`],
/// killing `notesaga dev`'s broker first, and a second SIGINT or SIGTERM ends it at once.
pub(crate) fn exit_within(shutdown: &CancellationToken, bound: Duration) {
    let token = shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        // A thread, not a task: a runtime whose workers are blocked still ends.
        let spawned = std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || {
                std::thread::sleep(bound);
                tracing::error!(?bound, "shutdown did not finish in time: exiting anyway");
                exit_now(EXIT_OVERRUN);
            });
        if let Err(err) = spawned {
            warn!(%err, "cannot start the shutdown watchdog");
        }
        let second = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            std::io::Result::Ok(())
        };
        if second.await.is_ok() {
            tracing::error!("second signal: exiting at once");
            exit_now(EXIT_SECOND_SIGNAL);
        }
    });
}

/// Exits the process now, SIGKILLing `notesaga dev`'s broker first so none is left.
fn exit_now(code: i32) -> ! {
    let broker = crate::dev::BROKER_PID.load(std::sync::atomic::Ordering::SeqCst);
    if broker != 0 {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &broker.to_string()])
            .status();
    }
    std::process::exit(code)
}

/// What every role needs to talk to the log.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    pub(crate) kafka: KafkaConfig,
    pub(crate) publisher: Publisher,
}

impl Runtime {
    /// The same connection with a producer of its own. `notesaga dev` runs every role in
    /// one process: with one shared producer, all their appends would go over one
    /// connection, which a Kafka broker serves one request at a time (each waiting for
    /// its fsync), so one role's append queued behind another's. A producer per role
    /// gives each its own connection; the broker's group commit still makes concurrent
    /// appends share an fsync.
    pub(crate) fn own_producer(&self) -> Result<Self> {
        Ok(Self {
            kafka: self.kafka.clone(),
            publisher: Publisher::new(&self.kafka, self.publisher.codec().clone())?,
        })
    }
}

/// Waits for the broker (creating the topics, idempotently) and the registry, then
/// builds the producer. Gives up after a minute with a message saying what to check.
pub(crate) async fn connect(connection: &Connection) -> Result<Runtime> {
    if let Some(addr) = &connection.metrics_addr {
        telemetry::serve_metrics(addr, CancellationToken::new()).await?;
    }
    let kafka = connection.kafka();
    let mut schedule = notesaga_log::RetryPolicy {
        max_attempts: 40,
        max_elapsed: Duration::from_secs(90),
        ..notesaga_log::RetryPolicy::default()
    }
    .schedule();
    loop {
        match ensure_topics(&kafka, connection.partitions).await {
            Ok(()) => break,
            Err(err) => match schedule.next_delay(None) {
                Some(delay) => {
                    warn!(%err, kafka = %connection.kafka_addr, "broker not ready; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => bail!(
                    "cannot reach the Kafka broker at {} ({err}); start it (`notesaga dev` does) or set --kafka-addr / NOTESAGA_KAFKA_ADDR",
                    connection.kafka_addr
                ),
            },
        }
    }
    let registry = connection.registry_endpoint();
    wait_for_registry(&registry).await?;
    let codec = Arc::new(AvroCodec::new(&registry));
    let publisher = Publisher::new(&kafka, codec)?;
    Ok(Runtime { kafka, publisher })
}

/// Waits until the schema registry answers (`url` may carry credentials; logs do not).
pub(crate) async fn wait_for_registry(url: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let subjects = format!("{}/subjects", url.trim_end_matches('/'));
    let url = &notesaga_log::redact_registry_url(url);
    for _ in 0..120 {
        match client.get(&subjects).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => warn!(status = %response.status(), %url, "registry not ready"),
            Err(err) => warn!(%err, %url, "registry not reachable yet"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the schema registry at {url} does not answer; start it (`notesaga registry` or `notesaga dev`) or set --registry-url / NOTESAGA_REGISTRY_URL")
}

/// Registers the whole contract, so the registry lists every schema before first use.
pub(crate) async fn register_contract(codec: &AvroCodec) -> Result<()> {
    codec
        .register_all::<NotesCommand>(topics::NOTES_COMMANDS)
        .await?;
    codec
        .register_all::<NotesEvent>(topics::NOTES_EVENTS)
        .await?;
    codec
        .register_all::<NotesOutcome>(topics::NOTES_OUTCOMES)
        .await?;
    codec
        .register_all::<EmbeddingCommand>(topics::EMBEDDING_COMMANDS)
        .await?;
    codec
        .register_all::<EmbeddingEvent>(topics::EMBEDDING_EVENTS)
        .await?;
    codec
        .register_all::<NarrationCommand>(topics::NARRATION_COMMANDS)
        .await?;
    codec
        .register_all::<NarrationEvent>(topics::NARRATION_EVENTS)
        .await?;
    codec
        .register_all::<SagaEvent>(topics::SAGA_NOTE_PIPELINE)
        .await?;
    Ok(())
}

pub(crate) async fn run_notes(rt: Runtime, shutdown: CancellationToken) -> Result<()> {
    let handler = NotesProcessor::new(rt.kafka.clone(), rt.publisher.clone());
    ConsumerLoop::new(
        rt.kafka,
        group("notes"),
        &[topics::NOTES_COMMANDS],
        rt.publisher,
    )
    .with_batch(notesaga_notes::BATCH)
    .run::<NotesCommand, _>(handler, shutdown)
    .await?;
    Ok(())
}

/// Where the embedding role loads all-MiniLM-L6-v2 from when a re-embedding asks for it
/// and its configured provider is another (the `minilm` provider's own directory).
pub(crate) fn minilm_dir(provider: &crate::args::EmbeddingProviderArgs) -> std::path::PathBuf {
    provider
        .embedding_model_dir
        .clone()
        .unwrap_or_else(notesaga_embedder::minilm::default_model_dir)
}

pub(crate) async fn run_embedding(
    rt: Runtime,
    store: EmbeddingStore,
    embedder: Resilient,
    minilm_dir: std::path::PathBuf,
    shutdown: CancellationToken,
) -> Result<()> {
    let handler =
        EmbeddingProcessor::new(store, embedder, rt.publisher.clone()).with_minilm_dir(minilm_dir);
    ConsumerLoop::new(
        rt.kafka,
        group("embedding"),
        &[topics::EMBEDDING_COMMANDS],
        rt.publisher,
    )
    .with_batch(notesaga_embedding::processor::BATCH)
    .run::<EmbeddingCommand, _>(handler, shutdown)
    .await?;
    Ok(())
}

pub(crate) async fn run_narration(
    rt: Runtime,
    narrator: Narrator,
    blobs: impl Into<Blobs>,
    shutdown: CancellationToken,
) -> Result<()> {
    let handler = NarrationProcessor::new(narrator, blobs, rt.publisher.clone());
    ConsumerLoop::new(
        rt.kafka,
        group("narration"),
        &[topics::NARRATION_COMMANDS],
        rt.publisher,
    )
    .with_batch(notesaga_narration::processor::BATCH)
    .run::<NarrationCommand, _>(handler, shutdown)
    .await?;
    Ok(())
}

pub(crate) async fn run_orchestrator(
    rt: Runtime,
    saga: &SagaPolicyArgs,
    shutdown: CancellationToken,
) -> Result<()> {
    let handler = Orchestrator::with_policy(rt.kafka.clone(), rt.publisher.clone(), saga.policy());
    // The replies it waits for, and saga.note-pipeline for operator requests.
    ConsumerLoop::new(
        rt.kafka,
        group("orchestrator"),
        &FLOW_EVENT_TOPICS,
        rt.publisher,
    )
    .with_tick(saga.tick())
    .with_batch(notesaga_orchestrator::BATCH)
    .run::<FlowEvent, _>(handler, shutdown)
    .await?;
    Ok(())
}

pub(crate) async fn run_projector(
    rt: Runtime,
    store: ReadStore,
    shutdown: CancellationToken,
) -> Result<()> {
    Projector::new(rt.kafka, rt.publisher, store)
        .run(shutdown)
        .await?;
    Ok(())
}

pub(crate) async fn run_api(
    rt: Runtime,
    store: ReadStore,
    audio: impl Into<Blobs>,
    embedder: Resilient,
    http_addr: &str,
    config: ApiConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| {
            format!("cannot listen on {http_addr} (--http-addr / NOTESAGA_HTTP_ADDR)")
        })?;
    info!(addr = %http_addr, "HTTP API listening");
    let mut state = AppState::new(rt.publisher, store, audio, embedder, config);
    state.metrics = telemetry::install_metrics();
    notesaga_api::serve(listener, state, shutdown).await?;
    Ok(())
}

pub(crate) async fn run_registry(
    config: RegistryConfig,
    registry_addr: &str,
    access: notesaga_registry::Access,
    shutdown: CancellationToken,
) -> Result<()> {
    let kafka_addr = config.bootstrap_servers.clone();
    let registry = Registry::open(config)
        .await
        .with_context(|| format!("cannot open the registry's _schemas topic on {kafka_addr}"))?;
    let listener = tokio::net::TcpListener::bind(registry_addr)
        .await
        .with_context(|| {
            format!("cannot listen on {registry_addr} (--registry-addr / NOTESAGA_REGISTRY_ADDR)")
        })?;
    info!(addr = %registry_addr, "schema registry listening");
    notesaga_registry::serve(listener, registry, access, shutdown).await?;
    Ok(())
}

/// The read store as the API uses it: its search cache of `cache_bytes`, and the
/// accepted commands in their own store where [`Storage::commands_url`] gives one.
pub(crate) async fn api_read_store(storage: &Storage, cache_bytes: usize) -> Result<ReadStore> {
    let store = ReadStore::connect(&storage.projections_url()?)
        .await?
        .with_vector_cache(cache_bytes);
    Ok(match storage.commands_url()? {
        Some(url) => store.with_accepted_commands(&url).await?,
        None => store,
    })
}

pub(crate) async fn api(args: ApiArgs, shutdown: CancellationToken) -> Result<()> {
    // First: without a key to check tokens the API refuses to start, saying what to set.
    let auth = args.auth.config()?;
    let rt = connect(&args.connection).await?;
    let store = api_read_store(&args.storage, args.limits.search_cache_bytes()).await?;
    let config = ApiConfig {
        body_limit: args.limits.body_limit,
        limits: args.limits.limits()?,
        auth,
        audio_redirect: args.audio_redirect,
        ..ApiConfig::default()
    };
    let audio = args.audio.blobs(&args.storage.data_dir)?;
    let embedder = args.embedding.build_for_queries()?;
    run_api(
        rt,
        store,
        audio,
        embedder,
        &args.http_addr,
        config,
        shutdown,
    )
    .await
}

pub(crate) async fn notes(args: RoleArgs, shutdown: CancellationToken) -> Result<()> {
    run_notes(connect(&args.connection).await?, shutdown).await
}

pub(crate) async fn embedding(args: EmbeddingArgs, shutdown: CancellationToken) -> Result<()> {
    let rt = connect(&args.connection).await?;
    let store =
        EmbeddingStore::connect(&args.storage.embedding_url(&args.embedding_database_url)?).await?;
    let minilm_dir = minilm_dir(&args.provider);
    run_embedding(rt, store, args.provider.build()?, minilm_dir, shutdown).await
}

pub(crate) async fn narration(args: NarrationArgs, shutdown: CancellationToken) -> Result<()> {
    let blobs = args.audio.blobs(&args.storage.data_dir)?;
    let rt = connect(&args.connection).await?;
    run_narration(rt, args.provider.build(), blobs, shutdown).await
}

pub(crate) async fn orchestrator(
    args: OrchestratorArgs,
    shutdown: CancellationToken,
) -> Result<()> {
    run_orchestrator(connect(&args.connection).await?, &args.saga, shutdown).await
}

pub(crate) async fn projector(args: ProjectorArgs, shutdown: CancellationToken) -> Result<()> {
    let rt = connect(&args.connection).await?;
    let store = ReadStore::connect(&args.storage.projections_url()?).await?;
    run_projector(rt, store, shutdown).await
}

pub(crate) async fn registry(args: RegistryArgs, shutdown: CancellationToken) -> Result<()> {
    let access =
        crate::registry_auth::role_access(&args.registry_users, args.registry_anonymous_read)?;
    let config = RegistryConfig {
        kafka_options: args.kafka_options.clone(),
        replication_factor: args.replication.replication_factor,
        min_insync_replicas: args.replication.min_insync_replicas,
        ..RegistryConfig::new(&args.kafka_addr)
    };
    run_registry(config, &args.registry_addr, access, shutdown).await
}
