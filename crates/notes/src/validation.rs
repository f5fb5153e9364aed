//! The field rules of a note live in `notesaga-validation`, shared with the API; this
//! path keeps naming them for the aggregate.

pub use notesaga_validation::*;
