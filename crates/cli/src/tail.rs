//! `notesaga tail TOPIC`: a topic's records as JSON lines (one object per record:
//! topic, partition, offset, timestamp, key, headers, schema id and, with `--decode`, the
//! record name and its value decoded through the registry), for `jq` and DuckDB.
//!
//! It stops at the high watermarks it read at the start, unless `--follow`.

use std::{io::Write as _, process::ExitCode};

use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::logread::{parse_partition_offset, parse_time, LogArgs, Start};

/// `notesaga tail`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TailArgs {
    /// The topic (e.g. notes.events, notesaga.embedding.dlq).
    pub(crate) topic: String,
    /// Start at each partition's first record (the default).
    #[arg(long, conflicts_with_all = ["from_offset", "from_time"])]
    pub(crate) from_beginning: bool,
    /// Read one partition from an offset: PARTITION:OFFSET.
    #[arg(long, value_name = "PARTITION:OFFSET", value_parser = parse_partition_offset, conflicts_with = "from_time")]
    pub(crate) from_offset: Option<(i32, i64)>,
    /// Start at each partition's first record at or after T (RFC 3339, or milliseconds
    /// since the epoch).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub(crate) from_time: Option<i64>,
    /// Keep reading new records (until Ctrl-C) instead of stopping at the end.
    #[arg(long)]
    pub(crate) follow: bool,
    /// Only the records of this note (the key).
    #[arg(long, value_name = "NOTE_ID")]
    pub(crate) key: Option<String>,
    /// Decode the values through the schema registry (else they are printed in base64).
    #[arg(long)]
    pub(crate) decode: bool,
    #[command(flatten)]
    pub(crate) log: LogArgs,
}

impl TailArgs {
    fn start(&self) -> Start {
        match (self.from_offset, self.from_time) {
            (Some((partition, offset)), _) => Start::Offset { partition, offset },
            (None, Some(millis)) => Start::Time(millis),
            (None, None) => Start::Beginning,
        }
    }
}

/// Runs `tail`; exit 2 when the log cannot be read.
pub(crate) async fn run(args: TailArgs, shutdown: CancellationToken) -> ExitCode {
    match tail(&args, &shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("notesaga tail: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn tail(args: &TailArgs, shutdown: &CancellationToken) -> Result<()> {
    let log = args.log.open()?;
    // Decoding is async (the registry), the scan's sink is not: records go through a
    // channel to be decoded and printed in the order they were read.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let key = args.key.clone();
    let scan = {
        let log = log.clone();
        let topics = vec![args.topic.clone()];
        let (start, follow, shutdown) = (args.start(), args.follow, shutdown.clone());
        tokio::spawn(async move {
            log.scan(&topics, start, follow, &shutdown, |record| {
                if key.is_none() || record.key_text() == key {
                    let _ = tx.send(record);
                }
                Ok(())
            })
            .await
        })
    };
    let mut stdout = std::io::stdout();
    while let Some(record) = rx.recv().await {
        let decoded = if args.decode {
            log.decode(&record).await
        } else {
            None
        };
        let line = record.to_json(decoded);
        if writeln!(stdout, "{line}").is_err() {
            // The reader went away (`| head`): stop quietly.
            return Ok(());
        }
    }
    scan.await?
}
