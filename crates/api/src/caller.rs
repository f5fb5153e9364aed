//! Who is calling: the one place a handler learns the user it acts for.
//!
//! The [`crate::auth`] middleware has verified the bearer token before any handler runs
//! and left its principal in the request's extensions; [`Caller`] takes the owner from
//! its `sub`. Every owner-scoped handler takes a [`Caller`]; the audio route takes an
//! [`AudioAccess`], which is a `Caller` or a signed URL.

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{
    auth::{Principal, SignedUrl},
    problem::Problem,
    AppState,
};

/// The user a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Owns the notes it creates; sees only its own notes, commands and search results.
    /// The token's `sub`.
    pub(crate) owner: String,
    /// Holds the `admin` role: sees every user's sagas (operators unstick them).
    pub(crate) admin: bool,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(principal) = parts.extensions.get::<Principal>() else {
            // Only a route outside the auth middleware gets here: a bug, not the client's.
            return Err(Problem::internal(&format_args!(
                "{} {} has no authenticated principal: is it behind the auth middleware?",
                parts.method,
                parts.uri.path()
            )));
        };
        let caller = Self {
            owner: principal.subject.clone(),
            admin: principal.admin,
        };
        // The per-user rate limit: the first point where the user is known.
        state.rate_limiter.check(&caller.owner)?;
        Ok(caller)
    }
}

/// How a request may read a note's audio: as a caller (who must own the note), or with a
/// signed URL the API handed to the owner.
#[derive(Debug, Clone)]
pub(crate) enum AudioAccess {
    /// A bearer token's user.
    Caller(Caller),
    /// A valid signed URL for exactly this path.
    SignedUrl,
}

impl FromRequestParts<AppState> for AudioAccess {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if parts.extensions.get::<SignedUrl>().is_some() {
            return Ok(Self::SignedUrl);
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(Self::Caller)
    }
}
