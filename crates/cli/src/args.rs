//! Command-line arguments. Every flag has a `NOTESAGA_*` environment variable.

use notesaga_sagas::note_pipeline::Policy;
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
    Orchestrator(OrchestratorArgs),
    /// Run the read projections (consumer group notesaga.projector.notes).
    Projector(ProjectorArgs),
    /// Serve the Confluent-compatible schema registry, stored in the _schemas topic.
    Registry(RegistryArgs),
    /// Measure throughput and print figures (not a test).
    Bench(BenchArgs),
    /// List, show and retry sagas through the HTTP API (exit 1: the API said no; 2: it
    /// cannot be reached).
    Saga(SagaArgs),
    /// Rebuild projections while they serve, through the admin API: a progress bar
    /// (events/s, lag, ETA) until the rebuilt copy is swapped in (exit 1: the API said no
    /// or the rebuild failed; 2: the API cannot be reached).
    Replay(ReplayArgs),
    /// Check that the log and the stores agree on what is published: read every note and
    /// saga event, the embedding store and the audio store, wait for the sagas at work to
    /// settle, and report every violation (exit 1: a violation; 2: cannot read).
    Check(CheckArgs),
    /// Print a bearer token for the API (HS256): with --data-dir DIR signed with that
    /// `notesaga dev` node's secret, else with NOTESAGA_JWT_SECRET.
    Token(crate::token::TokenArgs),
    /// Dead letters, read from Kafka directly: list, show, redrive to the group that gave
    /// up on them, discard, and the audit of both (exit 1: refused; 2: cannot read).
    Dlq(crate::dlq::DlqArgs),
    /// A topic's records as JSON lines (decoded through the registry with --decode),
    /// up to the end as it was at the start unless --follow.
    Tail(crate::tail::TailArgs),
    /// One note, from the log: `note history NOTE_ID` prints every record of it across
    /// the topics, decoded, as JSON lines in time order.
    Note(crate::note_history::NoteArgs),
    /// Re-embed every published note with another model through the log, while search
    /// keeps the model it runs: `reembed --model M` (progress bars, then the step that
    /// switches search), `reembed --status` (coverage per model). Exit 1: bad input or
    /// notes failed; 2: cannot read.
    Reembed(crate::reembed::ReembedArgs),
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

    /// Credentials for the schema registry, USER:PASSWORD, sent as HTTP basic auth
    /// (Confluent's `basic.auth.user.info`); default: a single node's
    /// `registry-user-info` file in NOTESAGA_DATA_DIR (or ./data) when there is one.
    #[arg(long, env = "NOTESAGA_REGISTRY_USER_INFO", hide_env_values = true)]
    pub(crate) registry_user_info: Option<String>,

    /// Partitions of every flow topic when notesaga creates them.
    #[arg(long, env = "NOTESAGA_PARTITIONS", default_value_t = notesaga_events::topics::DEFAULT_PARTITIONS)]
    pub(crate) partitions: i32,

    /// Extra librdkafka setting passed through unchanged, KEY=VALUE; repeatable
    /// (comma-separated in the variable), e.g. `security.protocol=SASL_SSL`.
    #[arg(long = "kafka-option", env = "NOTESAGA_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_key_value)]
    pub(crate) kafka_options: Vec<(String, String)>,

    /// How topics notesaga creates are replicated (a topic that exists keeps its own).
    #[command(flatten)]
    pub(crate) replication: ReplicationArgs,

    /// Static consumer-group membership: a stable id for this instance of the role
    /// (unique among the role's running instances). A restart with the same id takes the
    /// old member's place at once instead of waiting for its session to time out.
    #[arg(long, env = "NOTESAGA_INSTANCE_ID")]
    pub(crate) instance_id: Option<String>,

    /// Serve Prometheus metrics of this process at `http://ADDR/metrics` (the `api` role
    /// and `notesaga dev` serve them on the API's address anyway).
    #[arg(long, env = "NOTESAGA_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<String>,
}

/// Replication of the topics notesaga creates: the flow topics, the dead-letter topics
/// and `_schemas`.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct ReplicationArgs {
    /// Replicas of each topic notesaga creates: 1 on a single node, typically 3 on a
    /// production cluster.
    #[arg(long, env = "NOTESAGA_REPLICATION_FACTOR", default_value_t = 1)]
    pub(crate) replication_factor: i32,
    /// `min.insync.replicas` of each topic notesaga creates (with acks=all, the replicas
    /// a write needs before it is acknowledged); typically 2 with 3 replicas.
    #[arg(long, env = "NOTESAGA_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub(crate) min_insync_replicas: i32,
}

impl Default for ReplicationArgs {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            min_insync_replicas: 1,
        }
    }
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{raw:?} is not KEY=VALUE (e.g. linger.ms=10)"))
}

impl Connection {
    /// The registry URL carrying its credentials, as `AvroCodec` and `reqwest` read them.
    pub(crate) fn registry_endpoint(&self) -> String {
        let user_info = self.registry_user_info.clone().or_else(|| {
            let data_dir = std::env::var_os("NOTESAGA_DATA_DIR")
                .map_or_else(|| PathBuf::from("./data"), PathBuf::from);
            crate::registry_auth::node_user_info(&data_dir)
                .ok()
                .flatten()
        });
        notesaga_log::registry_url_with_user_info(&self.registry_url, user_info.as_deref())
    }

    pub(crate) fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.kafka_addr.clone(),
            overrides: self.kafka_options.clone(),
            instance_id: self.instance_id.clone(),
            replication_factor: self.replication.replication_factor,
            min_insync_replicas: self.replication.min_insync_replicas,
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

/// The API's accepted commands in the data directory (SQLite read stores).
pub(crate) const COMMANDS_FILE: &str = "commands.db";

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

    /// Where the API records the commands it accepts: beside a SQLite read store, a
    /// file of its own (`commands.db` in the data directory), so that recording one
    /// never waits for the projector's transactions; `None` with PostgreSQL, where the
    /// `commands` table of the shared database does not serialise writers.
    pub(crate) fn commands_url(&self) -> anyhow::Result<Option<String>> {
        match self.projections_url()? {
            url if url.starts_with("postgres") => Ok(None),
            _ => sqlite_url(&self.data_dir, COMMANDS_FILE).map(Some),
        }
    }

    /// Root of the audio blob store.
    pub(crate) fn audio_dir(&self) -> PathBuf {
        self.data_dir.join("audio")
    }
}

/// Where the audio lives: the data directory's `audio/` (single node) or an S3 bucket
/// (AWS, MinIO, any S3-compatible store) that every role using audio shares.
#[derive(Debug, Clone, Args)]
pub(crate) struct AudioStoreArgs {
    /// `s3://BUCKET[/PREFIX]` for an S3-compatible object store; default: files under
    /// DATA_DIR/audio (one machine only: no role reads another's disk).
    #[arg(long, env = "NOTESAGA_AUDIO_STORE")]
    pub(crate) audio_store: Option<String>,
    /// Endpoint of an S3-compatible server (e.g. http://minio:9000); default: AWS.
    #[arg(long, env = "NOTESAGA_S3_ENDPOINT")]
    pub(crate) s3_endpoint: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "NOTESAGA_S3_REGION", default_value = "us-east-1")]
    pub(crate) s3_region: String,
    /// Access key id; default: the environment (AWS_ACCESS_KEY_ID, an instance role).
    #[arg(long, env = "NOTESAGA_S3_ACCESS_KEY_ID")]
    pub(crate) s3_access_key_id: Option<String>,
    /// Secret access key, with the id.
    #[arg(long, env = "NOTESAGA_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub(crate) s3_secret_access_key: Option<String>,
}

impl AudioStoreArgs {
    /// The configured store; renders for S3 are staged under DATA_DIR/audio-staging.
    pub(crate) fn blobs(&self, data_dir: &Path) -> anyhow::Result<notesaga_blob::Blobs> {
        use anyhow::Context as _;
        let Some(url) = self.audio_store.as_deref().filter(|url| !url.is_empty()) else {
            return Ok(notesaga_blob::FsBlobStore::new(data_dir.join("audio")).into());
        };
        let config = notesaga_blob::S3Config {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            ..notesaga_blob::S3Config::from_url(url)
                .map_err(anyhow::Error::msg)
                .context("NOTESAGA_AUDIO_STORE (--audio-store)")?
        };
        let store = notesaga_blob::S3BlobStore::new(&config, data_dir.join("audio-staging"))
            .context("NOTESAGA_AUDIO_STORE (--audio-store): cannot configure the S3 client")?;
        Ok(store.into())
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
    /// Body limit, rate limit, timeout, page size, waits.
    #[command(flatten)]
    pub(crate) limits: crate::limits::LimitArgs,
    /// The embedding role's provider: search embeds its queries with the same model.
    #[command(flatten)]
    pub(crate) embedding: EmbeddingProviderArgs,
    /// How bearer tokens are checked and audio URLs signed.
    #[command(flatten)]
    pub(crate) auth: crate::token::AuthArgs,
    /// Where the narrations are read from.
    #[command(flatten)]
    pub(crate) audio: AudioStoreArgs,
    /// Answer a note's audio with a 307 to a presigned URL of the S3 store (valid as
    /// long as NOTESAGA_AUDIO_URL_TTL) instead of streaming it through the API.
    #[arg(long, env = "NOTESAGA_AUDIO_REDIRECT")]
    pub(crate) audio_redirect: bool,
}

/// Which embedding provider, and how to reach it.
#[derive(Debug, Clone, Args)]
pub(crate) struct EmbeddingProviderArgs {
    /// `minilm` (the default: all-MiniLM-L6-v2 in process, from
    /// NOTESAGA_EMBEDDING_MODEL_DIR; no network), `builtin` (deterministic, lexical
    /// feature hashing; no model) or `openai` (any OpenAI-compatible
    /// `POST /v1/embeddings` server: OpenAI, Ollama, vLLM, TEI).
    #[arg(long, env = "NOTESAGA_EMBEDDING_PROVIDER", default_value = "minilm")]
    pub(crate) embedding_provider: EmbeddingProviderKind,
    /// Directory of the `minilm` provider's model (`model.safetensors`,
    /// `tokenizer.json`, `config.json`, as `make model` unpacks them); default
    /// `$HOME/.cache/notesaga/all-MiniLM-L6-v2`.
    #[arg(long, env = "NOTESAGA_EMBEDDING_MODEL_DIR")]
    pub(crate) embedding_model_dir: Option<PathBuf>,
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
    /// all-MiniLM-L6-v2, in process.
    Minilm,
    /// Built in, deterministic, lexical.
    Builtin,
    /// An OpenAI-compatible server.
    Openai,
}

impl EmbeddingProviderArgs {
    /// The provider behind retries (within a budget well inside the saga's step
    /// deadline: 30 s against the saga's default 60 s), a circuit breaker and a
    /// concurrency limit.
    pub(crate) fn build(&self) -> anyhow::Result<notesaga_embedding::Resilient> {
        Ok(self.processing(self.provider()?))
    }

    /// [`Self::build`] around an already built `provider` (one model in memory for
    /// several roles of one process).
    pub(crate) fn processing(
        &self,
        provider: notesaga_embedding::Provider,
    ) -> notesaga_embedding::Resilient {
        self.resilient(
            provider,
            notesaga_log::RetryPolicy {
                initial_interval: std::time::Duration::from_millis(250),
                max_attempts: self.embedding_attempts,
                max_elapsed: std::time::Duration::from_secs(30),
                ..notesaga_log::RetryPolicy::default()
            },
        )
    }

    /// The same provider for the API's search queries: a client is waiting, so one
    /// retry within a few seconds, then 503.
    pub(crate) fn build_for_queries(&self) -> anyhow::Result<notesaga_embedding::Resilient> {
        Ok(self.queries(self.provider()?))
    }

    /// [`Self::build_for_queries`] around an already built `provider`.
    pub(crate) fn queries(
        &self,
        provider: notesaga_embedding::Provider,
    ) -> notesaga_embedding::Resilient {
        self.resilient(
            provider,
            notesaga_log::RetryPolicy {
                initial_interval: std::time::Duration::from_millis(100),
                max_attempts: 2,
                max_elapsed: std::time::Duration::from_secs(5),
                ..notesaga_log::RetryPolicy::default()
            },
        )
    }

    /// The provider alone (the model loaded, for `minilm`).
    pub(crate) fn provider(&self) -> anyhow::Result<notesaga_embedding::Provider> {
        use notesaga_embedding::{BuiltinEmbedder, OpenAiEmbedder, Provider};
        Ok(match self.embedding_provider {
            EmbeddingProviderKind::Minilm => {
                let dir = self
                    .embedding_model_dir
                    .clone()
                    .unwrap_or_else(notesaga_embedder::minilm::default_model_dir);
                let model = notesaga_embedder::MiniLm::load(&dir).map_err(|err| {
                    anyhow::anyhow!(
                        "cannot load all-MiniLM-L6-v2 from {} ({err}): run `make model`, \
                         or set NOTESAGA_EMBEDDING_MODEL_DIR",
                        dir.display()
                    )
                })?;
                Provider::MiniLm(std::sync::Arc::new(model))
            }
            EmbeddingProviderKind::Builtin => Provider::Builtin(BuiltinEmbedder),
            EmbeddingProviderKind::Openai => Provider::OpenAi(OpenAiEmbedder::new(
                &self.embedding_url,
                &self.embedding_model,
                self.embedding_api_key.clone(),
                std::time::Duration::from_secs(self.embedding_timeout_secs),
            )),
        })
    }

    fn resilient(
        &self,
        provider: notesaga_embedding::Provider,
        retry: notesaga_log::RetryPolicy,
    ) -> notesaga_embedding::Resilient {
        notesaga_embedding::Resilient::new(
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

/// Which speech provider, and how to reach it.
#[derive(Debug, Clone, Args)]
pub(crate) struct NarrationProviderArgs {
    /// `espeak` (espeak-ng on this machine) or `openai` (any OpenAI-compatible
    /// `POST /v1/audio/speech` server: OpenAI, openedai-speech, Kokoro-FastAPI, LocalAI).
    /// `silent` is a benchmark engine, not for users: it renders silence as long as the
    /// text would take to say (150 words per minute) at once, to isolate the
    /// orchestration overhead (see docs/benchmarks.md).
    #[arg(long, env = "NOTESAGA_NARRATION_PROVIDER", default_value = "espeak")]
    pub(crate) narration_provider: NarrationProviderKind,
    /// espeak-ng voice.
    #[arg(long, env = "NOTESAGA_ESPEAK_VOICE", default_value = "en")]
    pub(crate) voice: String,
    /// espeak-ng speaking rate in words per minute.
    #[arg(long, env = "NOTESAGA_ESPEAK_RATE", default_value_t = 175)]
    pub(crate) rate: u32,
    /// The espeak-ng program.
    #[arg(long, env = "NOTESAGA_ESPEAK_BIN", default_value = "espeak-ng")]
    pub(crate) espeak_bin: String,
    /// Base URL of the OpenAI-compatible server (`/v1/audio/speech` is appended).
    #[arg(
        long,
        env = "NOTESAGA_NARRATION_URL",
        default_value = "https://api.openai.com"
    )]
    pub(crate) narration_url: String,
    /// Speech model sent to the server.
    #[arg(long, env = "NOTESAGA_NARRATION_MODEL", default_value = "tts-1")]
    pub(crate) narration_model: String,
    /// Voice sent to the server.
    #[arg(long, env = "NOTESAGA_NARRATION_VOICE", default_value = "alloy")]
    pub(crate) narration_voice: String,
    /// Bearer token for the server, if it needs one.
    #[arg(long, env = "NOTESAGA_NARRATION_API_KEY", hide_env_values = true)]
    pub(crate) narration_api_key: Option<String>,
    /// Seconds any one request to the server may take…
    #[arg(long, env = "NOTESAGA_NARRATION_TIMEOUT_SECS", default_value_t = 20)]
    pub(crate) narration_timeout_secs: u64,
    /// …plus this many milliseconds per character of its chunk of text.
    #[arg(
        long,
        env = "NOTESAGA_NARRATION_TIMEOUT_MS_PER_CHAR",
        default_value_t = 10
    )]
    pub(crate) narration_timeout_ms_per_char: u64,
    /// Seconds from a command's start in which failed calls are retried…
    #[arg(
        long,
        env = "NOTESAGA_NARRATION_RETRY_BUDGET_SECS",
        default_value_t = 30
    )]
    pub(crate) narration_retry_budget_secs: u64,
    /// …plus this many seconds per started 1,000 bytes of text. Keep the budget well
    /// inside the saga's narration deadline (60 s + 10 s per KB by default).
    #[arg(
        long,
        env = "NOTESAGA_NARRATION_RETRY_BUDGET_PER_KB_SECS",
        default_value_t = 5
    )]
    pub(crate) narration_retry_budget_per_kb_secs: u64,
    /// Attempts per command (across its chunks) before replying `NarrationFailed`.
    #[arg(long, env = "NOTESAGA_NARRATION_ATTEMPTS", default_value_t = 4)]
    pub(crate) narration_attempts: u32,
    /// Engine runs or requests in flight at once.
    #[arg(long, env = "NOTESAGA_NARRATION_CONCURRENCY", default_value_t = 2)]
    pub(crate) narration_concurrency: usize,
}

/// The speech providers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum NarrationProviderKind {
    /// espeak-ng, run locally.
    Espeak,
    /// An OpenAI-compatible server.
    Openai,
    /// Benchmarks only: silence of the text's estimated length, rendered at once.
    Silent,
}

impl NarrationProviderArgs {
    /// The engine behind retries (within a budget ending well before the saga's
    /// narration deadline), a circuit breaker and a concurrency limit.
    pub(crate) fn build(&self) -> notesaga_narration::Narrator {
        use std::time::Duration;

        use notesaga_narration::{
            ChunkTimeout, Espeak, Narrator, OpenAiSpeech, RenderBudget, Silent, SpeechEngine,
        };
        let engine = match self.narration_provider {
            NarrationProviderKind::Espeak => SpeechEngine::Espeak(Espeak {
                binary: self.espeak_bin.clone(),
                voice: self.voice.clone(),
                rate: self.rate,
            }),
            NarrationProviderKind::Openai => SpeechEngine::OpenAi(OpenAiSpeech::new(
                &self.narration_url,
                &self.narration_model,
                &self.narration_voice,
                self.narration_api_key.clone(),
                ChunkTimeout {
                    base: Duration::from_secs(self.narration_timeout_secs),
                    per_char: Duration::from_millis(self.narration_timeout_ms_per_char),
                },
            )),
            NarrationProviderKind::Silent => SpeechEngine::Silent(Silent::default()),
        };
        let retry = notesaga_log::RetryPolicy {
            initial_interval: Duration::from_millis(500),
            max_attempts: self.narration_attempts,
            ..notesaga_log::RetryPolicy::default()
        };
        let budget = RenderBudget {
            base: Duration::from_secs(self.narration_retry_budget_secs),
            per_kb: Duration::from_secs(self.narration_retry_budget_per_kb_secs),
        };
        Narrator::new(
            engine,
            retry,
            budget,
            notesaga_log::breaker::BreakerConfig::default(),
            self.narration_concurrency,
        )
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct NarrationArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) storage: Storage,
    /// Where the narrations are written.
    #[command(flatten)]
    pub(crate) audio: AudioStoreArgs,
    #[command(flatten)]
    pub(crate) provider: NarrationProviderArgs,
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
    /// A user of the registry, USER:PASSWORD:ROLE with ROLE `read`, `write` (register
    /// schemas) or `admin` (deletes, configuration); repeatable (comma-separated in the
    /// variable). Clients send USER:PASSWORD as HTTP basic auth (`basic.auth.user.info`).
    /// None: the registry is open to anyone who reaches it.
    #[arg(
        long = "registry-user",
        env = "NOTESAGA_REGISTRY_USERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) registry_users: Vec<String>,
    /// Whether callers without credentials may read schemas (analysts' tools); `false`
    /// makes every request authenticate. Only with users.
    #[arg(long, env = "NOTESAGA_REGISTRY_ANONYMOUS_READ", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) registry_anonymous_read: bool,
    /// Extra librdkafka setting for the registry's clients, KEY=VALUE; repeatable
    /// (comma-separated in the variable), as for every other role (SASL, SSL).
    #[arg(long = "kafka-option", env = "NOTESAGA_KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_key_value)]
    pub(crate) kafka_options: Vec<(String, String)>,
    /// How `_schemas` is replicated when the registry creates it.
    #[command(flatten)]
    pub(crate) replication: ReplicationArgs,
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
    /// Partitions of every flow topic when the node creates them (topics that exist keep
    /// theirs). One by default: the node runs one instance of each role. Set the count a
    /// future cluster will need (6 there by default) if the node's log is to move to one.
    #[arg(long, env = "NOTESAGA_PARTITIONS", default_value_t = notesaga_events::topics::SINGLE_NODE_PARTITIONS)]
    pub(crate) partitions: i32,
    /// Database of the read projections (default: SQLite in the data directory).
    #[arg(long, env = "NOTESAGA_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// The broker executable; default: `notesaga-broker` next to this binary, else on PATH.
    #[arg(long, env = "NOTESAGA_BROKER_BIN")]
    pub(crate) broker_bin: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) narration: NarrationProviderArgs,
    #[command(flatten)]
    pub(crate) embedding: EmbeddingProviderArgs,
    #[command(flatten)]
    pub(crate) saga: SagaPolicyArgs,
    /// The API's body limit, rate limit, timeout, page size, waits.
    #[command(flatten)]
    pub(crate) limits: crate::limits::LimitArgs,
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
    /// Notes processor throughput (1 KB bodies) and aggregate rebuild, each beside the
    /// plain log rate of the same run. Run it against a fresh broker: it uses the real
    /// `notes.*` topics.
    Notes(BenchNotesArgs),
    /// The saga pipeline of a running single node (`notesaga dev`): notes posted at a
    /// steady rate through the HTTP API, sagas completed per second and the
    /// command→published latency, beside the plain log rate of the same run.
    Saga(BenchSagaArgs),
    /// Command acceptance of a running node's HTTP API: the most `POST /v1/notes` → 202
    /// per second at a fixed concurrency (closed loop), then the latency at half that rate
    /// (open loop, measured from each request's scheduled send time).
    Api(BenchApiArgs),
    /// Projection replay: N realistic records produced onto the projection topics of a
    /// fresh broker, then folded by the projector from offset 0 into a fresh database,
    /// batched and one record per transaction, events/s of each.
    Replay(BenchReplayArgs),
    /// The closed loop of `bench saga --concurrency` against the peer: the note pipeline
    /// as a Restate workflow (`bench/restate/pipeline.mjs`), called through Restate's
    /// ingress (`make bench-compare` runs both sides in one go).
    Restate(BenchRestateArgs),
    /// Search quality on the judged set of bench/search (recall@1, recall@10, MRR@10,
    /// nDCG@10 of keyword, hash, MiniLM and hybrid rankings), query embedding latency,
    /// and with --speed-notes the search latency over that many notes of one user.
    Search(BenchSearchArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchRestateArgs {
    /// Restate's ingress URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Closed-loop levels: clients in flight, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub(crate) concurrency: Vec<usize>,
    /// Seconds each level runs (after a warm-up call per client).
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
    /// Body size of each note, bytes of English-like words.
    #[arg(long, default_value_t = 100)]
    pub(crate) body_size: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchSearchArgs {
    /// Directory of the judged set: corpus.jsonl and judgments.jsonl.
    #[arg(long, default_value = "bench/search")]
    pub(crate) set: PathBuf,
    /// Directory of the all-MiniLM-L6-v2 model; default where `make model` puts it.
    #[arg(long, env = "NOTESAGA_EMBEDDING_MODEL_DIR")]
    pub(crate) model_dir: Option<PathBuf>,
    /// Keyword weight of the hybrid fusion, 0 to 1; default the product's.
    #[arg(long)]
    pub(crate) keyword_weight: Option<f32>,
    /// Choose the keyword weight on the tuning half of the queries (even positions),
    /// then report the held-out half with it.
    #[arg(long)]
    pub(crate) tune: bool,
    /// Print each query's MRR@10 per ranking.
    #[arg(long)]
    pub(crate) verbose: bool,
    /// Also measure search latency over this many ~1 KB notes of one user (0: skip).
    #[arg(long, default_value_t = 0)]
    pub(crate) speed_notes: usize,
    /// Databases of the latency run; repeatable: `sqlite` (a temporary file) or a
    /// PostgreSQL server URL (`postgres://USER@HOST:PORT`, a throw-away database).
    #[arg(long, default_value = "sqlite")]
    pub(crate) database_url: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchApiArgs {
    /// Base URL of the node's HTTP API; default: the `http_addr` that a running
    /// `notesaga dev` wrote to DATA_DIR/node.json.
    #[arg(long, env = "NOTESAGA_API_URL")]
    pub(crate) api: Option<String>,
    /// Bearer token sent as `Authorization: Bearer …`.
    #[arg(long, env = "NOTESAGA_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Data directory of a running `notesaga dev`: without --token a token is minted
    /// with its secret; without --api its node.json says where the API is.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Requests in flight at once in the closed-loop phase.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 20)]
    pub(crate) duration: u64,
    /// Seconds of closed-loop load before anything is measured.
    #[arg(long, default_value_t = 3)]
    pub(crate) warmup: u64,
    /// Body size of each note, bytes of English-like words.
    #[arg(long, default_value_t = 2048)]
    pub(crate) body_size: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchReplayArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Records produced onto the projection topics (the broker's must be empty) and
    /// replayed by the batched run.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: usize,
    /// Database to replay into; repeatable. `sqlite` is a fresh file in a temporary
    /// directory; a PostgreSQL server URL (`postgres://USER@HOST:PORT`) gets a throw-away
    /// database, dropped afterwards.
    #[arg(long, default_value = "sqlite")]
    pub(crate) database_url: Vec<String>,
    /// Records per transaction of the batched run; default: the projector's own.
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Records replayed one per transaction (fewer than --events: that run is slow).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) unbatched_events: usize,
    /// Body size of each note version, bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) body_size: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchSagaArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Base URL of the node's HTTP API.
    #[arg(
        long,
        env = "NOTESAGA_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) api: String,
    /// Notes posted in the measured run.
    #[arg(long, default_value_t = 300)]
    pub(crate) notes: usize,
    /// Notes posted per second (a steady, open-loop rate).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) rate: f64,
    /// Body size of each note, bytes of English-like words.
    #[arg(long, default_value_t = 1024)]
    pub(crate) body_size: usize,
    /// Notes posted (and awaited) before anything is timed: they warm the pipeline and
    /// give the typical flow record size the plain runs use.
    #[arg(long, default_value_t = 10)]
    pub(crate) warmup: usize,
    /// Records of each plain rdkafka run.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) plain_records: usize,
    /// Seconds to wait for the last sagas after the last note was posted; the notes
    /// still unfinished then are reported as timed out.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout: u64,
    /// Bearer token sent as `Authorization: Bearer …`.
    #[arg(long, env = "NOTESAGA_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Data directory of the running `notesaga dev`: without --token, a token of the
    /// user `bench` is minted with its secret (as `bench api` does).
    #[arg(long, env = "NOTESAGA_DATA_DIR")]
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// Closed loop instead of the open-loop rate: C clients, each posting a note and
    /// waiting for its `NotePublished` before the next. A comma-separated list runs each
    /// level in turn and prints one table (e.g. `1,8,32,128`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) concurrency: Vec<usize>,
    /// Seconds each closed-loop level runs (after a warm-up of its own).
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
    /// Skip the plain rdkafka runs (closed loop only).
    #[arg(long)]
    pub(crate) skip_plain: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchNotesArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Commands per run.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) commands: usize,
    /// Body size of each note, bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) body_size: usize,
    /// Runs; the best of each figure is reported.
    #[arg(long, default_value_t = 2)]
    pub(crate) runs: usize,
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

#[derive(Debug, Clone, Args)]
pub(crate) struct OrchestratorArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) saga: SagaPolicyArgs,
}

/// Deadlines, retry budgets and stall detection of the note-pipeline saga.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Saga policy")]
pub(crate) struct SagaPolicyArgs {
    /// Reply deadline of the embedding step, ms.
    #[arg(long, env = "NOTESAGA_SAGA_EMBEDDING_DEADLINE_MS", default_value_t = Policy::default().embedding_deadline_ms)]
    pub(crate) saga_embedding_deadline_ms: i64,
    /// Reply deadline of the narration step for an empty text, ms (plus the per-KB part).
    #[arg(long, env = "NOTESAGA_SAGA_NARRATION_DEADLINE_MS", default_value_t = Policy::default().narration_deadline_ms)]
    pub(crate) saga_narration_deadline_ms: i64,
    /// Narration deadline added per started 1,000 bytes of text, ms.
    #[arg(long, env = "NOTESAGA_SAGA_NARRATION_DEADLINE_PER_KB_MS", default_value_t = Policy::default().narration_deadline_per_kb_ms)]
    pub(crate) saga_narration_deadline_per_kb_ms: i64,
    /// Reply deadline of publish and of every delete (compensation, retirement, cleanup), ms.
    #[arg(long, env = "NOTESAGA_SAGA_OTHER_DEADLINE_MS", default_value_t = Policy::default().other_deadline_ms)]
    pub(crate) saga_other_deadline_ms: i64,
    /// Re-sends of the same command after passed deadlines before an attempt counts as failed.
    #[arg(long, env = "NOTESAGA_SAGA_MAX_RESENDS", default_value_t = Policy::default().max_resends)]
    pub(crate) saga_max_resends: i32,
    /// Attempts of a forward step (embedding, narration, publish) before the saga fails.
    #[arg(long, env = "NOTESAGA_SAGA_MAX_ATTEMPTS", default_value_t = Policy::default().max_attempts)]
    pub(crate) saga_max_attempts: i32,
    /// Attempts of a compensation, retirement or cleanup before the saga parks in
    /// compensation_failed.
    #[arg(long, env = "NOTESAGA_SAGA_MAX_COMPENSATION_ATTEMPTS", default_value_t = Policy::default().max_compensation_attempts)]
    pub(crate) saga_max_compensation_attempts: i32,
    /// First backoff between attempts, ms (doubled per attempt).
    #[arg(long, env = "NOTESAGA_SAGA_BACKOFF_MS", default_value_t = Policy::default().backoff_base_ms)]
    pub(crate) saga_backoff_ms: i64,
    /// Longest backoff between attempts, ms.
    #[arg(long, env = "NOTESAGA_SAGA_BACKOFF_MAX_MS", default_value_t = Policy::default().backoff_max_ms)]
    pub(crate) saga_backoff_max_ms: i64,
    /// A saga without progress for this long is reported stuck, ms.
    #[arg(long, env = "NOTESAGA_SAGA_STUCK_AFTER_MS", default_value_t = Policy::default().stuck_after_ms)]
    pub(crate) saga_stuck_after_ms: i64,
    /// How often deadlines, backoffs and stalls are checked, ms.
    #[arg(long, env = "NOTESAGA_SAGA_TICK_MS", default_value_t = 500)]
    pub(crate) saga_tick_ms: u64,
}

impl SagaPolicyArgs {
    pub(crate) fn policy(&self) -> Policy {
        Policy {
            embedding_deadline_ms: self.saga_embedding_deadline_ms,
            narration_deadline_ms: self.saga_narration_deadline_ms,
            narration_deadline_per_kb_ms: self.saga_narration_deadline_per_kb_ms,
            other_deadline_ms: self.saga_other_deadline_ms,
            max_resends: self.saga_max_resends,
            max_attempts: self.saga_max_attempts.max(1),
            max_compensation_attempts: self.saga_max_compensation_attempts.max(1),
            backoff_base_ms: self.saga_backoff_ms,
            backoff_max_ms: self.saga_backoff_max_ms,
            stuck_after_ms: self.saga_stuck_after_ms,
        }
    }

    pub(crate) fn tick(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.saga_tick_ms.max(10))
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SagaArgs {
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`; default: the `http_addr`
    /// that a running `notesaga dev` wrote to DATA_DIR/node.json.
    #[arg(long, env = "NOTESAGA_API_URL", global = true)]
    pub(crate) api: Option<String>,
    /// Data directory of a running `notesaga dev` (its node.json says where the API is);
    /// used when --api is not given.
    #[arg(
        long,
        env = "NOTESAGA_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub(crate) data_dir: PathBuf,
    /// Bearer token sent as `Authorization: Bearer …` (for when the API checks one).
    #[arg(long, env = "NOTESAGA_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Print the API's JSON as it is instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// `table` (the default) or `json` (the same as --json).
    #[arg(long, global = true, value_enum)]
    pub(crate) output: Option<crate::dlq::Output>,
    #[command(subcommand)]
    pub(crate) command: SagaCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum SagaCommand {
    /// Sagas, most recently changed first: id, note, version, kind, state, stuck,
    /// step#attempt, last change and failure reason.
    List(SagaListArgs),
    /// One saga and its timeline.
    Show {
        /// The saga id.
        id: String,
    },
    /// Ask the orchestrator to try a parked (compensation_failed) saga's step again with
    /// a fresh attempt budget.
    Retry {
        /// The saga id.
        id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SagaListArgs {
    /// Only sagas in this state: running, compensating, completed, compensated,
    /// compensation_failed or superseded.
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Only sagas reported stuck (no progress for the configured time).
    #[arg(long)]
    pub(crate) stuck: bool,
    /// At most this many (1 to 1000; the API's default is 100).
    #[arg(long)]
    pub(crate) limit: Option<i64>,
}

/// `notesaga replay`: which projections, and where the API is (as for `notesaga saga`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ReplayArgs {
    /// The projection to rebuild (`notes`).
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub(crate) projection: Option<String>,
    /// Rebuild every projection, one after the other.
    #[arg(long)]
    pub(crate) all: bool,
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`; default: the `http_addr`
    /// that a running `notesaga dev` wrote to DATA_DIR/node.json.
    #[arg(long, env = "NOTESAGA_API_URL")]
    pub(crate) api: Option<String>,
    /// Data directory of a running `notesaga dev`: its node.json says where the API is
    /// and its secret signs an admin token (used when --api is not given).
    #[arg(long, env = "NOTESAGA_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
    /// Bearer token with the admin role, sent as `Authorization: Bearer …`.
    #[arg(long, env = "NOTESAGA_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// `notesaga check`: the same connection options as `notesaga dev`. Addresses not given
/// come from DATA_DIR/node.json of a running (or last run) `notesaga dev`, else from the
/// single node's defaults. (Not `Connection`: its defaults hide whether an address was
/// given, and the check must know to fall back on node.json.)
#[derive(Debug, Clone, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) storage: Storage,
    /// The audio store to check (as the narration role's).
    #[command(flatten)]
    pub(crate) audio: AudioStoreArgs,
    /// Kafka bootstrap servers; default: node.json's `kafka_addr`, else 127.0.0.1:9092.
    #[arg(long, env = "NOTESAGA_KAFKA_ADDR")]
    pub(crate) kafka_addr: Option<String>,
    /// Schema registry, HOST:PORT or URL; default: node.json's `registry_addr`, else
    /// 127.0.0.1:8081.
    #[arg(long, alias = "registry-url", env = "NOTESAGA_REGISTRY_ADDR")]
    pub(crate) registry_addr: Option<String>,
    /// Registry credentials, USER:PASSWORD (`basic.auth.user.info`); default: the single
    /// node's `registry-user-info` file in the data directory, if any.
    #[arg(long, env = "NOTESAGA_REGISTRY_USER_INFO", hide_env_values = true)]
    pub(crate) registry_user_info: Option<String>,
    /// The embedding store's database; default as for `notesaga embedding`
    /// (`embedding.db` in the data directory, or the --database-url PostgreSQL database).
    #[arg(long, env = "NOTESAGA_EMBEDDING_DATABASE_URL")]
    pub(crate) embedding_database_url: Option<String>,
    /// Seconds to wait for sagas at work to settle before checking (0: check at once).
    /// Whatever is still at work then is reported as in flight, not as a violation.
    #[arg(
        long,
        env = "NOTESAGA_CHECK_WAIT",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub(crate) wait: u64,
    /// `table` (the default report) or `json` (the report as one JSON document on
    /// stdout; what the check says while it reads goes to stderr).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) output: crate::dlq::Output,
}
