//! `notesaga`: one binary with every role and operator command as a subcommand.

mod args;
mod bench;
mod dev;
mod roles;
mod telemetry;

use anyhow::Result;
use clap::Parser as _;

use crate::args::{Cli, Command};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing(&cli.log_format);
    let shutdown = roles::shutdown_on_signal();
    match cli.command {
        Command::Dev(args) => dev::run(args, shutdown).await,
        Command::Api(args) => roles::api(args, shutdown).await,
        Command::Notes(args) => roles::notes(args, shutdown).await,
        Command::Embedding(args) => roles::embedding(args, shutdown).await,
        Command::Narration(args) => roles::narration(args, shutdown).await,
        Command::Orchestrator(args) => roles::orchestrator(args, shutdown).await,
        Command::Projector(args) => roles::projector(args, shutdown).await,
        Command::Registry(args) => roles::registry(args, shutdown).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
