//! `notesaga check`: verifies, from the outside, that the log and the stores agree on
//! what is published (issue 4, item 9).
//!
//! It reads `saga.note-pipeline` and `notes.events` from their first records, the
//! embedding store and the audio store ([`read`]), waits until no saga is at work (up
//! to `--wait`), then checks the invariants ([`evaluate`], pure and table-tested) and
//! prints a report. Exit 0: clean; 1: a violation; 2: something could not be read.

mod evaluate;
mod read;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use self::{
    evaluate::{evaluate, Report},
    read::{Endpoints, ReadStats, Sources},
};
use crate::{args::CheckArgs, dev::NodeFile};

/// The single node's defaults (`notesaga dev`).
const DEFAULT_KAFKA_ADDR: &str = "127.0.0.1:9092";
const DEFAULT_REGISTRY_ADDR: &str = "127.0.0.1:8081";

/// How long to pause between reads while waiting for the sagas to settle.
const POLL: Duration = Duration::from_secs(1);

/// Runs the check; the exit code says how it went.
pub(crate) async fn run(args: CheckArgs, shutdown: CancellationToken) -> ExitCode {
    let json = args.output == crate::dlq::Output::Json;
    match check(&args, shutdown).await {
        Ok((report, stats)) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(err) => {
                        eprintln!("notesaga check: cannot render the report: {err}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{report}");
            }
            if stats.undecodable > 0 {
                eprintln!(
                    "notesaga check: {} records could not be decoded and were skipped (see the warnings above); the report may be wrong",
                    stats.undecodable
                );
                return ExitCode::from(2);
            }
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("notesaga check: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Where to read from and what told us: flags (or their variables) first, then the
/// running single node's `node.json`, then the single node's defaults.
fn endpoints(args: &CheckArgs, node: Option<&NodeFile>) -> Result<(Endpoints, &'static str)> {
    let (fallback_kafka, fallback_registry, fallback) = match node {
        Some(node) => (
            node.kafka_addr.as_str(),
            node.registry_addr.as_str(),
            "node.json",
        ),
        None => (DEFAULT_KAFKA_ADDR, DEFAULT_REGISTRY_ADDR, "defaults"),
    };
    let origin = match (&args.kafka_addr, &args.registry_addr, node) {
        (Some(_), Some(_), _) => "flags",
        (None, None, _) => fallback,
        (_, _, Some(_)) => "flags and node.json",
        (_, _, None) => "flags and defaults",
    };
    let kafka_addr = args
        .kafka_addr
        .clone()
        .unwrap_or_else(|| fallback_kafka.to_owned());
    let registry = args.registry_addr.as_deref().unwrap_or(fallback_registry);
    let endpoints = Endpoints {
        kafka_addr,
        // The registry's credentials: the flag's, else the single node's own.
        registry_url: notesaga_log::registry_url_with_user_info(
            &http_url(registry),
            match &args.registry_user_info {
                Some(info) => Some(info.clone()),
                None => crate::registry_auth::node_user_info(&args.storage.data_dir)?,
            }
            .as_deref(),
        ),
        embedding_url: embedding_url(args)?,
        audio_dir: args.storage.audio_dir(),
        audio: args.audio.blobs(&args.storage.data_dir)?,
    };
    Ok((endpoints, origin))
}

/// `http://HOST:PORT` for an address given without a scheme.
fn http_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The embedding store's URL, as the embedding role finds it. Its SQLite file must exist
/// already: the check creates nothing, and a missing file means a wrong `--data-dir`.
fn embedding_url(args: &CheckArgs) -> Result<String> {
    let storage = &args.storage;
    let shared_postgres = storage
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .is_some_and(|url| url.starts_with("postgres"));
    if args.embedding_database_url.is_none() && !shared_postgres {
        let file = storage.data_dir.join("embedding.db");
        if !file.is_file() {
            bail!(
                "there is no embedding store at {}: pass the node's data directory (--data-dir / NOTESAGA_DATA_DIR) or the store's database (--embedding-database-url, --database-url)",
                file.display()
            );
        }
    }
    storage.embedding_url(&args.embedding_database_url)
}

/// A URL without its password, for printing.
pub(crate) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn check(args: &CheckArgs, shutdown: CancellationToken) -> Result<(Report, ReadStats)> {
    let node = NodeFile::read(&args.storage.data_dir)?;
    let (endpoints, origin) = endpoints(args, node.as_ref())?;
    // With `--output json` stdout holds the report only.
    let say = |line: String| {
        if args.output == crate::dlq::Output::Json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "checking   {} (registry {}; addresses from {origin})",
        endpoints.kafka_addr,
        notesaga_log::redact_registry_url(&endpoints.registry_url)
    ));
    say(format!("embeddings {}", redacted(&endpoints.embedding_url)));
    match &endpoints.audio {
        notesaga_blob::Blobs::Fs(_) => {
            say(format!("audio      {}", display_dir(&endpoints.audio_dir)));
        }
        store => say(format!("audio      {}", store.describe())),
    }
    let sources = Sources::open(&endpoints).await?;

    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let (snapshot, stats, stable) = loop {
        let before = sources.watermarks().await?;
        let (snapshot, stats) = sources.snapshot(&before).await?;
        let stable = sources.watermarks().await? == before;
        let unsettled = snapshot.unsettled();
        let now = Instant::now();
        if (stable && unsettled == 0) || now >= deadline || shutdown.is_cancelled() {
            break (snapshot, stats, stable);
        }
        let moving = if stable {
            String::new()
        } else {
            ", the log moved while it was read".to_owned()
        };
        eprintln!(
            "waiting: {unsettled} sagas at work or note events not taken up yet{moving} ({} s left)",
            deadline.saturating_duration_since(now).as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(POLL.min(deadline.saturating_duration_since(now))) => {}
            () = shutdown.cancelled() => {}
        }
    };
    if stats.duplicates > 0 {
        say(format!(
            "duplicates {} records dropped (an event id read before)",
            stats.duplicates
        ));
    }
    for file in &stats.foreign_files {
        say(format!(
            "ignored    audio file {file} (not a narration key)"
        ));
    }
    if !stable {
        say(
            "note       the log moved while it was read: a violation below may be a change in progress; run the check again".to_owned(),
        );
    }
    Ok((evaluate(&snapshot), stats))
}

fn display_dir(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| PathBuf::from(dir))
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::args::{Cli, Command, Storage};

    /// Arguments as given on the command line, without the environment's variables (a
    /// CI's NOTESAGA_KAFKA_ADDR or DATABASE_URL must not change the outcome).
    fn args(data_dir: &Path, kafka: Option<&str>, registry: Option<&str>) -> CheckArgs {
        CheckArgs {
            storage: Storage {
                data_dir: data_dir.to_owned(),
                database_url: Some("sqlite://unused.db".into()),
            },
            audio: crate::args::AudioStoreArgs {
                audio_store: None,
                s3_endpoint: None,
                s3_region: "us-east-1".into(),
                s3_access_key_id: None,
                s3_secret_access_key: None,
            },
            kafka_addr: kafka.map(Into::into),
            registry_addr: registry.map(Into::into),
            registry_user_info: None,
            embedding_database_url: None,
            wait: 30,
            output: crate::dlq::Output::Table,
        }
    }

    fn node() -> NodeFile {
        NodeFile {
            http_addr: "127.0.0.1:18080".into(),
            kafka_addr: "127.0.0.1:19092".into(),
            registry_addr: "127.0.0.1:18081".into(),
            pid: Some(1),
        }
    }

    #[test]
    fn check_addresses_come_from_flags_then_node_json_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("embedding.db"), b"").unwrap();

        let only_dir = args(dir.path(), None, None);
        let (e, origin) = endpoints(&only_dir, Some(&node())).unwrap();
        assert_eq!(
            (e.kafka_addr.as_str(), e.registry_url.as_str(), origin),
            ("127.0.0.1:19092", "http://127.0.0.1:18081", "node.json")
        );
        let (e, origin) = endpoints(&only_dir, None).unwrap();
        assert_eq!(
            (e.kafka_addr.as_str(), e.registry_url.as_str(), origin),
            ("127.0.0.1:9092", "http://127.0.0.1:8081", "defaults")
        );
        assert_eq!(e.audio_dir, dir.path().join("audio"));
        assert!(
            e.embedding_url.starts_with("sqlite://") && e.embedding_url.contains("embedding.db"),
            "{}",
            e.embedding_url
        );

        let one_flag = args(dir.path(), Some("k:1"), None);
        let (e, origin) = endpoints(&one_flag, Some(&node())).unwrap();
        assert_eq!(
            (e.kafka_addr.as_str(), e.registry_url.as_str(), origin),
            ("k:1", "http://127.0.0.1:18081", "flags and node.json")
        );
        let both = args(dir.path(), Some("k:1"), Some("https://registry.example/"));
        let (e, origin) = endpoints(&both, Some(&node())).unwrap();
        assert_eq!(
            (e.kafka_addr.as_str(), e.registry_url.as_str(), origin),
            ("k:1", "https://registry.example/", "flags")
        );
    }

    #[test]
    fn check_refuses_a_data_dir_without_an_embedding_store() {
        let dir = tempfile::tempdir().unwrap();
        let err = endpoints(&args(dir.path(), None, None), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no embedding store at"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the check created nothing"
        );
        let mut explicit = args(dir.path(), None, None);
        explicit.embedding_database_url = Some("postgres://u:secret@db/notesaga".into());
        let (e, _) = endpoints(&explicit, None).unwrap();
        assert_eq!(redacted(&e.embedding_url), "postgres://u:***@db/notesaga");
    }

    #[test]
    fn check_command_line() {
        let parsed = Cli::try_parse_from([
            "notesaga",
            "check",
            "--data-dir",
            "/tmp/x",
            "--registry-url",
            "http://r:1",
            "--wait",
            "0",
        ])
        .expect("parses");
        let Command::Check(check) = parsed.command else {
            panic!("not check");
        };
        assert_eq!(check.wait, 0);
        assert_eq!(check.registry_addr.as_deref(), Some("http://r:1"));
        assert_eq!(check.storage.data_dir, PathBuf::from("/tmp/x"));
    }
}
