//! Which embedder answers a `GenerateEmbedding`: the role's configured one, or, for a
//! re-embedding that names another model (`notesaga reembed --model M`, issue 13), an
//! in-process embedder of that model.
//!
//! The in-process models need nothing from outside: `builtin` always; all-MiniLM-L6-v2
//! from the model directory, loaded once, on the first command that asks for it (a role
//! that is never asked never holds its 90 MB of weights). A model the role cannot run is
//! a permanent failure with a reason naming the model, never a silent fallback to the
//! configured one: a vector of the wrong model under M's name would poison M's search.

use std::path::PathBuf;

use notesaga_embedder::{hash, minilm};
use tokio::sync::OnceCell;

use crate::{
    provider::{Failed, Provider, Resilient},
    BuiltinEmbedder, MiniLm,
};

/// The embedder a command resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The role's configured provider (no model named, or the configured one named).
    Configured,
    /// The in-process hash embedder.
    Builtin,
    /// all-MiniLM-L6-v2, in process.
    MiniLm,
    /// Nothing in this role produces the model.
    Unavailable,
}

/// The embedder for `requested` (the command's `model`) in a role whose configured
/// provider writes `configured`. Pure, so the rule is a table test.
pub fn choose(requested: Option<&str>, configured: &str) -> Choice {
    match requested {
        None => Choice::Configured,
        Some(model) if model == configured => Choice::Configured,
        Some(hash::MODEL) => Choice::Builtin,
        Some(minilm::MODEL) => Choice::MiniLm,
        Some(_) => Choice::Unavailable,
    }
}

/// The embedding role's embedders: the configured one and the in-process ones a
/// re-embedding may ask for.
#[derive(Debug)]
pub struct Embedders {
    configured: Resilient,
    minilm_dir: PathBuf,
    minilm: OnceCell<Resilient>,
}

impl Embedders {
    /// `configured` answers the saga's commands; all-MiniLM-L6-v2 is loaded from
    /// `minilm_dir` when a re-embedding first asks for it.
    pub fn new(configured: Resilient, minilm_dir: PathBuf) -> Self {
        Self {
            configured,
            minilm_dir,
            minilm: OnceCell::new(),
        }
    }

    /// The configured embedder.
    pub fn configured(&self) -> &Resilient {
        &self.configured
    }

    /// The embedder of `requested` (`None`: the configured one), or why there is none.
    pub async fn for_model(&self, requested: Option<&str>) -> Result<Resilient, Failed> {
        let unavailable = |why: String| {
            Failed::permanent(format!(
                "model {} is not available in this embedding role: {why}",
                requested.unwrap_or_default()
            ))
        };
        match choose(requested, self.configured.model()) {
            Choice::Configured => Ok(self.configured.clone()),
            Choice::Builtin => Ok(self
                .configured
                .with_provider(Provider::Builtin(BuiltinEmbedder))),
            Choice::MiniLm => {
                // A failed load is not kept: once the operator puts the model in place,
                // the next command loads it without a restart.
                let dir = self.minilm_dir.clone();
                self.minilm
                    .get_or_try_init(|| async {
                        let loaded = tokio::task::spawn_blocking(move || MiniLm::load(&dir))
                            .await
                            .map_err(|err| format!("loading task: {err}"))?
                            .map_err(|err| {
                                format!(
                                    "cannot load it from {} ({err}); run `make model` or set \
                                     NOTESAGA_EMBEDDING_MODEL_DIR on this role",
                                    self.minilm_dir.display()
                                )
                            })?;
                        tracing::info!(dir = %self.minilm_dir.display(), "all-MiniLM-L6-v2 loaded for re-embedding");
                        Ok::<_, String>(
                            self.configured
                                .with_provider(Provider::MiniLm(std::sync::Arc::new(loaded))),
                        )
                    })
                    .await
                    .cloned()
                    .map_err(unavailable)
            }
            Choice::Unavailable => Err(unavailable(format!(
                "it runs {} and can load {} and {} in process",
                self.configured.model(),
                hash::MODEL,
                minilm::MODEL
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_embedder_answers() {
        let minilm = minilm::MODEL;
        let builtin = hash::MODEL;
        for (requested, configured, expected) in [
            // The saga's commands name no model: the configured one, whatever it is.
            (None, builtin, Choice::Configured),
            (None, "nomic-embed-text", Choice::Configured),
            // Naming the configured model is the configured provider (an OpenAI-compatible
            // server's model too).
            (Some(builtin), builtin, Choice::Configured),
            (Some(minilm), minilm, Choice::Configured),
            (
                Some("nomic-embed-text"),
                "nomic-embed-text",
                Choice::Configured,
            ),
            // Another model: in process if it is one of ours.
            (Some(minilm), builtin, Choice::MiniLm),
            (Some(minilm), "nomic-embed-text", Choice::MiniLm),
            (Some(builtin), minilm, Choice::Builtin),
            // Anything else: no.
            (Some("nomic-embed-text"), builtin, Choice::Unavailable),
            (Some("all-minilm-l6-v2"), builtin, Choice::Unavailable),
            (Some(""), builtin, Choice::Unavailable),
        ] {
            assert_eq!(
                choose(requested, configured),
                expected,
                "{requested:?} in a role running {configured}"
            );
        }
    }

    fn builtin_role() -> Resilient {
        Resilient::new(
            Provider::Builtin(BuiltinEmbedder),
            notesaga_log::RetryPolicy::default(),
            notesaga_log::breaker::BreakerConfig::default(),
            1,
        )
    }

    #[tokio::test]
    async fn an_unknown_model_or_a_missing_directory_is_a_permanent_failure() {
        let dir = tempfile::tempdir().unwrap();
        let embedders = Embedders::new(builtin_role(), dir.path().join("absent"));
        let failed = embedders
            .for_model(Some("text-embedding-3-small"))
            .await
            .unwrap_err();
        assert!(!failed.retryable);
        assert!(
            failed.reason.starts_with(
                "model text-embedding-3-small is not available in this embedding role: "
            ),
            "{}",
            failed.reason
        );
        let failed = embedders.for_model(Some(minilm::MODEL)).await.unwrap_err();
        assert!(!failed.retryable);
        assert!(failed.reason.contains("absent"), "{}", failed.reason);
        assert!(
            failed.reason.contains("NOTESAGA_EMBEDDING_MODEL_DIR"),
            "{}",
            failed.reason
        );
        // The builtin model is always there, and the configured one.
        let builtin = embedders.for_model(Some(hash::MODEL)).await.unwrap();
        assert_eq!(builtin.model(), hash::MODEL);
        assert_eq!(
            embedders.for_model(None).await.unwrap().model(),
            hash::MODEL
        );
    }
}
