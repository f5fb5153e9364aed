//! Who is calling: the one place a handler learns the user it acts for.
//!
//! Until authentication exists every request acts as [`crate::ApiConfig::default_owner`].
//! Every owner-scoped handler takes a [`Caller`], so the auth work replaces this
//! extractor's body (validate the bearer token, take `sub`, answer 401 otherwise) and
//! nothing else.

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{problem::Problem, AppState};

/// The user a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Owns the notes it creates; sees only its own notes, commands and search results.
    pub(crate) owner: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(_parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        Ok(Self {
            owner: state.config.default_owner.clone(),
        })
    }
}
