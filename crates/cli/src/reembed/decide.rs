//! The decisions of `notesaga reembed` that need no I/O, table-tested: which model names
//! it accepts, how the operator switches search to the model, and how a run ended.

use std::collections::BTreeSet;

use notesaga_embedder::{hash, minilm};

/// The models the embedding role runs in process whatever it is configured for (see
/// `notesaga_embedding::models`).
pub(crate) const IN_PROCESS: [&str; 2] = [minilm::MODEL, hash::MODEL];

/// Whether a re-embedding to `model` can be asked for: one of the in-process models, or
/// a model whose vectors the read store holds already (an OpenAI-compatible server's,
/// which only a role configured for it produces). Anything else is most likely a typo,
/// answered with what would be accepted.
pub(crate) fn check_model(model: &str, in_store: &BTreeSet<String>) -> Result<(), String> {
    if IN_PROCESS.contains(&model) || in_store.contains(model) {
        return Ok(());
    }
    let known: BTreeSet<&str> = IN_PROCESS
        .iter()
        .copied()
        .chain(in_store.iter().map(String::as_str))
        .collect();
    let hint = known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(model))
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    Err(format!(
        "unknown model {model:?}{hint}: the embedding role can re-embed to {} (in process) or \
         to a model it is configured for whose vectors the read store already holds ({}); \
         pass one of them with --model",
        IN_PROCESS.join(" or "),
        if in_store.is_empty() {
            "none yet".to_owned()
        } else {
            in_store.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    ))
}

/// What the operator does to make search (and new notes) use `model`.
pub(crate) fn switch_step(model: &str) -> String {
    let provider = match model {
        minilm::MODEL => "NOTESAGA_EMBEDDING_PROVIDER=minilm (and NOTESAGA_EMBEDDING_MODEL_DIR \
                          if the model is not in ~/.cache/notesaga/all-MiniLM-L6-v2)"
            .to_owned(),
        hash::MODEL => "NOTESAGA_EMBEDDING_PROVIDER=builtin".to_owned(),
        other => format!(
            "NOTESAGA_EMBEDDING_PROVIDER=openai and NOTESAGA_EMBEDDING_MODEL={other} (with its \
             NOTESAGA_EMBEDDING_URL)"
        ),
    };
    format!(
        "to switch search to {model}: set {provider} on the api and embedding roles (for \
         `notesaga dev`: on the node) and restart them; until then search keeps using the \
         model they run now"
    )
}

/// How a run ended, for the exit code and the last lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Sent and now with a vector of the model in the read store.
    pub(crate) embedded: usize,
    /// Answered `EmbeddingFailed`: (note, version, reason).
    pub(crate) failed: Vec<(String, i64, String)>,
    /// Sent, with neither a vector nor a failure by the end of the wait.
    pub(crate) missing: Vec<(String, i64)>,
    /// Published while the run went on (a new note, or a newer version of a note sent:
    /// its vector of the model is then of a version search no longer reads), with no
    /// vector of the model: another run sends them.
    pub(crate) published_since: Vec<(String, i64)>,
}

impl Outcome {
    /// Whether every note sent has its vector.
    pub(crate) fn complete(&self) -> bool {
        self.failed.is_empty() && self.missing.is_empty() && self.published_since.is_empty()
    }
}

/// Of the published versions still without a vector of the model after the wait
/// (`still_todo`, as (note, version)), the ones the run did not send: published since
/// its plan was made. The ones it sent are already counted as failed or missing.
pub(crate) fn published_since(
    still_todo: &[(String, i64)],
    sent: &BTreeSet<(String, i64)>,
) -> Vec<(String, i64)> {
    still_todo
        .iter()
        .filter(|key| !sent.contains(*key))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_models_are_accepted() {
        let none = BTreeSet::new();
        let openai: BTreeSet<String> = ["nomic-embed-text".to_owned()].into();
        for (model, in_store, accepted, says) in [
            ("all-MiniLM-L6-v2", &none, true, ""),
            ("notesaga-builtin-hash-v1", &none, true, ""),
            ("nomic-embed-text", &openai, true, ""),
            ("nomic-embed-text", &none, false, "none yet"),
            (
                "all-minilm-l6-v2",
                &none,
                false,
                "did you mean all-MiniLM-L6-v2?",
            ),
            ("minilm", &openai, false, "nomic-embed-text"),
            ("", &none, false, "unknown model \"\""),
        ] {
            let result = check_model(model, in_store);
            assert_eq!(result.is_ok(), accepted, "{model}: {result:?}");
            if let Err(message) = result {
                assert!(message.contains(says), "{model}: {message}");
                assert!(message.contains("--model"), "{message}");
            }
        }
    }

    #[test]
    fn the_switch_names_the_provider_of_the_model() {
        for (model, says) in [
            ("all-MiniLM-L6-v2", "NOTESAGA_EMBEDDING_PROVIDER=minilm"),
            (
                "notesaga-builtin-hash-v1",
                "NOTESAGA_EMBEDDING_PROVIDER=builtin",
            ),
            (
                "nomic-embed-text",
                "NOTESAGA_EMBEDDING_MODEL=nomic-embed-text",
            ),
        ] {
            let step = switch_step(model);
            assert!(step.contains(says), "{step}");
            assert!(step.contains("api and embedding roles"), "{step}");
        }
    }

    #[test]
    fn complete_only_without_failures_or_missing() {
        let done = Outcome {
            embedded: 2,
            failed: vec![],
            missing: vec![],
            published_since: vec![],
        };
        assert!(done.complete());
        assert!(!Outcome {
            failed: vec![("n".into(), 1, "why".into())],
            ..done.clone()
        }
        .complete());
        assert!(!Outcome {
            missing: vec![("n".into(), 1)],
            ..done.clone()
        }
        .complete());
        assert!(!Outcome {
            published_since: vec![("n".into(), 2)],
            ..done
        }
        .complete());
    }

    #[test]
    fn versions_published_during_the_run_are_told_apart_from_the_ones_sent() {
        let key = |n: &str, v: i64| (n.to_owned(), v);
        let sent: BTreeSet<(String, i64)> = [key("a", 1), key("b", 1)].into();
        for (still_todo, expected) in [
            // Everything sent got its vector, nothing new.
            (vec![], vec![]),
            // a's v1 is still without (failed or missing: counted there).
            (vec![key("a", 1)], vec![]),
            // b was edited and v2 published meanwhile; c is a new note.
            (
                vec![key("a", 1), key("b", 2), key("c", 1)],
                vec![key("b", 2), key("c", 1)],
            ),
        ] {
            assert_eq!(published_since(&still_todo, &sent), expected);
        }
    }
}
