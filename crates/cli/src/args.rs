//! Command-line arguments. Every flag has a `NOTESAGA_*` environment variable.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use notesaga_log::KafkaConfig;

/// notesaga: an event-sourced saga system on a durable log. Notes are saved through the
/// HTTP API, turned into an embedding and a narration by processors that talk only
/// through Kafka topics, and published all-or-nothing by a saga orchestrator.
#[derive(Debug, Parser)]
#[command(name = "notesaga", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format: `text` for people, `json` for log shippers. Filter with NOTESAGA_LOG
    /// (e.g. `info`, `notesaga_orchestrator=debug`).
    #[arg(
        long,
        env = "NOTESAGA_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole system on this machine: start the broker (a child process keeping
    /// its log under the data directory), the schema registry and every role.
    Dev(DevArgs),
    /// Serve the HTTP API: commands in, queries out.
    Api(ApiArgs),
    /// Run the notes processor (consumer group notesaga.notes).
    Notes(RoleArgs),
    /// Run the embedding processor (consumer group notesaga.embedding).
    Embedding(EmbeddingArgs),
    /// Run the narration processor (consumer group notesaga.narration).
    Narration(NarrationArgs),
    /// Run the saga orchestrator (consumer group notesaga.orchestrator).
    Orchestrator(RoleArgs),
    /// Run the read projections (consumer group notesaga.projector.notes).
    Projector(ProjectorArgs),
    /// Serve the Confluent-compatible schema registry, stored in the _schemas topic.
    Registry(RegistryArgs),
    /// Measure throughput and print figures (not a test).
    Bench(BenchArgs),
}

/// Where the log and the registry are.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connection {
    /// Kafka bootstrap servers (HOST:PORT[,HOST:PORT…]).
    #[arg(long, env = "NOTESAGA_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    pub(crate) kafka_addr: String,

    /// Schema registry URL.
    #[arg(
        long,
        env = "NOTESAGA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub(crate) registry_url: String,

    /// Partitions of every flow topic when notesaga creates them.
    #[arg(long, env = "NOTESAGA_PARTITIONS", default_value_t = notesaga_events::topics::DEFAULT_PARTITIONS)]
    pub(crate) partitions: i32,

    /// Extra librdkafka setting passed through unchanged, KEY=VALUE; repeatable
    /// (comma-separated in the variable), e.g. `security.protocol=SASL_SSL`.
    #[arg(long = "kafka-option", env = "NOTESAGA_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_key_value)]
    pub(crate) kafka_options: Vec<(String, String)>,

    /// Static consumer-group membership: a stable id for this instance of the role
    /// (unique among the role's running instances). A restart with the same id takes the
    /// old member's place at once instead of waiting for its session to time out.
    #[arg(long, env = "NOTESAGA_INSTANCE_ID")]
    pub(crate) instance_id: Option<String>,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{raw:?} is not KEY=VALUE (e.g. linger.ms=10)"))
}

impl Connection {
    pub(crate) fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.kafka_addr.clone(),
            overrides: self.kafka_options.clone(),
            instance_id: self.instance_id.clone(),
        }
    }
}

/// Where a role keeps files and which database it uses.
#[derive(Debug, Clone, Args)]
pub(crate) struct Storage {
    /// Directory for local state: SQLite databases and audio files by default.
    #[arg(long, env = "NOTESAGA_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,

    /// Database of the read projections: `postgres://…` or `sqlite://…`; defaults to
    /// DATABASE_URL, else `projections.db` in the data directory.
    #[arg(long, env = "NOTESAGA_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
}

/// `sqlite://` URL of a file in `dir` (created if missing).
pub(crate) fn sqlite_url(dir: &Path, file: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    Ok(format!("sqlite://{}?mode=rwc", dir.join(file).display()))
}

impl Storage {
    /// The projections' database URL.
    pub(crate) fn projections_url(&self) -> anyhow::Result<String> {
        match self
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
        {
            Some(url) => Ok(url),
            None => sqlite_url(&self.data_dir, "projections.db"),
        }
    }

    /// The embedding store's URL: the embedding domain's own SQLite file by default;
    /// with PostgreSQL, its own tables in the configured database.
    pub(crate) fn embedding_url(&self, explicit: &Option<String>) -> anyhow::Result<String> {
        if let Some(url) = explicit {
            return Ok(url.clone());
        }
        match self.projections_url()? {
            url if url.starts_with("postgres") => Ok(url),
            _ => sqlite_url(&self.data_dir, "embedding.db"),
        }
    }

    /// Root of the audio blob store.
    pub(crate) fn audio_dir(&self) -> PathBuf {
        self.data_dir.join("audio")
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RoleArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ApiArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) storage: Storage,
    /// Address the HTTP API listens on.
    #[arg(long, env = "NOTESAGA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http_addr: String,
    /// Largest request body in bytes (413 beyond it).
    #[arg(long, env = "NOTESAGA_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub(crate) body_limit: usize,
}

/// Which embedding provider, and how to reach it.
#[derive(Debug, Clone, Args)]
pub(crate) struct EmbeddingProviderArgs {
    /// `builtin` (deterministic, lexical feature hashing; no network) or `openai` (any
    /// OpenAI-compatible `POST /v1/embeddings` server: OpenAI, Ollama, vLLM, TEI).
    #[arg(long, env = "NOTESAGA_EMBEDDING_PROVIDER", default_value = "builtin")]
    pub(crate) embedding_provider: EmbeddingProviderKind,
    /// Base URL of the OpenAI-compatible server (`/v1/embeddings` is appended).
    #[arg(
        long,
        env = "NOTESAGA_EMBEDDING_URL",
        default_value = "http://127.0.0.1:11434"
    )]
    pub(crate) embedding_url: String,
    /// Model name sent to the server.
    #[arg(
        long,
        env = "NOTESAGA_EMBEDDING_MODEL",
        default_value = "nomic-embed-text"
    )]
    pub(crate) embedding_model: String,
    /// Bearer token for the server, if it needs one.
    #[arg(long, env = "NOTESAGA_EMBEDDING_API_KEY", hide_env_values = true)]
    pub(crate) embedding_api_key: Option<String>,
    /// Seconds one request may take.
    #[arg(long, env = "NOTESAGA_EMBEDDING_TIMEOUT_SECS", default_value_t = 10)]
    pub(crate) embedding_timeout_secs: u64,
    /// Requests in flight at once to the provider.
    #[arg(long, env = "NOTESAGA_EMBEDDING_CONCURRENCY", default_value_t = 4)]
    pub(crate) embedding_concurrency: usize,
    /// Attempts per command before replying `EmbeddingFailed`.
    #[arg(long, env = "NOTESAGA_EMBEDDING_ATTEMPTS", default_value_t = 4)]
    pub(crate) embedding_attempts: u32,
}

/// The embedding providers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum EmbeddingProviderKind {
    /// Built in, deterministic, lexical.
    Builtin,
    /// An OpenAI-compatible server.
    Openai,
}

impl EmbeddingProviderArgs {
    /// The provider behind retries (within a budget well inside the saga's step
    /// deadline), a circuit breaker and a concurrency limit.
    pub(crate) fn build(&self) -> notesaga_embedding::Resilient {
        use notesaga_embedding::{BuiltinEmbedder, OpenAiEmbedder, Provider, Resilient};
        let provider = match self.embedding_provider {
            EmbeddingProviderKind::Builtin => Provider::Builtin(BuiltinEmbedder),
            EmbeddingProviderKind::Openai => Provider::OpenAi(OpenAiEmbedder::new(
                &self.embedding_url,
                &self.embedding_model,
                self.embedding_api_key.clone(),
                std::time::Duration::from_secs(self.embedding_timeout_secs),
            )),
        };
        let retry = notesaga_log::RetryPolicy {
            initial_interval: std::time::Duration::from_millis(250),
            max_attempts: self.embedding_attempts,
            max_elapsed: std::time::Duration::from_secs(60),
            ..notesaga_log::RetryPolicy::default()
        };
        Resilient::new(
            provider,
            retry,
            notesaga_log::breaker::BreakerConfig::default(),
            self.embedding_concurrency,
        )
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct EmbeddingArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) storage: Storage,
    #[command(flatten)]
    pub(crate) provider: EmbeddingProviderArgs,
    /// The embedding store's database; defaults to `embedding.db` in the data
    /// directory, or the projections' PostgreSQL database (own tables).
    #[arg(long, env = "NOTESAGA_EMBEDDING_DATABASE_URL")]
    pub(crate) embedding_database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct NarrationArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) storage: Storage,
    /// espeak-ng voice.
    #[arg(long, env = "NOTESAGA_ESPEAK_VOICE", default_value = "en")]
    pub(crate) voice: String,
    /// Speaking rate in words per minute.
    #[arg(long, env = "NOTESAGA_ESPEAK_RATE", default_value_t = 175)]
    pub(crate) rate: u32,
    /// The espeak-ng program.
    #[arg(long, env = "NOTESAGA_ESPEAK_BIN", default_value = "espeak-ng")]
    pub(crate) espeak_bin: String,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ProjectorArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) storage: Storage,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RegistryArgs {
    /// Kafka bootstrap servers, where the `_schemas` topic lives.
    #[arg(long, env = "NOTESAGA_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    pub(crate) kafka_addr: String,
    /// Address the registry listens on.
    #[arg(long, env = "NOTESAGA_REGISTRY_ADDR", default_value = "127.0.0.1:8081")]
    pub(crate) registry_addr: String,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DevArgs {
    /// Directory for everything: the broker's log, SQLite projections, audio.
    #[arg(long, env = "NOTESAGA_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, env = "NOTESAGA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http_addr: String,
    /// Address the broker listens on for Kafka clients.
    #[arg(long, env = "NOTESAGA_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    pub(crate) kafka_addr: String,
    /// Address of the schema registry.
    #[arg(long, env = "NOTESAGA_REGISTRY_ADDR", default_value = "127.0.0.1:8081")]
    pub(crate) registry_addr: String,
    /// Partitions of every flow topic.
    #[arg(long, env = "NOTESAGA_PARTITIONS", default_value_t = notesaga_events::topics::DEFAULT_PARTITIONS)]
    pub(crate) partitions: i32,
    /// Database of the read projections (default: SQLite in the data directory).
    #[arg(long, env = "NOTESAGA_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// The broker executable; default: `notesaga-broker` next to this binary, else on PATH.
    #[arg(long, env = "NOTESAGA_BROKER_BIN")]
    pub(crate) broker_bin: Option<PathBuf>,
    /// espeak-ng voice.
    #[arg(long, env = "NOTESAGA_ESPEAK_VOICE", default_value = "en")]
    pub(crate) voice: String,
    #[command(flatten)]
    pub(crate) embedding: EmbeddingProviderArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) target: BenchTarget,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum BenchTarget {
    /// Produce→consume throughput of notesaga's log layer against plain rdkafka on the
    /// same broker in the same run.
    Log(BenchLogArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchLogArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Records per run.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) records: usize,
    /// Approximate value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Runs of each side (alternating); the best run of each is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
}
