//! `notesaga dev`: the whole system on one machine.
//!
//! Starts `notesaga-broker` as a child process (its log under `<data-dir>/broker`,
//! listening on `--kafka-addr`), then the schema registry and every role as tasks of
//! this process, all reaching the broker over TCP through rdkafka. On Ctrl-C or SIGTERM
//! the roles finish what they hold (bounded: [`ROLES_BOUND`]), then the broker is
//! stopped and reaped ([`BROKER_STOP_BOUND`]); the whole stop is bounded by
//! [`SHUTDOWN_BOUND`] whatever the broker does. A broker that dies on its own is
//! restarted ([`BROKER_RESTARTS`] times, with backoff); one that keeps dying stops the
//! node with an error. The data directory and what it holds are the node's user's
//! alone (directories 0700, files 0600; looser modes found are tightened and logged).
//!
//! The API checks HS256 tokens signed with the node's own secret, generated on first
//! start into `DATA_DIR/jwt-secret` (mode 0600); the start-up banner prints tokens, and
//! [`admin_token`] gives operator commands given `--data-dir` an admin credential.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use notesaga_api::{auth::Claims, ApiConfig, AuthConfig};
use notesaga_embedding::EmbeddingStore;
use notesaga_narration::FsBlobStore;
use tokio::{process::Child, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    args::{Connection, DevArgs, Storage, COMMANDS_FILE},
    roles,
};

mod permissions;

/// The broker executable: the flag, else beside this binary, else on PATH.
fn broker_bin(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("notesaga-broker")))
            .filter(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("notesaga-broker"))
    })
}

/// The file in the data directory that says where a running single node listens.
pub(crate) const NODE_FILE: &str = "node.json";

/// What `notesaga dev` writes to `DATA_DIR/node.json`: where the running node listens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeFile {
    /// The HTTP API (`HOST:PORT`).
    pub(crate) http_addr: String,
    /// The Kafka broker (`HOST:PORT`).
    pub(crate) kafka_addr: String,
    /// The schema registry (`HOST:PORT`).
    pub(crate) registry_addr: String,
    /// The process that wrote it.
    #[serde(default)]
    pub(crate) pid: Option<u32>,
}

impl NodeFile {
    /// Writes it to `data_dir`, for the operator commands given `--data-dir`.
    fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(NODE_FILE);
        let text = serde_json::to_string_pretty(self).expect("a node file serialises");
        let mut file = permissions::private_file(&path, false)?;
        file.set_len(0)
            .and_then(|()| std::io::Write::write_all(&mut file, (text + "\n").as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The node file of `data_dir`, or `None` when there is none.
    pub(crate) fn read(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = data_dir.join(NODE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "{} is not a node file written by `notesaga dev`",
                path.display()
            )
        })
    }
}

/// The file in the data directory holding the node's JWT secret.
pub(crate) const SECRET_FILE: &str = "jwt-secret";

/// The user of a single node: the owner of the notes made with the printed tokens.
pub(crate) const LOCAL_USER: &str = "local";

/// How long the tokens printed at start-up are valid: a working week of local use.
const BANNER_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long an operator command's own admin token is valid: its run, with room.
const COMMAND_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The node's secret, created on first start: 32 bytes from the operating system's
/// random source as hex, readable by the owner only.
fn load_or_create_secret(data_dir: &Path) -> Result<String> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let path = data_dir.join(SECRET_FILE);
    // Two v4 UUIDs carry 244 random bits; 64 hex characters clear HS256's 32-byte floor.
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(fresh.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            info!(path = %path.display(), "generated the node's JWT secret");
            Ok(fresh)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => secret(data_dir),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The JWT secret of the single node in `data_dir`.
pub(crate) fn secret(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(SECRET_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the node's JWT secret {}: has `notesaga dev --data-dir {}` been started?",
            path.display(),
            data_dir.display()
        )
    })?;
    Ok(text.trim().to_owned())
}

/// A token of `sub` (admin or not) valid for `ttl`, signed with `data_dir`'s secret.
pub(crate) fn token(data_dir: &Path, sub: &str, admin: bool, ttl: Duration) -> Result<String> {
    let claims = Claims::new(sub, ttl);
    let claims = if admin { claims.admin() } else { claims };
    Ok(claims.mint_hs256(secret(data_dir)?.as_bytes())?)
}

/// An admin token (of the local user, valid for an hour) for operator commands given
/// `--data-dir`: `saga`, `replay`, `bench`.
pub(crate) fn admin_token(data_dir: &Path) -> Result<String> {
    token(data_dir, LOCAL_USER, true, COMMAND_TOKEN_TTL)
}

/// How long `dev` lets its roles stop (each finishes the record in hand, commits and
/// leaves its group) before it goes on without them.
pub(crate) const ROLES_BOUND: Duration = Duration::from_secs(20);

/// How long the broker has to exit after SIGTERM before it is killed (then reaped).
const BROKER_STOP_BOUND: Duration = Duration::from_secs(10);

/// The most `notesaga dev` takes to exit once asked (signal or failure): its roles, its
/// broker, and slack. Past it the process exits anyway, killing its broker first.
pub(crate) const SHUTDOWN_BOUND: Duration = Duration::from_secs(40);

/// How often a broker that dies on its own is restarted before the node gives up.
const BROKER_RESTARTS: u32 = 3;

/// The wait before the n-th restart: `BROKER_BACKOFF · 2^(n-1)`.
const BROKER_BACKOFF: Duration = Duration::from_secs(1);

/// A broker that ran this long counts as healthy again: its restart budget is renewed.
const BROKER_STABLE: Duration = Duration::from_secs(300);

/// The pid of the running broker, for the shutdown watchdog ([`roles::exit_within`]),
/// which kills it before a forced exit (0: none).
pub(crate) static BROKER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Worker threads of the broker that `notesaga dev` starts: half the cores, at least
/// one; `None` when `TOKIO_WORKER_THREADS` sets them (the broker inherits it). The roles'
/// process keeps a worker per core: it serves the HTTP API beside every role, and with
/// one worker `bench api` accepted 30–40 % fewer commands per second, while the saga
/// loop did the same with one worker or two (docs/benchmarks.md). The broker's work is
/// mostly waiting on its sockets and its log, and one worker of its own on two cores
/// took the least CPU per saga.
pub(crate) fn broker_worker_threads() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    Some((cores / 2).max(1))
}

fn start_broker(bin: &Path, data_dir: &Path, kafka_addr: &str) -> Result<Child> {
    let log_path = data_dir.join("broker.log");
    let log = permissions::private_file(&log_path, true)?;
    let broker_dir = data_dir.join("broker");
    permissions::private_dir(&broker_dir)?;
    let mut command = tokio::process::Command::new(bin);
    if let Some(workers) = broker_worker_threads() {
        command.env("TOKIO_WORKER_THREADS", workers.to_string());
    }
    let child = command
        .arg("--data-dir")
        .arg(data_dir.join("broker"))
        .arg("--kafka-addr")
        .arg(kafka_addr)
        .arg("--exit-with-parent")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start the broker {}: build it with `cargo build --release --bins` or set --broker-bin / NOTESAGA_BROKER_BIN",
                bin.display()
            )
        })?;
    BROKER_PID.store(
        child.id().unwrap_or_default(),
        std::sync::atomic::Ordering::SeqCst,
    );
    Ok(child)
}

/// Stops the broker (SIGTERM, then SIGKILL after [`BROKER_STOP_BOUND`]) and reaps it, so
/// it never stays behind as a zombie or an orphan.
async fn stop_broker(mut broker: Child) {
    if let Some(pid) = broker.id() {
        // SIGTERM lets tansu close its SQLite log cleanly; `kill` is the fallback.
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    match tokio::time::timeout(BROKER_STOP_BOUND, broker.wait()).await {
        Ok(_) => info!("broker stopped"),
        Err(_) => {
            warn!(bound = ?BROKER_STOP_BOUND, "broker did not stop in time: killing it");
            // `kill` sends SIGKILL and reaps.
            if let Err(err) = broker.kill().await {
                warn!(%err, "cannot kill the broker");
            }
        }
    }
    BROKER_PID.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// Runs the single node until `shutdown`.
pub(crate) async fn run(args: DevArgs, shutdown: CancellationToken) -> Result<()> {
    // The recorder first: series the roles register at start-up (dead letters per
    // group, breaker state) must not be lost before the API installs it.
    crate::telemetry::install_metrics();
    // The node's user alone reads the notes, the audio and the secret: the directory is
    // made 0700 (an existing one with looser modes is tightened, and logged).
    permissions::private_dir(&args.data_dir)?;
    let data_dir = args.data_dir.canonicalize()?;
    permissions::tighten_tree(&data_dir)?;
    // Before anything starts: a node that cannot keep its secret does not serve.
    load_or_create_secret(&data_dir)?;
    crate::registry_auth::load_or_create_node_user_info(&data_dir)?;
    let bin = broker_bin(args.broker_bin.clone());
    let mut broker = start_broker(&bin, &data_dir, &args.kafka_addr)?;
    info!(kafka = %args.kafka_addr, data_dir = %data_dir.display(), "broker started");

    let result = run_roles(&args, &data_dir, &bin, &mut broker, shutdown.clone()).await;
    shutdown.cancel();
    stop_broker(broker).await;
    result
}

/// What the node does about a broker that exited while it was not asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerDeath {
    /// Restart it after this wait (the n-th restart of the current budget).
    Restart { attempt: u32, after: Duration },
    /// It keeps dying: stop the node.
    GiveUp,
}

/// Decides after the broker died, given the restarts already spent in this budget and
/// how long it ran since its last start.
fn after_broker_death(spent: u32, ran: Duration) -> BrokerDeath {
    let spent = if ran >= BROKER_STABLE { 0 } else { spent };
    if spent >= BROKER_RESTARTS {
        return BrokerDeath::GiveUp;
    }
    BrokerDeath::Restart {
        attempt: spent + 1,
        after: BROKER_BACKOFF * 2u32.pow(spent),
    }
}

async fn run_roles(
    args: &DevArgs,
    data_dir: &Path,
    bin: &Path,
    broker: &mut Child,
    shutdown: CancellationToken,
) -> Result<()> {
    // The node's registry credentials: its roles register schemas with them.
    let registry_user_info = crate::registry_auth::load_or_create_node_user_info(data_dir)?;
    let connection = Connection {
        kafka_addr: args.kafka_addr.clone(),
        registry_url: format!("http://{}", args.registry_addr),
        registry_user_info: Some(registry_user_info.clone()),
        partitions: args.partitions,
        kafka_options: Vec::new(),
        replication: crate::args::ReplicationArgs::default(),
        // One instance of each role: static membership lets a crashed single node that
        // is started again take its groups back at once (see docs/field-notes.md).
        instance_id: Some("dev".into()),
        // Every role is in this process: the API serves their metrics.
        metrics_addr: None,
    };
    let mut tasks = JoinSet::new();

    // The registry comes first: every role encodes through it.
    wait_for_broker(&connection, broker).await?;
    {
        let (kafka, registry, token) = (
            args.kafka_addr.clone(),
            args.registry_addr.clone(),
            shutdown.clone(),
        );
        let access = crate::registry_auth::node_access(&registry_user_info)?;
        tasks.spawn(async move {
            (
                "registry",
                roles::run_registry(
                    notesaga_registry::RegistryConfig::new(&kafka),
                    &registry,
                    access,
                    token,
                )
                .await,
            )
        });
    }
    let rt = roles::connect(&connection).await?;
    roles::register_contract(rt.publisher.codec()).await?;

    // The same storage rules as the separate roles, rooted in the data directory.
    let storage = Storage {
        data_dir: data_dir.to_owned(),
        database_url: args.database_url.clone(),
    };
    // The SQLite files are made 0600 before SQLite creates them (its journal and WAL
    // files take the database file's mode).
    let databases = [
        ("projections.db", Some(storage.projections_url()?)),
        ("embedding.db", Some(storage.embedding_url(&None)?)),
        (COMMANDS_FILE, storage.commands_url()?),
    ];
    for (name, url) in databases {
        if url.is_some_and(|url| url.starts_with("sqlite")) {
            permissions::private_file(&data_dir.join(name), false)?;
        }
    }
    permissions::private_dir(&storage.audio_dir())?;
    let read_store = roles::api_read_store(&storage, args.limits.search_cache_bytes()).await?;
    let api_config = ApiConfig {
        auth: AuthConfig::hs256(secret(data_dir)?.as_bytes())
            .with_context(|| format!("{} cannot be used", data_dir.join(SECRET_FILE).display()))?,
        body_limit: args.limits.body_limit,
        limits: args.limits.limits()?,
        ..ApiConfig::default()
    };
    let embedding_store = EmbeddingStore::connect(&storage.embedding_url(&None)?).await?;
    let audio = FsBlobStore::new(storage.audio_dir());
    let narrator = args.narration.build();
    // One copy of the embedding model serves the embedding role and the API's queries.
    let embedding_provider = args.embedding.provider()?;

    tasks.spawn({
        let (rt, token) = (rt.own_producer()?, shutdown.clone());
        async move { ("notes", roles::run_notes(rt, token).await) }
    });
    tasks.spawn({
        let (rt, token) = (rt.own_producer()?, shutdown.clone());
        let embedder = args.embedding.processing(embedding_provider.clone());
        let minilm_dir = roles::minilm_dir(&args.embedding);
        async move {
            (
                "embedding",
                roles::run_embedding(rt, embedding_store, embedder, minilm_dir, token).await,
            )
        }
    });
    tasks.spawn({
        let (rt, token, audio) = (rt.own_producer()?, shutdown.clone(), audio.clone());
        async move {
            (
                "narration",
                roles::run_narration(rt, narrator, audio, token).await,
            )
        }
    });
    tasks.spawn({
        let (rt, token, saga) = (rt.own_producer()?, shutdown.clone(), args.saga.clone());
        async move {
            (
                "orchestrator",
                roles::run_orchestrator(rt, &saga, token).await,
            )
        }
    });
    tasks.spawn({
        let (rt, token, store) = (rt.clone(), shutdown.clone(), read_store.clone());
        async move { ("projector", roles::run_projector(rt, store, token).await) }
    });
    tasks.spawn({
        let (rt, token, http) = (rt.clone(), shutdown.clone(), args.http_addr.clone());
        let embedder = args.embedding.queries(embedding_provider);
        async move {
            (
                "api",
                roles::run_api(rt, read_store, audio, embedder, &http, api_config, token).await,
            )
        }
    });

    // Operator commands given `--data-dir` (saga, check) find the running node here.
    NodeFile {
        http_addr: args.http_addr.clone(),
        kafka_addr: args.kafka_addr.clone(),
        registry_addr: args.registry_addr.clone(),
        pid: Some(std::process::id()),
    }
    .write(data_dir)?;

    let user_token = token(data_dir, LOCAL_USER, false, BANNER_TOKEN_TTL)?;
    let admin = token(data_dir, LOCAL_USER, true, BANNER_TOKEN_TTL)?;
    eprintln!(
        "\nnotesaga is running\n  HTTP API         http://{}\n  schema registry  http://{}\n  Kafka broker     {}\n  data directory   {}\n\nTokens of the user {LOCAL_USER:?}, valid for 7 days (mint more with `notesaga token --data-dir {} --sub NAME [--admin]`):\n  user   export NOTESAGA_TOKEN={user_token}\n  admin  {admin}\nSchemas: anyone may read them (curl http://{}/subjects); registering and deleting need\n  the registry credentials in {} (curl -u \"$(cat {})\" …).\nPress Ctrl-C to stop.\n",
        args.http_addr,
        args.registry_addr,
        args.kafka_addr,
        data_dir.display(),
        data_dir.display(),
        args.registry_addr,
        data_dir.join(crate::registry_auth::USER_INFO_FILE).display(),
        data_dir.join(crate::registry_auth::USER_INFO_FILE).display(),
    );

    // What the roles and the broker created at this start is tightened too (the
    // broker's own files are made by its process, with its umask).
    permissions::tighten_tree(data_dir)?;

    let mut failure = None;
    let mut restarts = 0;
    let mut broker_started = std::time::Instant::now();
    let roles_deadline = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(roles_deadline);
    let mut roles_bounded = false;
    loop {
        if shutdown.is_cancelled() && !roles_bounded {
            roles_bounded = true;
            roles_deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + ROLES_BOUND);
        }
        tokio::select! {
            () = &mut roles_deadline, if roles_bounded => {
                error!(bound = ?ROLES_BOUND, roles = tasks.len(), "roles did not stop in time: abandoning them");
                tasks.abort_all();
                break;
            }
            () = shutdown.cancelled(), if !roles_bounded => {}
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok((role, Ok(())))) => info!(role, "stopped"),
                Some(Ok((role, Err(err)))) => {
                    error!(role, error = %format!("{err:#}"), "role failed: stopping everything");
                    failure.get_or_insert_with(|| anyhow::anyhow!("{role} failed: {err:#}"));
                    shutdown.cancel();
                }
                Some(Err(err)) => {
                    error!(%err, "role panicked: stopping everything");
                    failure.get_or_insert_with(|| anyhow::anyhow!("a role panicked: {err}"));
                    shutdown.cancel();
                }
            },
            status = broker.wait(), if failure.is_none() && !shutdown.is_cancelled() => {
                let status = status?;
                let log = data_dir.join("broker.log");
                match after_broker_death(restarts, broker_started.elapsed()) {
                    BrokerDeath::Restart { attempt, after } => {
                        error!(%status, attempt, of = BROKER_RESTARTS, ?after, log = %log.display(), "the broker exited on its own: restarting it");
                        tokio::select! {
                            () = tokio::time::sleep(after) => {}
                            () = shutdown.cancelled() => continue,
                        }
                        restarts = attempt;
                        broker_started = std::time::Instant::now();
                        match start_broker(bin, data_dir, &args.kafka_addr) {
                            Ok(child) => {
                                *broker = child;
                                tokio::select! {
                                    ready = wait_for_broker(&connection, broker) => match ready {
                                        Ok(()) => info!(attempt, kafka = %args.kafka_addr, "broker restarted"),
                                        // Its exit shows at the next turn of the loop.
                                        Err(err) => warn!(error = %format!("{err:#}"), "the restarted broker is not ready"),
                                    },
                                    () = shutdown.cancelled() => {}
                                }
                            }
                            Err(err) => {
                                failure = Some(err.context("cannot restart the broker"));
                                shutdown.cancel();
                            }
                        }
                    }
                    BrokerDeath::GiveUp => {
                        error!(%status, restarts, log = %log.display(), "the broker keeps dying: stopping the node");
                        failure = Some(anyhow::anyhow!(
                            "the broker keeps dying: it exited ({status}) after {restarts} restarts; see {}",
                            log.display()
                        ));
                        shutdown.cancel();
                    }
                }
            }
        }
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Waits until the broker accepts connections, failing early if it exits.
async fn wait_for_broker(connection: &Connection, broker: &mut Child) -> Result<()> {
    for _ in 0..300 {
        if let Some(status) = broker.try_wait()? {
            bail!(
                "the broker exited at start-up ({status}); is {} free?",
                connection.kafka_addr
            );
        }
        if tokio::net::TcpStream::connect(&connection.kafka_addr)
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the broker does not listen on {} after 30 s",
        connection.kafka_addr
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_secret_is_made_once_and_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let message = format!("{:#}", secret(dir.path()).unwrap_err());
        assert!(message.contains("notesaga dev --data-dir"), "{message}");

        let first = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.len() >= notesaga_api::auth::MIN_SECRET_BYTES);
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), first, "kept");
        assert_eq!(secret(dir.path()).unwrap(), first);

        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_secret(other.path()).unwrap(), first);
        assert_eq!(admin_token(dir.path()).unwrap().split('.').count(), 3);
    }
}
