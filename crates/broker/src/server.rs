//! notesaga-broker's own assembly of tansu's parts: the TCP accept loop and the route
//! table it serves on each connection.
//!
//! tansu-broker's `Broker` fixes both its route table (every API tansu knows, with an
//! `ApiVersions` answer older librdkafka cannot parse) and its group coordinator. Here we
//! choose the routes: tansu's public per-API route functions for the storage APIs we keep,
//! tansu's group-protocol routes over the coordinator we pass in, our own `ApiVersions`
//! (`api_versions.rs`), our Produce and Fetch (`wake.rs`: a fetch waits for an append, not
//! a timer), and our framing (`frames.rs`: no thread hand-off per request). APIs we do not route
//! (transactions, ACLs, SCRAM, quotas, telemetry, KIP-848 consumer groups) are not
//! advertised, so clients do not ask for them.
//!
//! The assembly is generic over the storage engine (`S: Storage`) and the group
//! coordinator (`C: Coordinator + GroupRoutes`), so either can be swapped without
//! touching the loop.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rama::{Context, Layer as _, Service};
use tansu_broker::{
    coordinator::group::Coordinator,
    service::{coordinator, storage},
    Error,
};
use tansu_sans_io::{
    ApiKey as _, ApiVersionsRequest, Body, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeTopicPartitionsRequest, FetchRequest, FindCoordinatorRequest, Frame, Header,
    HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, LeaveGroupRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    SyncGroupRequest,
};
use tansu_service::{
    FrameRouteBuilder, FrameRouteService, TcpBytesLayer, TcpContext, TcpContextLayer,
};
use tansu_storage::Storage;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    api_versions::ApiVersions,
    frames::InlineFrameLayer,
    groups::GroupRoutes,
    wake::{self, LogSignal},
};

/// The route builder every route function extends.
pub(crate) type Builder = FrameRouteBuilder<(), Error>;

/// A route function: adds the route of one API over `T` (storage or coordinator).
type Route<T> = fn(Builder, T) -> Result<Builder, Error>;

/// Connections served at once; further clients wait in the kernel's accept backlog.
const MAX_CONNECTIONS: usize = 4096;

/// How long a stop waits for a storage maintenance run in progress.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// How often the storage engine runs retention and compaction (tansu's default).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);

/// The storage APIs we serve, through tansu's public route functions.
fn storage_routes<S: Storage>() -> Vec<(i16, Route<S>)> {
    vec![
        (MetadataRequest::KEY, storage::metadata::<S>),
        (ListOffsetsRequest::KEY, storage::list_offsets::<S>),
        (CreateTopicsRequest::KEY, storage::create_topics::<S>),
        (DeleteTopicsRequest::KEY, storage::delete_topics::<S>),
        (DeleteRecordsRequest::KEY, storage::delete_records::<S>),
        (DescribeConfigsRequest::KEY, storage::describe_configs::<S>),
        (
            IncrementalAlterConfigsRequest::KEY,
            storage::incremental_alter_configs::<S>,
        ),
        (InitProducerIdRequest::KEY, storage::init_producer_id::<S>),
        (FindCoordinatorRequest::KEY, storage::find_coordinator::<S>),
        (DescribeClusterRequest::KEY, storage::describe_cluster::<S>),
        (
            DescribeTopicPartitionsRequest::KEY,
            storage::describe_topic_partitions::<S>,
        ),
    ]
}

/// The classic group protocol, through tansu's public route functions over the coordinator
/// (which adds JoinGroup itself: see [`GroupRoutes`]).
fn coordinator_routes<C: Coordinator>() -> Vec<(i16, Route<C>)> {
    vec![
        (SyncGroupRequest::KEY, coordinator::sync_group::<C>),
        (HeartbeatRequest::KEY, coordinator::heartbeat::<C>),
        (LeaveGroupRequest::KEY, coordinator::leave_group::<C>),
        (OffsetCommitRequest::KEY, coordinator::offset_commit::<C>),
        (OffsetFetchRequest::KEY, coordinator::offset_fetch::<C>),
    ]
}

/// The single-node broker: storage, group coordinator and the accept loop.
#[derive(Debug)]
pub(crate) struct Server<S, C> {
    cluster_id: String,
    storage: S,
    groups: C,
    api_versions: ApiVersions,
    /// Produce bumps it, waiting fetches wake on it (`wake.rs`).
    appended: LogSignal,
}

impl<S, C> Server<S, C>
where
    S: Storage,
    C: Coordinator + GroupRoutes,
{
    pub(crate) fn new(cluster_id: String, storage: S, groups: C) -> Self {
        let routed = storage_routes::<S>()
            .into_iter()
            .map(|(key, _)| key)
            .chain([ProduceRequest::KEY, FetchRequest::KEY])
            .chain(coordinator_routes::<C>().into_iter().map(|(key, _)| key))
            .chain(C::ROUTE_KEYS.iter().copied());
        Self {
            cluster_id,
            storage,
            groups,
            api_versions: ApiVersions::new(routed),
            appended: LogSignal::default(),
        }
    }

    /// The route table of one connection from `peer` (the coordinator records client hosts).
    fn routes(&self, peer: SocketAddr) -> Result<Routes, Error> {
        let builder = storage_routes::<S>().into_iter().try_fold(
            FrameRouteService::<(), Error>::builder(),
            |builder, (_, route)| route(builder, self.storage.clone()),
        )?;
        let builder = wake::produce_route(builder, self.storage.clone(), self.appended.clone())?;
        let builder = wake::fetch_route(builder, self.storage.clone(), self.appended.clone())?;
        let builder = coordinator_routes::<C>()
            .into_iter()
            .try_fold(builder, |builder, (_, route)| {
                route(builder, self.groups.clone())
            })?;
        let builder = self.groups.group_routes(builder, peer)?;
        Ok(Routes {
            table: builder.build()?,
            api_versions: self.api_versions.clone(),
        })
    }

    /// Serves Kafka clients on `listener` until `stop` is cancelled. Then every
    /// connection is closed (a request in hand is dropped: clients retry it, as after any
    /// broker restart) and a storage maintenance run in progress gets [`STOP_PATIENCE`]
    /// to finish.
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let mut connections = JoinSet::new();
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance.tick().await;

        loop {
            tokio::select! {
                () = stop.cancelled() => break,

                accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // EMFILE and friends: back off instead of spinning.
                            warn!(%error, "cannot accept a connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if let Err(error) = stream.set_nodelay(true) {
                        warn!(%error, %peer, "cannot set TCP_NODELAY");
                    }
                    let routes = match this.routes(peer) {
                        Ok(routes) => routes,
                        Err(error) => {
                            warn!(?error, %peer, "cannot build the route table");
                            continue;
                        }
                    };
                    let service = (
                        TcpContextLayer::new(
                            TcpContext::default().cluster_id(Some(this.cluster_id.clone())),
                        ),
                        TcpBytesLayer::<()>::default(),
                        InlineFrameLayer,
                    )
                        .into_layer(routes);
                    let stop = stop.clone();
                    connections.spawn(async move {
                        tokio::select! {
                            served = service.serve(Context::default(), stream) => {
                                match served {
                                    Err(Error::Io(ref io)) if matches!(
                                        io.kind(),
                                        std::io::ErrorKind::UnexpectedEof
                                            | std::io::ErrorKind::BrokenPipe
                                            | std::io::ErrorKind::ConnectionReset
                                    ) => debug!(%peer, "client disconnected"),
                                    Err(error) => warn!(%peer, ?error, "connection closed on error"),
                                    Ok(()) => debug!(%peer, "connection closed"),
                                }
                            }
                            () = stop.cancelled() => {}
                        }
                    });
                }

                _ = maintenance.tick() => {
                    let storage = this.storage.clone();
                    connections.spawn(async move {
                        if let Err(error) = storage.maintain(std::time::SystemTime::now()).await {
                            warn!(?error, "storage maintenance failed");
                        }
                    });
                }

                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        info!(open = connections.len(), "stopping: closing connections");
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_PATIENCE, drain).await.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        Ok(())
    }
}

/// tansu's route table plus our `ApiVersions`, which tansu's builder would not let us
/// register (it adds its own and refuses a second route for a key).
#[derive(Clone, Debug)]
struct Routes {
    table: FrameRouteService<(), Error>,
    api_versions: ApiVersions,
}

impl Service<(), Frame> for Routes {
    type Response = Frame;
    type Error = Error;

    async fn serve(&self, ctx: Context<()>, req: Frame) -> Result<Frame, Error> {
        let (api_key, api_version) = (req.api_key()?, req.api_version()?);
        if api_key == ApiVersionsRequest::KEY {
            let correlation_id = req.correlation_id()?;
            return Ok(Frame {
                size: 0,
                header: Header::Response { correlation_id },
                body: self.api_versions.response().into(),
            });
        }
        let mut response = self.table.serve(ctx, req).await?;
        if api_key == ListOffsetsRequest::KEY && api_version == 0 {
            response.body = with_old_style_offsets(response.body);
        }
        Ok(response)
    }
}

/// ListOffsets v0 answers with a list of offsets per partition (`OldStyleOffsets`), where
/// v1+ has one `Offset`. tansu fills only the latter, so a v0 answer (what librdkafka
/// sends with `api.version.request=false`) lacks the list and the client fails with a read
/// underflow. Copy the offset into the list.
fn with_old_style_offsets(body: Body) -> Body {
    let Body::ListOffsetsResponse(mut response) = body else {
        return body;
    };
    for topic in response.topics.iter_mut().flatten() {
        for partition in topic.partitions.iter_mut().flatten() {
            if partition.old_style_offsets.is_none() {
                partition.old_style_offsets = Some(
                    partition
                        .offset
                        .filter(|offset| *offset >= 0)
                        .into_iter()
                        .collect(),
                );
            }
        }
    }
    Body::ListOffsetsResponse(response)
}
