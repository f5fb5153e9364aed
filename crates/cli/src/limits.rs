//! The API's bounds as flags and `NOTESAGA_*` variables, shared by `notesaga api` and
//! `notesaga dev`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Args;
use notesaga_api::Limits;

/// Bounds of the HTTP API.
#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// Largest request body in bytes (413 beyond it).
    #[arg(long, env = "NOTESAGA_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub(crate) body_limit: usize,
    /// Requests per second each user may make, sustained (429 with Retry-After beyond
    /// it); 0 switches the limit off.
    #[arg(long, env = "NOTESAGA_RATE_LIMIT", default_value_t = 1000.0)]
    pub(crate) rate_limit: f64,
    /// Requests a user may make at once above the sustained rate.
    #[arg(long, env = "NOTESAGA_RATE_BURST", default_value_t = 2000)]
    pub(crate) rate_burst: u32,
    /// Longest a request may take before it is answered 503 (`30s`, `500ms`, `2m`; a
    /// bare number is seconds). Must exceed --max-wait.
    #[arg(long, env = "NOTESAGA_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub(crate) request_timeout: Duration,
    /// Largest `limit` of any list: notes, sagas, search (400 beyond it).
    #[arg(long, env = "NOTESAGA_MAX_PAGE_SIZE", default_value_t = 100)]
    pub(crate) max_page_size: i64,
    /// Longest wait of `Prefer: wait=N` on a command and `?min_version=N` on a note.
    #[arg(long, env = "NOTESAGA_MAX_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub(crate) max_wait: Duration,
    /// How long an Idempotency-Key is remembered after its first use.
    #[arg(long, env = "NOTESAGA_IDEMPOTENCY_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub(crate) idempotency_retention: Duration,
    /// Memory, in MiB, the API may hold of users' search vectors between searches (the
    /// least recently searching users' leave first); 0 reads them from the database on
    /// every semantic or hybrid search.
    #[arg(long, env = "NOTESAGA_SEARCH_CACHE_MB", default_value_t = 256)]
    pub(crate) search_cache_mb: usize,
}

impl LimitArgs {
    /// [`Self::search_cache_mb`] in bytes.
    pub(crate) fn search_cache_bytes(&self) -> usize {
        self.search_cache_mb.saturating_mul(1024 * 1024)
    }

    /// The API's [`Limits`], or why these flags cannot work together.
    pub(crate) fn limits(&self) -> Result<Limits> {
        let limits = Limits {
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            request_timeout: self.request_timeout,
            max_page_size: self.max_page_size,
            max_wait: self.max_wait,
            idempotency_retention: self.idempotency_retention,
        };
        limits.check().map_err(|why| {
            anyhow!("{why} (--rate-limit, --rate-burst, --request-timeout, --max-page-size, --max-wait)")
        })?;
        Ok(limits)
    }
}

/// `500ms`, `30s`, `2m`, `24h`, `1d`, or a bare number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 500ms, 30s, 2m or 24h"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {raw:?}; use ms, s, m, h or d"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{raw:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("30", Duration::from_secs(30)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("24h", Duration::from_secs(86_400)),
            ("1d", Duration::from_secs(86_400)),
        ];
        for (raw, expected) in ok {
            assert_eq!(parse_duration(raw), Ok(expected), "{raw}");
        }
        for raw in ["", "s", "10 parsecs", "-1s", "1w"] {
            assert!(parse_duration(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn flags_that_cannot_work_are_refused() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            limits: LimitArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("notesaga").chain(args.iter().copied()))
                .map_err(|err| err.to_string())
                .and_then(|cli| cli.limits.limits().map_err(|err| err.to_string()))
        };
        let defaults = parse(&[]).expect("the defaults work");
        assert_eq!(defaults, Limits::default());
        assert!(parse(&["--max-wait", "30s", "--request-timeout", "20s"]).is_err());
        assert!(parse(&["--max-page-size", "0"]).is_err());
        let custom = parse(&["--rate-limit", "0", "--max-wait", "2s"]).expect("valid");
        assert_eq!(
            (custom.rate_limit, custom.max_wait),
            (0.0, Duration::from_secs(2))
        );
    }
}
