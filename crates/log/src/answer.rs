//! Roles that answer each command with one reply on one topic (the embedding and
//! narration processors): the batch handling they share.
//!
//! Each reply goes to the broker as soon as its command is done (the producer does not
//! linger) and the batch awaits every acknowledgement at its end, so under load a saga
//! hop does not wait for the one before it to be acknowledged; the loop stores the
//! batch's offsets only after that, once every outcome is durable.

use std::future::Future;

use futures::future::try_join_all;
use notesaga_events::Message;

use crate::{HandlerError, Incoming, Publisher};

/// A role whose answer to a command is one reply on [`Answer::TOPIC`], carrying the
/// command's id (the saga routes replies by it).
pub trait Answer<M>: Send + Sync {
    /// The reply record.
    type Reply: Message + Send + Sync;
    /// Where replies go.
    const TOPIC: &'static str;

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

/// Answers every record of `batch` in order, sending each reply as soon as it is made;
/// returns once all are acknowledged. A [`crate::Handler`]'s `handle` and `handle_batch`
/// both delegate here.
pub async fn answer_all<M, A>(role: &A, batch: &[Incoming<M>]) -> Result<(), HandlerError>
where
    M: Sync,
    A: Answer<M>,
{
    let mut sends = Vec::with_capacity(batch.len());
    for incoming in batch {
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
    try_join_all(sends).await?;
    Ok(())
}
