//! The narration domain: [`speech`] renders text to WAV with espeak-ng, [`wav`] reads a
//! WAV's length from the audio itself, [`blob`] is the small blob-store interface the
//! audio lives behind (a filesystem implementation under the data directory), and
//! [`processor`] answers `narration.commands`.

pub mod blob;
pub mod chunks;
pub mod processor;
pub mod speech;
pub mod wav;

pub use blob::{BlobStore, FsBlobStore};
pub use processor::NarrationProcessor;
pub use speech::Espeak;
