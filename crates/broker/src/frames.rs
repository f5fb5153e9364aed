//! Request bytes → [`Frame`] → response bytes, on the connection's own task.
//!
//! WHY our own layer: tansu-service's `BytesFrameLayer` decodes every request and encodes
//! every response on tokio's blocking pool (`spawn_blocking`), so each request paid two
//! thread hand-offs — a futex wake of a pool thread, a context switch there and one back
//! — for frames that take microseconds to decode. Profiled under a 32-client saga loop
//! (`scripts/profile-saga.sh`), the broker's blocking-pool threads held a quarter of its
//! CPU samples, most of them in futex waits and wake-ups rather than in the codec. A
//! Kafka request is small except a Fetch answer, and encoding even a full one (a few MB
//! at most, `fetch.max.bytes`) is a copy of its record batches, which the worker can do
//! itself. The layer neither authenticates nor speaks SASL: the broker serves loopback
//! and its own network, as before (`docs/broker.md`).

use bytes::Bytes;
use rama::{Context, Layer, Service};
use tansu_sans_io::{Frame, Header};

/// Wraps a [`Frame`] service into a bytes one ([`InlineFrames`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InlineFrameLayer;

impl<S> Layer<S> for InlineFrameLayer {
    type Service = InlineFrames<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InlineFrames { inner }
    }
}

/// Decodes a request frame, serves it, encodes the answer with the request's API key,
/// version and correlation id — all on the calling task.
#[derive(Clone, Debug)]
pub(crate) struct InlineFrames<S> {
    inner: S,
}

impl<S, State> Service<State, Bytes> for InlineFrames<S>
where
    S: Service<State, Frame, Response = Frame>,
    S::Error: From<tansu_sans_io::Error>,
    State: Clone + Send + Sync + 'static,
{
    type Response = Bytes;
    type Error = S::Error;

    async fn serve(&self, ctx: Context<State>, req: Bytes) -> Result<Bytes, S::Error> {
        let request = Frame::request_from_bytes(req)?;
        let api_key = request.api_key()?;
        let api_version = request.api_version()?;
        let correlation_id = request.correlation_id()?;
        let Frame { body, .. } = self.inner.serve(ctx, request).await?;
        Ok(Frame::response(
            Header::Response { correlation_id },
            body,
            api_key,
            api_version,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use tansu_sans_io::{ApiKey as _, Body, MetadataRequest, MetadataResponse};

    use super::*;

    /// Answers every request with an empty Metadata response.
    #[derive(Clone, Debug)]
    struct EmptyMetadata;

    impl Service<(), Frame> for EmptyMetadata {
        type Response = Frame;
        type Error = tansu_broker::Error;

        async fn serve(&self, _ctx: Context<()>, req: Frame) -> Result<Frame, Self::Error> {
            Ok(Frame {
                size: 0,
                header: Header::Response {
                    correlation_id: req.correlation_id()?,
                },
                body: Body::MetadataResponse(
                    MetadataResponse::default()
                        .brokers(Some(vec![]))
                        .controller_id(Some(1))
                        .topics(Some(vec![])),
                ),
            })
        }
    }

    #[tokio::test]
    async fn a_request_is_answered_with_its_correlation_id_and_version() {
        let request = Frame::request(
            Header::Request {
                api_key: MetadataRequest::KEY,
                api_version: 1,
                correlation_id: 4711,
                client_id: Some("test".into()),
            },
            MetadataRequest::default().into(),
        )
        .unwrap();
        let answer = InlineFrameLayer
            .layer(EmptyMetadata)
            .serve(Context::default(), request)
            .await
            .unwrap();
        let decoded = Frame::response_from_bytes(answer, MetadataRequest::KEY, 1).unwrap();
        assert_eq!(decoded.correlation_id().unwrap(), 4711);
        assert!(matches!(decoded.body, Body::MetadataResponse(_)));
    }

    #[tokio::test]
    async fn undecodable_bytes_are_an_error_not_a_panic() {
        let answer = InlineFrameLayer
            .layer(EmptyMetadata)
            .serve(
                Context::default(),
                Bytes::from_static(&[0, 0, 0, 3, 1, 2, 3]),
            )
            .await;
        assert!(answer.is_err());
    }
}
