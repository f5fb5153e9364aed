//! Short-lived signed URLs, so a browser's `<audio src>` can fetch a narration without an
//! `Authorization` header: `PATH?expires=UNIX_SECS&sig=HMAC`, where `sig` is
//! HMAC-SHA256 (base64url, no padding) over `PATH` and `expires`. A signature grants that
//! one path until it expires, to whoever holds it; it is only handed to the note's owner.

use std::sync::Arc;

use jsonwebtoken::{crypto, Algorithm, DecodingKey, EncodingKey};

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlRefusal {
    /// `expires` or `sig` missing or unreadable.
    Malformed,
    /// The signature does not match the path and expiry.
    BadSignature,
    /// Valid once, not any more.
    Expired,
}

/// Signs and checks URLs with one HMAC key.
#[derive(Clone)]
pub(crate) struct UrlSigner {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner").finish_non_exhaustive()
    }
}

/// The label the URL key is derived under, so a JWT secret never signs URLs directly
/// (a URL signature can never pass as a token signature, nor the other way round).
const DERIVATION_LABEL: &[u8] = b"notesaga/signed-url/v1";

impl UrlSigner {
    /// Signs with `key` as it is (`NOTESAGA_URL_SIGNING_KEY`).
    pub(crate) fn new(key: &[u8]) -> Self {
        Self { key: key.into() }
    }

    /// A key derived from the JWT secret: HMAC-SHA256(secret, label).
    pub(crate) fn derived_from(secret: &[u8]) -> Self {
        let derived = hmac(secret, DERIVATION_LABEL);
        Self::new(derived.as_bytes())
    }

    /// A random key for this process only: its URLs work against this instance alone.
    pub(crate) fn random() -> Self {
        // Two v4 UUIDs: 244 bits from the operating system's random source.
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self::new(key.as_bytes())
    }

    fn signature(&self, path: &str, expires: u64) -> String {
        hmac(&self.key, format!("{path}\n{expires}").as_bytes())
    }

    /// `path` signed until `expires` (Unix seconds).
    pub(crate) fn sign(&self, path: &str, expires: u64) -> String {
        format!(
            "{path}?expires={expires}&sig={}",
            self.signature(path, expires)
        )
    }

    /// Whether `query` (the URL's raw query) signs `path` at `now`.
    pub(crate) fn check(&self, path: &str, query: &str, now: u64) -> Result<(), UrlRefusal> {
        let (expires, sig) = parts(query).ok_or(UrlRefusal::Malformed)?;
        let key = DecodingKey::from_secret(&self.key);
        let message = format!("{path}\n{expires}");
        // Constant-time comparison inside the crypto provider.
        let valid =
            crypto::verify(sig, message.as_bytes(), &key, Algorithm::HS256).unwrap_or(false);
        if !valid {
            return Err(UrlRefusal::BadSignature);
        }
        if expires < now {
            return Err(UrlRefusal::Expired);
        }
        Ok(())
    }
}

/// Whether a raw query asks to be judged as a signed URL.
pub(crate) fn is_signed(query: &str) -> bool {
    query.split('&').any(|pair| pair.starts_with("sig="))
}

/// `expires` and `sig` out of a raw query (each exactly once).
fn parts(query: &str) -> Option<(u64, &str)> {
    let (mut expires, mut sig) = (None, None);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=')?;
        let slot = match name {
            "expires" => &mut expires,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some((expires?.parse().ok()?, sig?))
}

fn hmac(key: &[u8], message: &[u8]) -> String {
    crypto::sign(message, &EncodingKey::from_secret(key), Algorithm::HS256)
        .expect("HMAC-SHA256 signs with any key")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/notes/3e1c1b56-3f0c-4a5e-9c1a-2f1f7f0e2a10/audio";

    fn query(url: &str) -> &str {
        url.split_once('?').expect("a query").1
    }

    #[test]
    fn signed_urls_are_checked() {
        let signer = UrlSigner::derived_from(b"0123456789abcdef0123456789abcdef");
        let url = signer.sign(PATH, 1_000);
        let good = query(&url);
        let sig = good.split_once("sig=").expect("sig").1;
        let other_path = "/v1/notes/00000000-0000-0000-0000-000000000000/audio";
        let cases = [
            ("valid", PATH, good.to_owned(), 999, Ok(())),
            ("at expiry", PATH, good.to_owned(), 1_000, Ok(())),
            (
                "expired",
                PATH,
                good.to_owned(),
                1_001,
                Err(UrlRefusal::Expired),
            ),
            (
                "other path",
                other_path,
                good.to_owned(),
                999,
                Err(UrlRefusal::BadSignature),
            ),
            (
                "later expiry",
                PATH,
                format!("expires=2000&sig={sig}"),
                999,
                Err(UrlRefusal::BadSignature),
            ),
            (
                "tampered sig",
                PATH,
                format!("expires=1000&sig=A{}", &sig[1..]),
                999,
                Err(UrlRefusal::BadSignature),
            ),
            (
                "no sig",
                PATH,
                "expires=1000".to_owned(),
                999,
                Err(UrlRefusal::Malformed),
            ),
            (
                "bad expires",
                PATH,
                format!("expires=soon&sig={sig}"),
                999,
                Err(UrlRefusal::Malformed),
            ),
            (
                "two sigs",
                PATH,
                format!("{good}&sig={sig}"),
                999,
                Err(UrlRefusal::Malformed),
            ),
        ];
        for (name, path, query, now, want) in cases {
            assert_eq!(signer.check(path, &query, now), want, "{name}");
        }
    }

    #[test]
    fn keys_differ() {
        let a = UrlSigner::derived_from(b"0123456789abcdef0123456789abcdef");
        let b = UrlSigner::derived_from(b"fedcba9876543210fedcba9876543210");
        let url = a.sign(PATH, 1_000);
        assert_eq!(b.check(PATH, query(&url), 0), Err(UrlRefusal::BadSignature));
        let random = UrlSigner::random();
        assert_eq!(
            random.check(PATH, query(&url), 0),
            Err(UrlRefusal::BadSignature)
        );
    }

    #[test]
    fn only_queries_with_sig_are_signed() {
        assert!(is_signed("expires=1&sig=x"));
        assert!(!is_signed("expires=1"));
        assert!(!is_signed("design=x"));
    }
}
