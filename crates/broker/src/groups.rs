//! Consumer groups: the broker's own group coordinator (Kafka's classic group protocol).
//!
//! - `machine.rs`: one group as a pure state machine (no tokio), table-tested.
//! - `coordinator.rs`: every group behind a mutex, the waits of JoinGroup and SyncGroup,
//!   the reaper expiring members, offsets through the storage engine; implements tansu's
//!   `Coordinator` trait so tansu's group-protocol routes serve it.
//! - `routes.rs`: the routes it answers itself: JoinGroup (needs the request version and
//!   the client's address), DescribeGroups and ListGroups.

mod coordinator;
mod machine;
mod routes;

use std::net::SocketAddr;

use tansu_broker::Error;
use tansu_storage::Storage;

pub(crate) use coordinator::Groups;

use crate::server::Builder;

/// The routes a group coordinator adds itself, beside tansu's group-protocol routes.
pub(crate) trait GroupRoutes {
    /// The API keys [`GroupRoutes::group_routes`] adds.
    const ROUTE_KEYS: &'static [i16];

    /// Adds the coordinator's own routes for a connection from `peer`.
    fn group_routes(&self, builder: Builder, peer: SocketAddr) -> Result<Builder, Error>;
}

impl<S: Storage> GroupRoutes for Groups<S> {
    const ROUTE_KEYS: &'static [i16] = routes::KEYS;

    fn group_routes(&self, builder: Builder, peer: SocketAddr) -> Result<Builder, Error> {
        routes::add(builder, self, peer)
    }
}
