//! Authentication on the command line: the API's key options ([`AuthArgs`], flattened
//! into `notesaga api`) and `notesaga token`, which mints an HS256 token with a secret
//! or with a single node's secret from its data directory.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use notesaga_api::{auth::Claims, AuthConfig};

use crate::dev;

/// How the API checks bearer tokens. Exactly one of the secret and the public key.
#[derive(Debug, Clone, Args)]
pub(crate) struct AuthArgs {
    /// HS256 secret that signs and checks tokens (at least 32 bytes). Audio URLs are
    /// signed with a key derived from it.
    #[arg(long, env = "NOTESAGA_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// RS256 public key that checks tokens of an external identity provider: the PEM
    /// text itself (`-----BEGIN PUBLIC KEY-----…`) or the path of a PEM file.
    #[arg(long, env = "NOTESAGA_JWT_PUBLIC_KEY")]
    pub(crate) jwt_public_key: Option<String>,
    /// JWKS URL of an identity provider (Keycloak, Auth0, Cognito): RS256 and ES256
    /// tokens are checked with the key their `kid` names, the algorithm taken from the key.
    #[arg(long, env = "NOTESAGA_JWT_JWKS_URL")]
    pub(crate) jwt_jwks_url: Option<String>,
    /// Seconds between two fetches of the JWKS at least: a token with an unknown `kid`
    /// refetches it (a rotated key), no more often than this.
    #[arg(
        long,
        env = "NOTESAGA_JWT_JWKS_MIN_REFRESH_SECS",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub(crate) jwt_jwks_min_refresh_secs: u64,
    /// The claim that carries roles, a path of keys separated by dots: `roles`,
    /// `realm_access.roles` (Keycloak), `cognito:groups` (Cognito). `admin` among them
    /// grants /v1/admin/.
    #[arg(long, env = "NOTESAGA_JWT_ROLES_CLAIM", default_value = "roles")]
    pub(crate) jwt_roles_claim: String,
    /// Tokens must carry this `iss`.
    #[arg(long, env = "NOTESAGA_JWT_ISSUER")]
    pub(crate) jwt_issuer: Option<String>,
    /// Tokens must carry this `aud`.
    #[arg(long, env = "NOTESAGA_JWT_AUDIENCE")]
    pub(crate) jwt_audience: Option<String>,
    /// Key that signs audio URLs. Default: derived from the JWT secret; with a public
    /// key, a random key per process (its URLs then work only against the instance that
    /// issued them): set it when several API instances serve one address.
    #[arg(long, env = "NOTESAGA_URL_SIGNING_KEY", hide_env_values = true)]
    pub(crate) url_signing_key: Option<String>,
    /// How long a note's signed `audio_url` stays valid, in seconds.
    #[arg(
        long,
        env = "NOTESAGA_AUDIO_URL_TTL",
        default_value_t = 900,
        value_name = "SECS"
    )]
    pub(crate) audio_url_ttl: u64,
}

/// What an API without a key is told.
const NO_KEY: &str = "the API needs a key to check bearer tokens: set NOTESAGA_JWT_SECRET \
(--jwt-secret; HS256, at least 32 bytes, e.g. `openssl rand -hex 32`) or NOTESAGA_JWT_PUBLIC_KEY \
(--jwt-public-key; RS256, a PEM public key or the path of one) or NOTESAGA_JWT_JWKS_URL \
(--jwt-jwks-url; RS256/ES256 keys of an identity provider)";

impl AuthArgs {
    /// The API's authentication, or what to set when there is no key.
    pub(crate) fn config(&self) -> Result<AuthConfig> {
        let config = match (&self.jwt_secret, &self.jwt_public_key, &self.jwt_jwks_url) {
            (None, None, None) => bail!(NO_KEY),
            (Some(secret), None, None) => AuthConfig::hs256(secret.as_bytes())
                .context("NOTESAGA_JWT_SECRET (--jwt-secret) cannot be used")?,
            (None, Some(key), None) => AuthConfig::rs256(&public_key_pem(key)?)
                .context("NOTESAGA_JWT_PUBLIC_KEY (--jwt-public-key) cannot be used")?,
            (None, None, Some(url)) => {
                AuthConfig::jwks(url, Duration::from_secs(self.jwt_jwks_min_refresh_secs))
                    .context("NOTESAGA_JWT_JWKS_URL (--jwt-jwks-url) cannot be used")?
            }
            _ => bail!(
                "set one of NOTESAGA_JWT_SECRET (--jwt-secret), NOTESAGA_JWT_PUBLIC_KEY \
                 (--jwt-public-key) and NOTESAGA_JWT_JWKS_URL (--jwt-jwks-url), not several: \
                 the key decides the algorithms accepted"
            ),
        };
        let config = config.roles_claim(&self.jwt_roles_claim);
        let mut config = match &self.url_signing_key {
            Some(key) if key.len() < notesaga_api::auth::MIN_SECRET_BYTES => bail!(
                "NOTESAGA_URL_SIGNING_KEY (--url-signing-key) needs at least {} bytes",
                notesaga_api::auth::MIN_SECRET_BYTES
            ),
            Some(key) => config.url_signing_key(key.as_bytes()),
            None => {
                if self.jwt_public_key.is_some() || self.jwt_jwks_url.is_some() {
                    tracing::warn!(
                        "no NOTESAGA_URL_SIGNING_KEY: audio URLs are signed with a key of this \
                         process and work only against it"
                    );
                }
                config
            }
        };
        if let Some(issuer) = &self.jwt_issuer {
            config = config.issuer(issuer);
        }
        if let Some(audience) = &self.jwt_audience {
            config = config.audience(audience);
        }
        config.audio_url_ttl = Duration::from_secs(self.audio_url_ttl.max(1));
        Ok(config)
    }
}

/// The PEM text itself, or the contents of the file it names.
fn public_key_pem(value: &str) -> Result<Vec<u8>> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(value).with_context(|| {
        format!("NOTESAGA_JWT_PUBLIC_KEY is neither PEM text nor a readable file: {value}")
    })
}

/// `notesaga token`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TokenArgs {
    /// The user the token speaks for (`sub`): it owns the notes it creates.
    #[arg(long)]
    pub(crate) sub: String,
    /// Grant the admin role (`/v1/admin/*`).
    #[arg(long)]
    pub(crate) admin: bool,
    /// How long the token is valid: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub(crate) ttl: Duration,
    /// Data directory of a `notesaga dev` node: sign with its secret (it wins over
    /// --jwt-secret).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The API's HS256 secret.
    #[arg(long, env = "NOTESAGA_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// `iss` of the token (the API's NOTESAGA_JWT_ISSUER, if it checks one).
    #[arg(long, env = "NOTESAGA_JWT_ISSUER")]
    pub(crate) jwt_issuer: Option<String>,
    /// `aud` of the token (the API's NOTESAGA_JWT_AUDIENCE, if it checks one).
    #[arg(long, env = "NOTESAGA_JWT_AUDIENCE")]
    pub(crate) jwt_audience: Option<String>,
}

/// Prints a token (and nothing else) on stdout.
pub(crate) fn run(args: TokenArgs) -> Result<()> {
    println!("{}", mint(&args)?);
    Ok(())
}

fn mint(args: &TokenArgs) -> Result<String> {
    if args.sub.trim().is_empty() {
        bail!("--sub must name a user");
    }
    let secret = match (&args.data_dir, &args.jwt_secret) {
        (Some(dir), _) => dev::secret(dir)?,
        (None, Some(secret)) => secret.clone(),
        (None, None) => bail!(
            "no secret to sign with: pass --data-dir DIR of a `notesaga dev` node, or set \
             NOTESAGA_JWT_SECRET (--jwt-secret) to the API's HS256 secret (an RS256 API takes \
             tokens from its identity provider, not from notesaga)"
        ),
    };
    let mut claims = Claims::new(&args.sub, args.ttl)
        .for_api(args.jwt_issuer.as_deref(), args.jwt_audience.as_deref());
    if args.admin {
        claims = claims.admin();
    }
    claims
        .mint_hs256(secret.as_bytes())
        .context("cannot mint a token")
}

/// `90`, `90s`, `15m`, `1h`, `7d`.
fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && unit_secs > 0 => Ok(Duration::from_secs(n.saturating_mul(unit_secs))),
        _ => Err(format!(
            "{raw:?} is not a lifetime: a positive number of seconds, or with s, m, h or d (e.g. 1h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        for (raw, want) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("15m", Some(900)),
            ("1h", Some(3600)),
            ("7d", Some(604_800)),
            ("0", None),
            ("1w", None),
            ("h", None),
            ("-1h", None),
            ("", None),
        ] {
            assert_eq!(parse_ttl(raw).ok().map(|d| d.as_secs()), want, "{raw:?}");
        }
    }

    fn auth(secret: Option<&str>, public_key: Option<&str>) -> AuthArgs {
        AuthArgs {
            jwt_secret: secret.map(str::to_owned),
            jwt_public_key: public_key.map(str::to_owned),
            jwt_jwks_url: None,
            jwt_jwks_min_refresh_secs: 30,
            jwt_roles_claim: "roles".into(),
            jwt_issuer: None,
            jwt_audience: None,
            url_signing_key: None,
            audio_url_ttl: 900,
        }
    }

    #[test]
    fn the_api_needs_exactly_one_good_key() {
        let long = "0123456789abcdef0123456789abcdef";
        let error = |args: AuthArgs| format!("{:#}", args.config().expect_err("refused"));
        assert!(auth(Some(long), None).config().is_ok());
        assert!(error(auth(None, None)).contains("NOTESAGA_JWT_SECRET"));
        assert!(error(auth(Some(long), Some("x"))).contains("not several"));
        let jwks = AuthArgs {
            jwt_jwks_url: Some("http://127.0.0.1:1/jwks.json".into()),
            ..auth(None, None)
        };
        assert!(jwks.config().is_ok(), "a JWKS URL alone is a key source");
        let both = AuthArgs {
            jwt_jwks_url: Some("http://127.0.0.1:1/jwks.json".into()),
            ..auth(Some(long), None)
        };
        assert!(error(both).contains("not several"));
        assert!(error(auth(Some("short"), None)).contains("at least 32"));
        assert!(error(auth(None, Some("/nonexistent/key.pem"))).contains("neither PEM text"));
        assert!(error(auth(None, Some("-----BEGIN PUBLIC KEY-----\nxx\n"))).contains("PEM"));
    }

    #[test]
    fn token_needs_a_secret_and_a_user() {
        let args = |sub: &str, secret: Option<&str>| TokenArgs {
            sub: sub.into(),
            admin: false,
            ttl: Duration::from_secs(60),
            data_dir: None,
            jwt_secret: secret.map(str::to_owned),
            jwt_issuer: None,
            jwt_audience: None,
        };
        let long = Some("0123456789abcdef0123456789abcdef");
        assert_eq!(
            mint(&args("ann", long)).expect("minted").split('.').count(),
            3
        );
        assert!(
            format!("{:#}", mint(&args("ann", None)).expect_err("no secret"))
                .contains("--data-dir")
        );
        assert!(mint(&args(" ", long)).is_err());
        let missing = TokenArgs {
            data_dir: Some(PathBuf::from("/nonexistent")),
            ..args("ann", long)
        };
        assert!(format!("{:#}", mint(&missing).expect_err("no node")).contains("notesaga dev"));
    }
}
