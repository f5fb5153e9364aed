//! Runs the saga definitions of `sagas/` against the log (group `notesaga.orchestrator`).
//!
//! It reads the replies it waits for (`notes.events`, `embedding.events`,
//! `narration.events`), rebuilds the sagas of a partition from `saga.note-pipeline` when
//! it first sees that partition, and carries out the saga's actions in order: append
//! the saga event, send the command (deterministic id), and only then let the loop
//! commit. After a rebuild it re-sends the command each running saga waits on, with the
//! same id, so a crash between appending and sending loses nothing.

mod observed;
mod runner;

pub use observed::to_input;
pub use runner::Orchestrator;
