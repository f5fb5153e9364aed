//! `notesaga dlq list|show|redrive|discard|audit`: the dead letters of every consumer
//! group, read from Kafka directly (as `check` does), sent back to the group that gave
//! up on them, or marked as dealt with.
//!
//! - A dead letter is a record of `<group>.dlq` (one partition, so its offset names it),
//!   with the original key, value and headers and the `dlq.*` headers saying why.
//! - `redrive` appends the chosen dead letters to `<group>.redrive`, which only that
//!   group reads ([`notesaga_log::redrive`]): never to the topic they came from, so an
//!   event topic (a source of truth, read by several groups and by analysts) gets no
//!   copy and no other group sees the record. Rate-limited, `--dry-run` first, a progress
//!   bar on a terminal. A redriven record that fails again is dead-lettered once more
//!   (it shows up here again, from `<group>.redrive`); nothing redrives it by itself.
//! - Every `redrive` and `discard` appends one JSON entry to `notesaga.dlq-audit`
//!   (operator, time, records); `dlq audit` lists them and `dlq list` shows each dead
//!   letter's status from them. The audit lives on the log, not in the API's database:
//!   the command reads Kafka directly and needs nothing else, and the record of what was
//!   done to the log sits beside the log it describes (kept forever, like the DLQs).

use std::{collections::BTreeMap, io::Write as _, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use notesaga_events::{
    headers as h,
    topics::{dlq_topic, is_redrive_topic, redrive_topic, DLQ_AUDIT, GROUPS, REDRIVE_GROUPS},
};
use notesaga_log::{
    redrive::{redrive_headers, RedriveOrigin},
    Publisher,
};
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::logread::{parse_time, Log, LogArgs, RawRecord, Start};

/// `notesaga dlq`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(subcommand)]
    pub(crate) command: DlqCommand,
}

/// Table for people, JSON for scripts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// Which dead letters.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Filter {
    /// Only the dead letters whose error contains this text.
    #[arg(long)]
    pub(crate) error: Option<String>,
    /// Only the dead letters of this note (the key).
    #[arg(long, value_name = "NOTE_ID")]
    pub(crate) note: Option<Uuid>,
    /// Only those dead-lettered at or after T (RFC 3339 or epoch milliseconds).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub(crate) since: Option<i64>,
    /// Only those dead-lettered before T.
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub(crate) until: Option<i64>,
    /// Only those in this state.
    #[arg(long, value_enum)]
    pub(crate) status: Option<Status>,
}

/// What is chosen for `redrive` or `discard`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Selection {
    /// The consumer group (e.g. notesaga.embedding).
    pub(crate) group: String,
    /// The dead letters' offsets in `<group>.dlq` (repeatable, comma-separated).
    #[arg(
        long = "offset",
        value_delimiter = ',',
        required_unless_present = "all"
    )]
    pub(crate) offsets: Vec<i64>,
    /// Every dead letter of the group the filters let through.
    #[arg(long, conflicts_with = "offsets")]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) filter: Filter,
    /// Act on dead letters already redriven or discarded too.
    #[arg(long)]
    pub(crate) force: bool,
    /// Say what would be done, and do nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Who does it, for the audit; default: the OS user ($USER).
    #[arg(long)]
    pub(crate) operator: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum DlqCommand {
    /// Dead letters of every group (or one): group, offset, time, status, note, origin
    /// topic/partition/offset, type and error.
    List {
        /// Only this consumer group.
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// table or json.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// One dead letter: its headers, status and value decoded through the registry.
    Show {
        /// The consumer group.
        group: String,
        /// Its offset in `<group>.dlq`.
        offset: i64,
    },
    /// Send dead letters back to the group that gave up on them (through
    /// `<group>.redrive`, which only that group reads).
    Redrive {
        #[command(flatten)]
        selection: Selection,
        /// Records per second at most.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
    },
    /// Mark dead letters as dealt with (nothing is deleted; `list --status pending`
    /// leaves them out).
    Discard {
        #[command(flatten)]
        selection: Selection,
        /// Why, for the audit.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The audit: every redrive and discard, oldest first.
    Audit {
        /// Only this consumer group.
        #[arg(long)]
        group: Option<String>,
        /// table or json.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Nobody acted on it yet.
    Pending,
    /// Sent back to its group.
    Redriven,
    /// Marked as dealt with.
    Discarded,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Redrive,
    Discard,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DeadLetter {
    pub(crate) group: String,
    /// Offset in `<group>.dlq`.
    pub(crate) dlq_offset: i64,
    /// When it was dead-lettered (the DLQ record's timestamp).
    pub(crate) time: Option<String>,
    #[serde(skip)]
    pub(crate) timestamp: Option<i64>,
    pub(crate) status: Status,
    pub(crate) note_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) error: Option<String>,
    /// The topic the record was first read from (through a redrive: the first one).
    pub(crate) topic: Option<String>,
    pub(crate) partition: Option<i32>,
    pub(crate) offset: Option<i64>,
    /// Whether it failed again after a redrive.
    pub(crate) redriven_before: bool,
    #[serde(skip)]
    pub(crate) raw: RawRecord,
}

impl DeadLetter {
    fn from_record(group: &str, raw: RawRecord) -> Self {
        // A redriven record that failed again: its first origin is in `redrive.*`.
        let via_redrive = raw.header(h::DLQ_TOPIC).is_some_and(is_redrive_topic);
        let (topic_h, partition_h, offset_h) = if via_redrive {
            (h::REDRIVE_TOPIC, h::REDRIVE_PARTITION, h::REDRIVE_OFFSET)
        } else {
            (h::DLQ_TOPIC, h::DLQ_PARTITION, h::DLQ_OFFSET)
        };
        Self {
            group: group.to_owned(),
            dlq_offset: raw.offset,
            time: raw
                .timestamp
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            timestamp: raw.timestamp,
            status: Status::Pending,
            note_id: raw.key_text(),
            event_type: raw.header(h::EVENT_TYPE).map(str::to_owned),
            error: raw.header(h::DLQ_ERROR).map(str::to_owned),
            topic: raw.header(topic_h).map(str::to_owned),
            partition: raw.header(partition_h).and_then(|p| p.parse().ok()),
            offset: raw.header(offset_h).and_then(|o| o.parse().ok()),
            redriven_before: via_redrive,
            raw,
        }
    }

    fn matches(&self, filter: &Filter) -> bool {
        let error_ok = filter.error.as_ref().is_none_or(|text| {
            self.error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(&text.to_lowercase()))
        });
        let note_ok = filter.note.is_none_or(|note| {
            self.note_id.as_deref() == Some(note.hyphenated().to_string().as_str())
        });
        let since_ok = filter
            .since
            .is_none_or(|since| self.timestamp.is_some_and(|t| t >= since));
        let until_ok = filter
            .until
            .is_none_or(|until| self.timestamp.is_some_and(|t| t < until));
        let status_ok = filter.status.is_none_or(|s| s == self.status);
        error_ok && note_ok && since_ok && until_ok && status_ok
    }
}

/// One record of an audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuditRecord {
    pub(crate) dlq_offset: i64,
    pub(crate) note_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) topic: Option<String>,
    pub(crate) partition: Option<i32>,
    pub(crate) offset: Option<i64>,
    /// Where a redriven copy went: its offset in `<group>.redrive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) redrive_offset: Option<i64>,
}

/// One operator action, as appended to `notesaga.dlq-audit` (JSON, keyed by group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuditEntry {
    pub(crate) audit_id: String,
    pub(crate) action: Action,
    pub(crate) group: String,
    pub(crate) operator: String,
    /// RFC 3339 UTC.
    pub(crate) at: String,
    pub(crate) records: Vec<AuditRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// For a redrive: the topic the records went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
}

/// The status of every dead letter an audit entry names: the last action wins.
fn statuses(entries: &[AuditEntry]) -> BTreeMap<(String, i64), Status> {
    let mut status = BTreeMap::new();
    for entry in entries {
        let value = match entry.action {
            Action::Redrive => Status::Redriven,
            Action::Discard => Status::Discarded,
        };
        for record in &entry.records {
            status.insert((entry.group.clone(), record.dlq_offset), value);
        }
    }
    status
}

/// The operator's name: `--operator`, else the OS user.
fn operator(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The dead letters `selection` chooses among `letters` (those of its group), and the
/// ones it names that were already dealt with (left out unless `--force`). Unknown
/// offsets are an error: a typo must not pass as "nothing to do".
fn choose<'a>(
    letters: &'a [DeadLetter],
    selection: &Selection,
) -> Result<(Vec<&'a DeadLetter>, Vec<&'a DeadLetter>)> {
    let mut chosen = Vec::new();
    if selection.all {
        chosen.extend(letters.iter().filter(|l| l.matches(&selection.filter)));
    } else {
        for offset in &selection.offsets {
            match letters.iter().find(|l| l.dlq_offset == *offset) {
                Some(letter) => chosen.push(letter),
                None => bail!(
                    "{} has no dead letter at offset {offset}",
                    dlq_topic(&selection.group)
                ),
            }
        }
    }
    let (done, todo): (Vec<_>, Vec<_>) = chosen
        .into_iter()
        .partition(|l| l.status != Status::Pending && !selection.force);
    Ok((todo, done))
}

/// Runs `dlq`; exit 1 when the command was refused (a wrong group or offset), 2 when the
/// log cannot be read or written.
pub(crate) async fn run(args: DlqArgs, shutdown: CancellationToken) -> ExitCode {
    let result = match &args.command {
        DlqCommand::List {
            group,
            filter,
            output,
        } => list(&args.log, group.as_deref(), filter, *output, &shutdown).await,
        DlqCommand::Show { group, offset } => show(&args.log, group, *offset, &shutdown).await,
        DlqCommand::Redrive { selection, rate } => {
            redrive(&args.log, selection, *rate, &shutdown).await
        }
        DlqCommand::Discard { selection, reason } => {
            discard(&args.log, selection, reason.clone(), &shutdown).await
        }
        DlqCommand::Audit { group, output } => {
            audit(&args.log, group.as_deref(), *output, &shutdown).await
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("notesaga dlq: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Every audit entry, oldest first (none when the topic does not exist yet).
async fn read_audit(log: &Log, shutdown: &CancellationToken) -> Result<Vec<AuditEntry>> {
    if !log.topics().await?.iter().any(|t| t == DLQ_AUDIT) {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    log.scan(
        &[DLQ_AUDIT.to_owned()],
        Start::Beginning,
        false,
        shutdown,
        |record| {
            match record
                .value
                .as_deref()
                .map(serde_json::from_slice::<AuditEntry>)
            {
                Some(Ok(entry)) => entries.push(entry),
                _ => tracing::warn!(offset = record.offset, "skipping an unreadable audit entry"),
            }
            Ok(())
        },
    )
    .await?;
    Ok(entries)
}

/// The dead letters of `groups` with their status.
async fn read_letters(
    log: &Log,
    groups: &[String],
    shutdown: &CancellationToken,
) -> Result<Vec<DeadLetter>> {
    let existing = log.topics().await.with_context(|| {
        format!(
            "cannot reach the Kafka broker at {} (--kafka-addr / NOTESAGA_KAFKA_ADDR)",
            log.kafka_addr
        )
    })?;
    let status = statuses(&read_audit(log, shutdown).await?);
    let mut letters = Vec::new();
    for group in groups {
        let topic = dlq_topic(group);
        if !existing.contains(&topic) {
            continue;
        }
        log.scan(&[topic], Start::Beginning, false, shutdown, |record| {
            let mut letter = DeadLetter::from_record(group, record);
            if let Some(s) = status.get(&(group.clone(), letter.dlq_offset)) {
                letter.status = *s;
            }
            letters.push(letter);
            Ok(())
        })
        .await?;
    }
    Ok(letters)
}

fn groups_of(group: Option<&str>) -> Vec<String> {
    match group {
        Some(group) => vec![group.to_owned()],
        None => GROUPS.iter().map(|g| (*g).to_owned()).collect(),
    }
}

async fn list(
    args: &LogArgs,
    group: Option<&str>,
    filter: &Filter,
    output: Output,
    shutdown: &CancellationToken,
) -> Result<ExitCode> {
    let log = args.open()?;
    let letters: Vec<DeadLetter> = read_letters(&log, &groups_of(group), shutdown)
        .await?
        .into_iter()
        .filter(|l| l.matches(filter))
        .collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&letters)?),
        Output::Table => print!("{}", table(&letters)),
    }
    Ok(ExitCode::SUCCESS)
}

fn table(letters: &[DeadLetter]) -> String {
    let mut out = format!(
        "{:<26} {:>6}  {:<24} {:<10} {:<36} {:<28} {:<22} ERROR\n",
        "GROUP", "OFFSET", "TIME", "STATUS", "NOTE", "ORIGIN", "TYPE"
    );
    for l in letters {
        let origin = format!(
            "{}/{}/{}{}",
            l.topic.as_deref().unwrap_or("?"),
            l.partition.map_or("?".into(), |p| p.to_string()),
            l.offset.map_or("?".into(), |o| o.to_string()),
            if l.redriven_before { " (redriven)" } else { "" }
        );
        let status = match l.status {
            Status::Pending => "pending",
            Status::Redriven => "redriven",
            Status::Discarded => "discarded",
        };
        out.push_str(&format!(
            "{:<26} {:>6}  {:<24} {:<10} {:<36} {:<28} {:<22} {}\n",
            l.group,
            l.dlq_offset,
            l.time.as_deref().unwrap_or("-"),
            status,
            l.note_id.as_deref().unwrap_or("-"),
            origin,
            l.event_type.as_deref().unwrap_or("-"),
            l.error.as_deref().unwrap_or("-"),
        ));
    }
    if letters.is_empty() {
        out.push_str("(no dead letters)\n");
    }
    out
}

async fn show(
    args: &LogArgs,
    group: &str,
    offset: i64,
    shutdown: &CancellationToken,
) -> Result<ExitCode> {
    let log = args.open()?;
    let letters = read_letters(&log, &[group.to_owned()], shutdown).await?;
    let Some(letter) = letters.iter().find(|l| l.dlq_offset == offset) else {
        eprintln!(
            "notesaga dlq: {} has no dead letter at offset {offset}",
            dlq_topic(group)
        );
        return Ok(ExitCode::from(1));
    };
    let decoded = log.decode(&letter.raw).await;
    let mut out = letter.raw.to_json(decoded);
    out["group"] = serde_json::json!(letter.group);
    out["status"] = serde_json::to_value(letter.status)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The audit record of one dead letter.
fn audit_record(letter: &DeadLetter, redrive_offset: Option<i64>) -> AuditRecord {
    AuditRecord {
        dlq_offset: letter.dlq_offset,
        note_id: letter.note_id.clone(),
        event_type: letter.event_type.clone(),
        topic: letter.topic.clone(),
        partition: letter.partition,
        offset: letter.offset,
        redrive_offset,
    }
}

/// The dead letters a redrive or discard acts on, after saying what it will skip.
async fn prepare(
    log: &Log,
    selection: &Selection,
    verb: &str,
    shutdown: &CancellationToken,
) -> Result<Option<Vec<DeadLetter>>> {
    let letters = read_letters(log, std::slice::from_ref(&selection.group), shutdown).await?;
    let (todo, done) = match choose(&letters, selection) {
        Ok(chosen) => chosen,
        Err(err) => {
            eprintln!("notesaga dlq: {err}");
            return Ok(None);
        }
    };
    for letter in &done {
        eprintln!(
            "skipping offset {}: already {:?} (--force to {verb} it again)",
            letter.dlq_offset, letter.status
        );
    }
    Ok(Some(todo.into_iter().cloned().collect()))
}

async fn append_audit(log: &Log, entry: &AuditEntry) -> Result<()> {
    let publisher = Publisher::new(&log.kafka, log.codec.clone())?;
    let value = serde_json::to_vec(entry)?;
    let headers = OwnedHeaders::new().insert(Header {
        key: "action",
        value: Some(match entry.action {
            Action::Redrive => "redrive",
            Action::Discard => "discard",
        }),
    });
    publisher
        .send_raw(
            DLQ_AUDIT,
            Some(entry.group.as_bytes()),
            Some(&value),
            headers,
        )
        .await
        .context("cannot append to the audit topic notesaga.dlq-audit")?;
    Ok(())
}

async fn redrive(
    args: &LogArgs,
    selection: &Selection,
    rate: f64,
    shutdown: &CancellationToken,
) -> Result<ExitCode> {
    let group = selection.group.as_str();
    if !REDRIVE_GROUPS.contains(&group) {
        eprintln!(
            "notesaga dlq: {group} reads no redrive topic (groups that do: {}); the projector's dead letters are records it could not decode: rebuild the projection (`notesaga replay`) once the cause is fixed",
            REDRIVE_GROUPS.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    if !(rate > 0.0 && rate.is_finite()) {
        eprintln!("notesaga dlq: --rate must be a positive number of records per second");
        return Ok(ExitCode::from(1));
    }
    let log = args.open()?;
    let Some(todo) = prepare(&log, selection, "redrive", shutdown).await? else {
        return Ok(ExitCode::from(1));
    };
    let target = redrive_topic(group);
    if selection.dry_run {
        for letter in &todo {
            println!(
                "would redrive {group} offset {} ({} of note {}) to {target}",
                letter.dlq_offset,
                letter.event_type.as_deref().unwrap_or("record"),
                letter.note_id.as_deref().unwrap_or("-"),
            );
        }
        println!(
            "dry run: {} dead letters would be redriven to {target}",
            todo.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if todo.is_empty() {
        println!("nothing to redrive");
        return Ok(ExitCode::SUCCESS);
    }
    let publisher = Publisher::new(&log.kafka, log.codec.clone())?;
    let audit_id = Uuid::new_v4().to_string();
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("redrive [{bar:30}] {pos}/{len} · {per_sec} · ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut sent = Vec::new();
    let mut failure = None;
    for letter in &todo {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => { failure = Some("interrupted".to_owned()); break; }
        }
        let origin = RedriveOrigin {
            topic: letter.topic.clone().unwrap_or_default(),
            partition: letter.partition.unwrap_or(-1),
            offset: letter.offset.unwrap_or(-1),
            dlq_offset: letter.dlq_offset,
            audit_id: audit_id.clone(),
        };
        let headers = letter_headers(&letter.raw, &origin);
        match publisher
            .send_raw(
                &target,
                letter.raw.key.as_deref(),
                letter.raw.value.as_deref(),
                headers,
            )
            .await
        {
            Ok(appended) => {
                sent.push(audit_record(letter, Some(appended.offset)));
                bar.inc(1);
            }
            Err(err) => {
                failure = Some(format!("offset {}: {err}", letter.dlq_offset));
                break;
            }
        }
    }
    bar.finish_and_clear();
    // What was delivered is audited even when the redrive stopped half way.
    if !sent.is_empty() {
        append_audit(
            &log,
            &AuditEntry {
                audit_id: audit_id.clone(),
                action: Action::Redrive,
                group: group.to_owned(),
                operator: operator(selection.operator.as_deref()),
                at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                records: sent.clone(),
                reason: None,
                target: Some(target.clone()),
            },
        )
        .await?;
    }
    println!(
        "redrove {} of {} dead letters of {group} to {target} (audit {audit_id})",
        sent.len(),
        todo.len()
    );
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(reason) => bail!("redrive stopped: {reason}"),
    }
}

/// The headers of a redriven copy of a raw dead letter.
fn letter_headers(raw: &RawRecord, origin: &RedriveOrigin) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for (key, value) in &raw.headers {
        headers = headers.insert(Header {
            key: key.as_str(),
            value: value.as_deref(),
        });
    }
    redrive_headers(Some(&headers), origin)
}

async fn discard(
    args: &LogArgs,
    selection: &Selection,
    reason: Option<String>,
    shutdown: &CancellationToken,
) -> Result<ExitCode> {
    let log = args.open()?;
    let Some(todo) = prepare(&log, selection, "discard", shutdown).await? else {
        return Ok(ExitCode::from(1));
    };
    let group = &selection.group;
    if selection.dry_run {
        for letter in &todo {
            println!("would discard {group} offset {}", letter.dlq_offset);
        }
        println!("dry run: {} dead letters would be discarded", todo.len());
        return Ok(ExitCode::SUCCESS);
    }
    if todo.is_empty() {
        println!("nothing to discard");
        return Ok(ExitCode::SUCCESS);
    }
    let entry = AuditEntry {
        audit_id: Uuid::new_v4().to_string(),
        action: Action::Discard,
        group: group.clone(),
        operator: operator(selection.operator.as_deref()),
        at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        records: todo.iter().map(|l| audit_record(l, None)).collect(),
        reason,
        target: None,
    };
    append_audit(&log, &entry).await?;
    println!(
        "discarded {} dead letters of {group} (audit {})",
        todo.len(),
        entry.audit_id
    );
    Ok(ExitCode::SUCCESS)
}

async fn audit(
    args: &LogArgs,
    group: Option<&str>,
    output: Output,
    shutdown: &CancellationToken,
) -> Result<ExitCode> {
    let log = args.open()?;
    let entries: Vec<AuditEntry> = read_audit(&log, shutdown)
        .await?
        .into_iter()
        .filter(|e| group.is_none_or(|g| e.group == g))
        .collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        Output::Table => {
            let mut out = std::io::stdout();
            writeln!(
                out,
                "{:<24} {:<8} {:<26} {:<16} {:>7}  {:<36} OFFSETS",
                "AT", "ACTION", "GROUP", "OPERATOR", "RECORDS", "AUDIT ID"
            )?;
            for e in &entries {
                let offsets: Vec<String> =
                    e.records.iter().map(|r| r.dlq_offset.to_string()).collect();
                writeln!(
                    out,
                    "{:<24} {:<8} {:<26} {:<16} {:>7}  {:<36} {}",
                    e.at,
                    match e.action {
                        Action::Redrive => "redrive",
                        Action::Discard => "discard",
                    },
                    e.group,
                    e.operator,
                    e.records.len(),
                    e.audit_id,
                    offsets.join(",")
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(offset: i64, headers: &[(&str, &str)], key: &str, timestamp: i64) -> RawRecord {
        RawRecord {
            topic: "notesaga.embedding.dlq".into(),
            partition: 0,
            offset,
            timestamp: Some(timestamp),
            key: Some(key.as_bytes().to_vec()),
            value: Some(vec![0, 0, 0, 0, 1]),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
                .collect(),
        }
    }

    fn letters() -> Vec<DeadLetter> {
        let note = "00000000-0000-0000-0000-000000000007";
        vec![
            DeadLetter::from_record(
                "notesaga.embedding",
                raw(
                    0,
                    &[
                        ("event_type", "GenerateEmbedding"),
                        (h::DLQ_ERROR, "gave up after 5 attempts: store down"),
                        (h::DLQ_TOPIC, "embedding.commands"),
                        (h::DLQ_PARTITION, "3"),
                        (h::DLQ_OFFSET, "12"),
                    ],
                    note,
                    1000,
                ),
            ),
            DeadLetter::from_record(
                "notesaga.embedding",
                raw(
                    1,
                    &[
                        (h::DLQ_ERROR, "undecodable: bad magic byte 1, expected 0"),
                        (h::DLQ_TOPIC, "embedding.commands"),
                        (h::DLQ_PARTITION, "0"),
                        (h::DLQ_OFFSET, "4"),
                    ],
                    "junk",
                    2000,
                ),
            ),
            // Redriven, failed again: the first origin is kept.
            DeadLetter::from_record(
                "notesaga.embedding",
                raw(
                    2,
                    &[
                        (h::REDRIVE_TOPIC, "embedding.commands"),
                        (h::REDRIVE_PARTITION, "3"),
                        (h::REDRIVE_OFFSET, "12"),
                        (h::DLQ_ERROR, "gave up again"),
                        (h::DLQ_TOPIC, "notesaga.embedding.redrive"),
                        (h::DLQ_PARTITION, "0"),
                        (h::DLQ_OFFSET, "0"),
                    ],
                    note,
                    3000,
                ),
            ),
        ]
    }

    fn selection(offsets: &[i64], all: bool) -> Selection {
        Selection {
            group: "notesaga.embedding".into(),
            offsets: offsets.to_vec(),
            all,
            filter: Filter::default(),
            force: false,
            dry_run: false,
            operator: None,
        }
    }

    #[test]
    fn dead_letters_name_their_first_origin() {
        let letters = letters();
        assert_eq!(letters[0].topic.as_deref(), Some("embedding.commands"));
        assert_eq!(
            (letters[0].partition, letters[0].offset),
            (Some(3), Some(12))
        );
        assert!(!letters[0].redriven_before);
        assert_eq!(letters[2].topic.as_deref(), Some("embedding.commands"));
        assert_eq!(
            (letters[2].partition, letters[2].offset),
            (Some(3), Some(12))
        );
        assert!(letters[2].redriven_before);
    }

    #[test]
    fn filters_by_error_note_time_and_status() {
        let mut letters = letters();
        let by = |f: Filter, letters: &[DeadLetter]| -> Vec<i64> {
            letters
                .iter()
                .filter(|l| l.matches(&f))
                .map(|l| l.dlq_offset)
                .collect()
        };
        let f = Filter {
            error: Some("UNDECODABLE".into()),
            ..Filter::default()
        };
        assert_eq!(by(f, &letters), [1]);
        let f = Filter {
            note: Some(Uuid::from_u128(7)),
            ..Filter::default()
        };
        assert_eq!(by(f, &letters), [0, 2]);
        let f = Filter {
            since: Some(2000),
            until: Some(3000),
            ..Filter::default()
        };
        assert_eq!(by(f, &letters), [1]);
        letters[0].status = Status::Redriven;
        let f = Filter {
            status: Some(Status::Pending),
            ..Filter::default()
        };
        assert_eq!(by(f, &letters), [1, 2]);
    }

    #[test]
    fn the_audit_decides_the_status_last_action_winning() {
        let entry = |action, offsets: &[i64]| AuditEntry {
            audit_id: "a".into(),
            action,
            group: "notesaga.embedding".into(),
            operator: "ops".into(),
            at: "2026-12-04T00:00:00.000Z".into(),
            records: offsets
                .iter()
                .map(|o| AuditRecord {
                    dlq_offset: *o,
                    note_id: None,
                    event_type: None,
                    topic: None,
                    partition: None,
                    offset: None,
                    redrive_offset: None,
                })
                .collect(),
            reason: None,
            target: None,
        };
        let status = statuses(&[
            entry(Action::Discard, &[0, 1]),
            entry(Action::Redrive, &[1]),
        ]);
        let g = "notesaga.embedding".to_owned();
        assert_eq!(status.get(&(g.clone(), 0)), Some(&Status::Discarded));
        assert_eq!(status.get(&(g.clone(), 1)), Some(&Status::Redriven));
        assert_eq!(status.get(&(g, 2)), None);
        // The entry round-trips as the JSON the audit topic holds.
        let json = serde_json::to_string(&entry(Action::Redrive, &[4])).unwrap();
        assert!(json.contains(r#""action":"redrive""#), "{json}");
        let back: AuditEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.records[0].dlq_offset, 4);
    }

    #[test]
    fn selections_skip_what_was_dealt_with_and_refuse_unknown_offsets() {
        let mut letters = letters();
        letters[0].status = Status::Redriven;
        let (todo, done) = choose(&letters, &selection(&[0, 1], false)).unwrap();
        assert_eq!(todo.iter().map(|l| l.dlq_offset).collect::<Vec<_>>(), [1]);
        assert_eq!(done.iter().map(|l| l.dlq_offset).collect::<Vec<_>>(), [0]);
        let mut forced = selection(&[0], false);
        forced.force = true;
        assert_eq!(choose(&letters, &forced).unwrap().0.len(), 1);
        let err = choose(&letters, &selection(&[9], false)).unwrap_err();
        assert!(err.to_string().contains("offset 9"), "{err}");
        let (todo, _) = choose(&letters, &selection(&[], true)).unwrap();
        assert_eq!(
            todo.iter().map(|l| l.dlq_offset).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    /// `--output json` on every command scripts read (and `dlq` flags after the
    /// subcommand, where operators type them).
    #[test]
    fn output_json_parses_on_saga_check_and_dlq() {
        use clap::Parser as _;

        use crate::args::{Cli, Command};
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("parses").command;
        let Command::Saga(saga) = parse(&["notesaga", "saga", "list", "--output", "json"]) else {
            panic!("not saga");
        };
        assert_eq!(saga.output, Some(Output::Json));
        let Command::Check(check) = parse(&["notesaga", "check", "--output", "json"]) else {
            panic!("not check");
        };
        assert_eq!(check.output, Output::Json);
        let Command::Dlq(dlq) = parse(&[
            "notesaga",
            "dlq",
            "list",
            "--output",
            "json",
            "--kafka-addr",
            "k:1",
        ]) else {
            panic!("not dlq");
        };
        assert_eq!(dlq.log.kafka_addr.as_deref(), Some("k:1"));
        assert!(matches!(
            dlq.command,
            DlqCommand::List {
                output: Output::Json,
                ..
            }
        ));
        assert!(
            Cli::try_parse_from(["notesaga", "dlq", "redrive", "notesaga.notes"]).is_err(),
            "an offset or --all is required"
        );
    }

    #[test]
    fn the_operator_is_the_flag_else_the_os_user() {
        assert_eq!(operator(Some("alice")), "alice");
        assert!(!operator(None).is_empty());
    }
}
