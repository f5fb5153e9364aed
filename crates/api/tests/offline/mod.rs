//! The state of an API whose broker and registry are a closed port: queries run against
//! a real read store (SQLite in a temporary directory, or the database at a URL), while
//! every command send and every readiness probe of the log fails. What the router tests
//! drive with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use anyhow::Result;
use notesaga_api::{ApiConfig, AppState};
use notesaga_embedder::{BuiltinEmbedder, Provider, Resilient};
use notesaga_log::{breaker::BreakerConfig, AvroCodec, KafkaConfig, Publisher};
use notesaga_narration::FsBlobStore;
use notesaga_projections::ReadStore;

/// An offline API's state and what a test reaches around it. Each test binary compiles
/// this module on its own and reads only the fields it needs.
#[allow(dead_code)]
pub(crate) struct Offline {
    /// Holds the SQLite file and the audio directory; dropped with the test.
    pub(crate) dir: tempfile::TempDir,
    /// The read store the API answers from (tests fill it through the projection fold).
    pub(crate) store: ReadStore,
    /// Where the API finds narrations.
    pub(crate) audio: FsBlobStore,
    /// The API's state, for `notesaga_api::router`.
    pub(crate) state: AppState,
}

/// An API configured with `config`, its read store at `database_url` (a SQLite file in
/// a temporary directory if `None`).
pub(crate) async fn offline(config: ApiConfig, database_url: Option<&str>) -> Result<Offline> {
    let dir = tempfile::tempdir()?;
    let url = database_url.map_or_else(
        || format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
        str::to_owned,
    );
    let store = ReadStore::connect(&url).await?;
    // Bound, then released: nothing listens there.
    let closed = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    );
    let codec = Arc::new(AvroCodec::new(&format!("http://{closed}")));
    let publisher = Publisher::new(&KafkaConfig::new(closed), codec)?;
    let embedder = Resilient::new(
        Provider::Builtin(BuiltinEmbedder),
        notesaga_log::RetryPolicy::default(),
        BreakerConfig::default(),
        1,
    );
    let audio = FsBlobStore::new(dir.path().join("audio"));
    let state = AppState::new(publisher, store.clone(), audio.clone(), embedder, config);
    Ok(Offline {
        dir,
        store,
        audio,
        state,
    })
}
