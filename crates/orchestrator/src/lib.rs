//! Runs the saga definitions of `sagas/` against the log (group `notesaga.orchestrator`).
//!
//! It reads the replies it waits for (`notes.events`, `embedding.events`,
//! `narration.events`) and operator requests (`saga.note-pipeline`), rebuilds the sagas
//! of a partition from `saga.note-pipeline` as soon as the group assigns it, and carries
//! out the saga's actions in order: append the saga event, send the command
//! (deterministic id), and only then let the loop commit. A tick drives deadlines,
//! retries after a backoff and stall detection; the deadlines are in the saga's events,
//! so they survive a restart. After a rebuild it re-sends the command each active saga
//! waits on, with the same id, so a crash between appending and sending loses nothing.

mod observed;
mod runner;

pub use observed::{observe, Observed};
pub use runner::{Orchestrator, BATCH, SAGAS, SAGAS_STUCK, SAGA_EVENTS_TOTAL};
