//! The notes domain: the pure [`aggregate`] (`handle` / `apply`, table-tested), the
//! [`validation`] rules it shares with the API's synchronous checks, and the
//! [`processor`] that runs it against `notes.commands`.

pub mod aggregate;
pub mod bench;
pub mod processor;
pub mod validation;

pub use aggregate::{apply, handle, Note, Rejection, RejectionCode};
pub use processor::{NotesProcessor, BATCH};
