//! `notesaga`: one binary with every role and operator command as a subcommand.

mod admin_client;
mod args;
mod bench;
mod check;
mod dev;
mod dlq;
#[cfg(test)]
mod env_doc;
mod limits;
mod logread;
mod note_history;
mod reembed;
mod registry_auth;
mod replay;
mod roles;
mod saga;
mod tail;
mod telemetry;
mod token;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;

use crate::args::{Cli, Command};

/// mimalloc instead of glibc's malloc: under a saga loop glibc's allocator (`malloc`,
/// `free`, `malloc_consolidate`) held about 7 % of the machine across the roles and the
/// broker, on the many small short-lived allocations of decoding and encoding records
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    runtime()?.block_on(run(cli))
}

/// tokio's multi-threaded runtime with a worker per core (or `TOKIO_WORKER_THREADS`).
/// `notesaga dev` keeps it too and sizes only its broker child
/// ([`dev::broker_worker_threads`]).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

async fn run(cli: Cli) -> Result<ExitCode> {
    telemetry::init_tracing(&cli.log_format);
    let shutdown = roles::shutdown_on_signal();
    // Every command exits within a bound once asked to stop (docs/operations.md).
    let bound = match &cli.command {
        Command::Dev(_) => dev::SHUTDOWN_BOUND,
        _ => roles::SHUTDOWN_BOUND,
    };
    roles::exit_within(&shutdown, bound);
    let done = match cli.command {
        Command::Dev(args) => dev::run(args, shutdown).await,
        Command::Api(args) => roles::api(args, shutdown).await,
        Command::Notes(args) => roles::notes(args, shutdown).await,
        Command::Embedding(args) => roles::embedding(args, shutdown).await,
        Command::Narration(args) => roles::narration(args, shutdown).await,
        Command::Orchestrator(args) => roles::orchestrator(args, shutdown).await,
        Command::Projector(args) => roles::projector(args, shutdown).await,
        Command::Registry(args) => roles::registry(args, shutdown).await,
        Command::Bench(args) => bench::run(args).await,
        // Operator commands whose exit code says how it went (see their docs).
        Command::Saga(args) => return Ok(saga::run(args).await),
        Command::Replay(args) => return Ok(replay::run(args).await),
        Command::Check(args) => return Ok(check::run(args, shutdown).await),
        Command::Token(args) => token::run(args),
        Command::Dlq(args) => return Ok(dlq::run(args, shutdown).await),
        Command::Tail(args) => return Ok(tail::run(args, shutdown).await),
        Command::Note(args) => return Ok(note_history::run(args, shutdown).await),
        Command::Reembed(args) => return Ok(reembed::run(args, shutdown).await),
    };
    done.map(|()| ExitCode::SUCCESS)
}
