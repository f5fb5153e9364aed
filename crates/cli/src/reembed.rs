//! `notesaga reembed --model M`: moves every published note's vector to another
//! embedding model through the log (issue 13, "Changing models").
//!
//! 1. Reads the read store's live, published notes and the models each published
//!    version has a vector of ([`notesaga_projections::vectors`]); the ones that have one
//!    of M already are skipped, so an interrupted run is resumed by running it again.
//! 2. Sends `GenerateEmbedding{model: M}` for each of the others to `embedding.commands`
//!    (rate-limited, a progress bar), with headers of its own: a fresh `command_id` that
//!    no saga waits for (the orchestrator routes replies by it and ignores the rest), and
//!    `correlation_id` / `causation_id` `reembed:<run id>`, so the records say they are a
//!    re-embedding. The embedding role answers `EmbeddingGenerated` of M (or
//!    `EmbeddingFailed`), which the projector folds into `note_vectors`.
//! 3. By default waits (a progress bar, `--timeout`) until the read store has M's vector
//!    of every note sent, reading the `EmbeddingFailed` answers to its commands from
//!    `embedding.events` to say why a note failed, and prints the step that switches
//!    search to M. Search does not change by itself: it ranks by the vectors of the model
//!    the API runs.
//!
//! `--status` prints how many published notes have vectors of each model. Exit 0: done
//! (or nothing to do); 1: bad input, or notes failed or still missing; 2: the read store
//! or the log cannot be reached.

mod decide;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    process::ExitCode,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use notesaga_events::{
    embedding::{note_text, EmbeddingCommand, GenerateEmbedding},
    headers as h,
    topics::{EMBEDDING_COMMANDS, EMBEDDING_EVENTS},
};
use notesaga_log::{AvroCodec, Metadata, Publisher};
use notesaga_projections::{
    vectors::{coverage, to_reembed, PublishedNote},
    ReadStore,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::decide::{check_model, published_since, switch_step, Outcome};
use crate::logread::{Log, LogArgs, RawRecord, Start};

/// How often the wait looks at the read store and the replies.
const POLL: Duration = Duration::from_secs(1);
/// Replies are looked for from this long before the run started: the embedding role's
/// clock (record timestamps) may be a little behind this machine's.
const CLOCK_SLACK_MS: i64 = 60_000;

/// `notesaga reembed`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReembedArgs {
    /// Where the broker and the registry are (and the node's data directory).
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// Database of the read projections; default: DATABASE_URL, else `projections.db`
    /// in the data directory (which must exist).
    #[arg(long, env = "NOTESAGA_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Registry credentials, USER:PASSWORD; default: the single node's
    /// `registry-user-info` file in the data directory, if any.
    #[arg(long, env = "NOTESAGA_REGISTRY_USER_INFO", hide_env_values = true)]
    pub(crate) registry_user_info: Option<String>,
    /// The model to re-embed to: all-MiniLM-L6-v2, notesaga-builtin-hash-v1, or a model
    /// of an OpenAI-compatible server the embedding role runs.
    #[arg(long, required_unless_present = "status")]
    pub(crate) model: Option<String>,
    /// Print how many published notes have vectors of each model, and do nothing.
    #[arg(long)]
    pub(crate) status: bool,
    /// Say which notes would be re-embedded, and send nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Commands sent per second at most (the embedding role embeds them beside the
    /// saga's work).
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rate: f64,
    /// Wait until the read store has every vector (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub(crate) wait: bool,
    /// Exit once the commands are sent; `--status` shows the progress later.
    #[arg(long, overrides_with = "wait")]
    pub(crate) no_wait: bool,
    /// Seconds the wait lasts at most; what is still missing then is reported.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout: u64,
    /// Only this owner's notes.
    #[arg(long)]
    pub(crate) owner: Option<String>,
}

/// Runs the command; the exit code says how it went.
pub(crate) async fn run(args: ReembedArgs, shutdown: CancellationToken) -> ExitCode {
    match reembed(&args, &shutdown).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("notesaga reembed: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The read store's URL: the flag, DATABASE_URL, else the node's SQLite file, which must
/// exist (a missing file means a wrong `--data-dir`; nothing is created).
fn store_url(args: &ReembedArgs) -> Result<String> {
    if let Some(url) = args
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
    {
        return Ok(url);
    }
    let file = args.log.data_dir.join("projections.db");
    if !file.is_file() {
        bail!(
            "there is no read store at {}: pass the node's data directory (--data-dir / \
             NOTESAGA_DATA_DIR) or the read store's database (--database-url / \
             NOTESAGA_DATABASE_URL)",
            file.display()
        );
    }
    crate::args::sqlite_url(&args.log.data_dir, "projections.db")
}

async fn reembed(args: &ReembedArgs, shutdown: &CancellationToken) -> Result<ExitCode> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        eprintln!("notesaga reembed: --rate must be a positive number of commands per second");
        return Ok(ExitCode::from(1));
    }
    let url = store_url(args)?;
    let store = ReadStore::connect(&url).await.with_context(|| {
        format!(
            "cannot open the read store {}",
            crate::check::redacted(&url)
        )
    })?;
    let notes = store.published_notes(args.owner.as_deref()).await?;
    if args.status {
        print_status(&notes, args.model.as_deref(), args.owner.as_deref());
        return Ok(ExitCode::SUCCESS);
    }
    let model = args.model.as_deref().unwrap_or_default();
    let in_store: BTreeSet<String> = coverage(&notes, None).into_keys().collect();
    if let Err(message) = check_model(model, &in_store) {
        eprintln!("notesaga reembed: {message}");
        return Ok(ExitCode::from(1));
    }
    if notes.is_empty() {
        eprintln!(
            "notesaga reembed: the read store {} has no published notes{}: nothing to \
             re-embed (is it the node's? --data-dir / --database-url)",
            crate::check::redacted(&url),
            args.owner
                .as_deref()
                .map(|o| format!(" of {o}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    let plan = to_reembed(&notes, model);
    for note in &plan.without_text {
        eprintln!(
            "skipped {} v{}: the read store does not hold its published text (rebuild the \
             projection with `notesaga replay notes`, then run this again)",
            note.note_id, note.version
        );
    }
    println!(
        "{} published notes: {} to re-embed to {model}, {} have its vectors already",
        notes.len(),
        plan.todo.len(),
        plan.done
    );
    if args.dry_run {
        for note in &plan.todo {
            println!(
                "would re-embed {} v{} ({})",
                note.note_id, note.version, note.owner
            );
        }
        println!(
            "dry run: {} notes would be re-embedded to {model}",
            plan.todo.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if plan.todo.is_empty() {
        println!("nothing to re-embed");
        println!("{}", switch_step(model));
        return Ok(if plan.without_text.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let log = open_log(args)?;
    // Fails with the address to fix when the broker cannot be reached.
    log.partitions(EMBEDDING_COMMANDS).await?;
    let run_id = Uuid::new_v4();
    let started_ms = chrono::Utc::now().timestamp_millis();
    let (sent, stopped) = send(&log, &plan.todo, model, run_id, args.rate, shutdown).await?;
    println!(
        "sent {} re-embedding commands to {EMBEDDING_COMMANDS} (run reembed:{run_id})",
        sent.len()
    );
    if let Some(reason) = stopped {
        eprintln!("notesaga reembed: sending stopped: {reason}; run it again to resume");
        return Ok(ExitCode::from(1));
    }
    if args.no_wait {
        println!("not waiting: `notesaga reembed --status --model {model}` shows the progress");
        return Ok(ExitCode::SUCCESS);
    }
    let mut outcome = wait(
        &store,
        &log,
        model,
        &sent,
        started_ms,
        args.timeout,
        shutdown,
    )
    .await?;
    // A note edited and published again while the run went on has its new vector of M
    // only if it is re-embedded again: the saga embeds with the model the roles run.
    let after = store.published_notes(args.owner.as_deref()).await?;
    let still_todo: Vec<(String, i64)> = to_reembed(&after, model)
        .todo
        .iter()
        .map(|n| (n.note_id.to_string(), n.version))
        .collect();
    let sent_keys: BTreeSet<(String, i64)> =
        sent.iter().map(|(n, v, _)| (n.to_string(), *v)).collect();
    outcome.published_since = published_since(&still_todo, &sent_keys);
    Ok(report(model, &outcome, plan.done, plan.without_text.len()))
}

/// The log, with the registry's credentials (the flag's, else the single node's own):
/// the new `GenerateEmbedding` schema may need registering.
fn open_log(args: &ReembedArgs) -> Result<Log> {
    let mut log = args.log.open()?;
    let user_info = match &args.registry_user_info {
        Some(info) => Some(info.clone()),
        None => crate::registry_auth::node_user_info(&args.log.data_dir)?,
    };
    let url =
        notesaga_log::registry_url_with_user_info(log.codec.registry_url(), user_info.as_deref());
    log.codec = Arc::new(AvroCodec::new(&url));
    Ok(log)
}

/// A command sent: its note, version and command id.
type Sent = Vec<(Uuid, i64, Uuid)>;

/// Sends the commands at `rate`; stops at the first failure or at shutdown (what was
/// sent is kept, the reason returned).
async fn send(
    log: &Log,
    todo: &[&PublishedNote],
    model: &str,
    run_id: Uuid,
    rate: f64,
    shutdown: &CancellationToken,
) -> Result<(Sent, Option<String>)> {
    let publisher = Publisher::new(&log.kafka, log.codec.clone())?;
    let marker = format!("reembed:{run_id}");
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("send    [{bar:30}] {pos}/{len} · {per_sec} · ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut sent = Vec::new();
    let mut stopped = None;
    for note in todo {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => { stopped = Some("interrupted".to_owned()); break; }
        }
        let Some((title, body)) = &note.text else {
            continue;
        };
        let command = EmbeddingCommand::GenerateEmbedding(GenerateEmbedding {
            note_id: note.note_id,
            version: note.version,
            text: note_text(title, body),
            model: Some(model.to_owned()),
        });
        // A fresh id per command: no saga waits for it, and a later run's command for
        // the same note (after a failure) gets replies of its own rather than repeats.
        let command_id = Uuid::new_v4();
        let mut metadata = Metadata::new(command_id, marker.clone()).with_command(command_id);
        metadata.causation_id = Some(marker.clone());
        match publisher
            .publish(EMBEDDING_COMMANDS, &command, &metadata)
            .await
        {
            Ok(_) => {
                sent.push((note.note_id, note.version, command_id));
                bar.inc(1);
            }
            Err(err) => {
                stopped = Some(format!("{} v{}: {err}", note.note_id, note.version));
                break;
            }
        }
    }
    bar.finish_and_clear();
    Ok((sent, stopped))
}

/// Waits until every command sent has a vector of `model` in the read store or a
/// failure answer, or `timeout_secs` passed, or shutdown.
async fn wait(
    store: &ReadStore,
    log: &Log,
    model: &str,
    sent: &Sent,
    started_ms: i64,
    timeout_secs: u64,
    shutdown: &CancellationToken,
) -> Result<Outcome> {
    let versions: Vec<(Uuid, i64)> = sent.iter().map(|(n, v, _)| (*n, *v)).collect();
    let by_command: HashMap<String, (Uuid, i64)> = sent
        .iter()
        .map(|(n, v, c)| (c.to_string(), (*n, *v)))
        .collect();
    let bar = ProgressBar::new(sent.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("embed   [{bar:30}] {pos}/{len} · {per_sec} · ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    // The failure answers are read by one following scan of `embedding.events` beside
    // the polling loop, so each record is read once however long the wait lasts.
    let answers: Mutex<Vec<((Uuid, i64), RawRecord)>> = Mutex::new(Vec::new());
    let reading = shutdown.child_token();
    let scan = async {
        let scanned = log
            .scan(
                &[EMBEDDING_EVENTS.to_owned()],
                Start::Time(started_ms - CLOCK_SLACK_MS),
                true,
                &reading,
                |record| {
                    let ours = record
                        .header(h::COMMAND_ID)
                        .and_then(|id| by_command.get(id))
                        .copied();
                    if let Some(key) = ours {
                        if record.header(h::EVENT_TYPE) == Some("EmbeddingFailed") {
                            lock(&answers).push((key, record));
                        }
                    }
                    Ok(())
                },
            )
            .await;
        // Stops the polling too when the scan fails.
        reading.cancel();
        scanned
    };
    let poll = async {
        let found = loop {
            let found = store.vector_dimensions(model, &versions).await?;
            let failed: BTreeSet<(Uuid, i64)> = lock(&answers).iter().map(|(k, _)| *k).collect();
            let settled = versions
                .iter()
                .filter(|key| found.contains_key(key) || failed.contains(key))
                .count();
            bar.set_position(settled as u64);
            if settled == versions.len() || Instant::now() >= deadline || reading.is_cancelled() {
                break found;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))) => {}
                () = reading.cancelled() => {}
            }
        };
        reading.cancel();
        anyhow::Ok(found)
    };
    let (scanned, found) = tokio::join!(scan, poll);
    scanned?;
    let found = found?;
    let answers = answers.into_inner().unwrap_or_else(PoisonError::into_inner);
    let failed = failure_reasons(log, answers).await;
    bar.finish_and_clear();
    let mut outcome = Outcome {
        embedded: 0,
        failed: Vec::new(),
        missing: Vec::new(),
        published_since: Vec::new(),
    };
    for key in &versions {
        if found.contains_key(key) {
            outcome.embedded += 1;
        } else if let Some(reason) = failed.get(key) {
            outcome
                .failed
                .push((key.0.to_string(), key.1, reason.clone()));
        } else {
            outcome.missing.push((key.0.to_string(), key.1));
        }
    }
    Ok(outcome)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reasons of the `EmbeddingFailed` answers to this run's commands, by (note,
/// version).
async fn failure_reasons(
    log: &Log,
    answers: Vec<((Uuid, i64), RawRecord)>,
) -> BTreeMap<(Uuid, i64), String> {
    let mut failed = BTreeMap::new();
    for (key, record) in answers {
        let reason = match log.codec.decode_json(record.value.as_deref()).await {
            Ok(decoded) => decoded.value["reason"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned(),
            Err(err) => format!("EmbeddingFailed (undecodable: {err})"),
        };
        failed.insert(key, reason);
    }
    failed
}

/// Prints how the run ended and the switch step; the exit code.
fn report(model: &str, outcome: &Outcome, already: usize, without_text: usize) -> ExitCode {
    println!(
        "re-embedded {} notes to {model} ({} failed, {} still missing, {} published since \
         the run began; {already} had its vectors already)",
        outcome.embedded,
        outcome.failed.len(),
        outcome.missing.len(),
        outcome.published_since.len()
    );
    for (note, version, reason) in &outcome.failed {
        println!("failed  {note} v{version}: {reason}");
    }
    for (note, version) in &outcome.missing {
        println!(
            "missing {note} v{version}: no vector of {model} in the read store and no \
             failure answer before the wait ended (is the embedding role running? the \
             projector?)"
        );
    }
    for (note, version) in &outcome.published_since {
        println!(
            "newer   {note} v{version}: published while the run went on, without a vector \
             of {model} yet"
        );
    }
    if outcome.complete() && without_text == 0 {
        println!("{}", switch_step(model));
        ExitCode::SUCCESS
    } else {
        println!(
            "not every note has a vector of {model}: fix the cause and run the same command \
             again (it re-embeds only what is missing) before switching"
        );
        ExitCode::from(1)
    }
}

/// `--status`: the published notes and how many have vectors of each model.
fn print_status(notes: &[PublishedNote], model: Option<&str>, owner: Option<&str>) {
    let whose = owner.map(|o| format!(" of {o}")).unwrap_or_default();
    println!("{} published notes{whose}", notes.len());
    let counts = coverage(notes, model);
    let width = counts.keys().map(String::len).max().unwrap_or(5).max(5);
    println!("{:width$}  {:>7}  {:>8}", "model", "notes", "coverage");
    for (name, count) in counts {
        let percent = if notes.is_empty() {
            0.0
        } else {
            100.0 * count as f64 / notes.len() as f64
        };
        println!("{name:width$}  {count:>7}  {percent:>7.1}%");
    }
}
