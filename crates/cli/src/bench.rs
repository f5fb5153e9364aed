//! `notesaga bench`: printed figures, never timed assertions.

use anyhow::Result;

use crate::args::{BenchArgs, BenchTarget};

#[path = "bench_api.rs"]
mod api;
#[path = "bench_replay.rs"]
mod replay;
#[path = "bench_saga.rs"]
mod saga;
#[path = "bench_saga_closed.rs"]
mod saga_closed;
#[path = "bench_search.rs"]
mod search;

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        BenchTarget::Log(args) => {
            let registry = args.connection.registry_endpoint();
            crate::roles::wait_for_registry(&registry).await?;
            notesaga_log::bench::run_log_bench(
                &args.connection.kafka(),
                &registry,
                args.records,
                args.size,
                args.runs,
            )
            .await?;
            Ok(())
        }
        BenchTarget::Notes(args) => {
            let registry = args.connection.registry_endpoint();
            crate::roles::wait_for_registry(&registry).await?;
            notesaga_notes::bench::run_notes_bench(
                &args.connection.kafka(),
                &registry,
                args.commands,
                args.body_size,
                args.connection.partitions,
                args.runs,
            )
            .await?;
            Ok(())
        }
        BenchTarget::Saga(args) => saga::run(args).await,
        BenchTarget::Api(args) => api::run(args).await,
        BenchTarget::Replay(args) => replay::run(args).await,
        BenchTarget::Restate(args) => saga_closed::run_restate(args).await,
        BenchTarget::Search(args) => search::run(args).await,
    }
}
