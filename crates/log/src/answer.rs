//! Roles that answer each command with one reply on one topic (the embedding and
//! narration processors): the batch handling they share.
//!
//! Each reply goes to the broker as soon as its command is done (the producer does not
//! linger) and the batch awaits every acknowledgement at its end, so under load a saga
//! hop does not wait for the one before it to be acknowledged; the loop stores the
//! batch's offsets only after that, once every outcome is durable. A role may answer the
//! commands of several notes at once ([`Answer::LANES`]); one note's commands are always
//! answered in order.

use std::future::Future;

use futures::{future::try_join_all, stream, StreamExt as _, TryStreamExt as _};
use notesaga_events::Message;
use uuid::Uuid;

use crate::{HandlerError, Incoming, Publisher};

/// A role whose answer to a command is one reply on [`Answer::TOPIC`], carrying the
/// command's id (the saga routes replies by it).
pub trait Answer<M>: Send + Sync {
    /// The reply record.
    type Reply: Message + Send + Sync;
    /// Where replies go.
    const TOPIC: &'static str;
    /// How many notes' commands of one batch are answered at once. 1 (the default)
    /// answers the batch in order; more lets one command's waits (a file's fsync, a
    /// store's round trip) overlap another's. Whatever limits the work itself (a speech
    /// engine's or a model's concurrency) still applies inside [`Self::answer`].
    const LANES: usize = 1;

    /// The reply to `incoming`, once what it asks is durable. A transient failure is a
    /// handler error (the loop retries the record); a failure the saga should see is a
    /// reply.
    fn answer(
        &self,
        incoming: &Incoming<M>,
    ) -> impl Future<Output = Result<Self::Reply, HandlerError>> + Send;

    /// The publisher replies go through.
    fn publisher(&self) -> &Publisher;
}

/// Answers every record of `batch`, sending each reply as soon as it is made; returns
/// once all are acknowledged. The records of one note are answered in batch order, and
/// up to [`Answer::LANES`] notes at once. A [`crate::Handler`]'s `handle` and
/// `handle_batch` both delegate here.
pub async fn answer_all<M, A>(role: &A, batch: &[Incoming<M>]) -> Result<(), HandlerError>
where
    M: Message,
    A: Answer<M>,
{
    // The futures are made before they become a stream: a closure inside the stream's
    // type would make the handler's future fail the `Send` check (rust-lang/rust#110338).
    let lanes: Vec<_> = by_note(batch)
        .into_iter()
        .map(|records| answer_in_order(role, records))
        .collect();
    let lanes = stream::iter(lanes)
        .buffer_unordered(A::LANES.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    try_join_all(lanes.into_iter().flatten()).await?;
    Ok(())
}

/// Answers `records` one after the other; the acknowledgements of their replies, to
/// await.
async fn answer_in_order<M, A>(
    role: &A,
    records: Vec<&Incoming<M>>,
) -> Result<Vec<impl Future<Output = crate::Result<crate::producer::Appended>>>, HandlerError>
where
    M: Message,
    A: Answer<M>,
{
    let mut sends = Vec::with_capacity(records.len());
    for incoming in records {
        let reply = role.answer(incoming).await?;
        let metadata = incoming
            .metadata
            .command_event(incoming.metadata.command(), 0);
        sends.push(
            role.publisher()
                .enqueue(A::TOPIC, &reply, &metadata)
                .await?,
        );
    }
    Ok(sends)
}

/// The records of `batch` grouped by note, notes in the order they first appear.
fn by_note<M: Message>(batch: &[Incoming<M>]) -> Vec<Vec<&Incoming<M>>> {
    let mut lanes: Vec<(Uuid, Vec<&Incoming<M>>)> = Vec::new();
    for incoming in batch {
        let note_id = incoming.message.note_id();
        match lanes.iter_mut().find(|(id, _)| *id == note_id) {
            Some((_, records)) => records.push(incoming),
            None => lanes.push((note_id, vec![incoming])),
        }
    }
    lanes.into_iter().map(|(_, records)| records).collect()
}

#[cfg(test)]
mod tests {
    use notesaga_events::narration::{DeleteNarration, NarrationCommand};

    use super::*;
    use crate::Metadata;

    fn delete(note: u128, version: i64) -> Incoming<NarrationCommand> {
        Incoming {
            message: NarrationCommand::DeleteNarration(DeleteNarration {
                note_id: Uuid::from_u128(note),
                version: Some(version),
            }),
            metadata: Metadata::new(Uuid::from_u128(1000 + note), "test"),
            topic: "narration.commands".into(),
            partition: 0,
            offset: version,
        }
    }

    /// A note and the offsets of its records, in the order they are answered.
    type Lane = (u128, Vec<i64>);
    /// A batch as (note, offset) pairs, and the lanes it must split into.
    type Case = (&'static [(u128, i64)], Vec<Lane>);

    /// Each lane of `batch`.
    fn lanes(batch: &[Incoming<NarrationCommand>]) -> Vec<Lane> {
        by_note(batch)
            .into_iter()
            .map(|records| {
                (
                    records[0].message.note_id().as_u128(),
                    records.iter().map(|r| r.offset).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_batch_splits_into_one_lane_per_note_in_first_seen_order() {
        let cases: [Case; 4] = [
            (&[], vec![]),
            (&[(1, 0)], vec![(1, vec![0])]),
            (
                &[(1, 0), (2, 1), (3, 2)],
                vec![(1, vec![0]), (2, vec![1]), (3, vec![2])],
            ),
            (
                &[(2, 0), (1, 1), (2, 2), (1, 3), (2, 4)],
                vec![(2, vec![0, 2, 4]), (1, vec![1, 3])],
            ),
        ];
        for (records, expected) in cases {
            let batch: Vec<_> = records.iter().map(|&(n, o)| delete(n, o)).collect();
            assert_eq!(lanes(&batch), expected, "batch {records:?}");
        }
    }
}
