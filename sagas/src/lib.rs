//! Saga definitions as pure state machines: no I/O, no clock, no async.
//!
//! [`note_pipeline`] is the saga that publishes one note version: embedding, then
//! narration, then publication. The orchestrator (`crates/orchestrator`) feeds it
//! inputs translated from the log and carries out the [`note_pipeline::Action`]s it
//! returns; the saga's own events are its state, so a rebuild is a fold of
//! `saga.note-pipeline`.

pub mod note_pipeline;
