//! Consumer groups: the routes a group coordinator adds beside tansu's group-protocol
//! routes (JoinGroup, which needs the request version and the client's address, and the
//! group queries DescribeGroups and ListGroups).

use std::net::SocketAddr;

use tansu_broker::{
    coordinator::group::administrator::Controller,
    service::{coordinator, storage},
    Error,
};
use tansu_sans_io::{ApiKey as _, DescribeGroupsRequest, JoinGroupRequest, ListGroupsRequest};
use tansu_storage::Storage;

use crate::server::Builder;

/// The routes a group coordinator adds itself.
pub(crate) trait GroupRoutes {
    /// The API keys [`GroupRoutes::group_routes`] adds.
    const ROUTE_KEYS: &'static [i16];

    /// Adds the coordinator's own routes for a connection from `peer`.
    fn group_routes<S: Storage>(
        &self,
        builder: Builder,
        storage: S,
        peer: SocketAddr,
    ) -> Result<Builder, Error>;
}

/// tansu's coordinator: tansu's JoinGroup, group queries answered from storage.
impl<O: Storage> GroupRoutes for Controller<O> {
    const ROUTE_KEYS: &'static [i16] = &[
        JoinGroupRequest::KEY,
        DescribeGroupsRequest::KEY,
        ListGroupsRequest::KEY,
    ];

    fn group_routes<S: Storage>(
        &self,
        builder: Builder,
        storage: S,
        _peer: SocketAddr,
    ) -> Result<Builder, Error> {
        let builder = coordinator::join_group(builder, self.clone())?;
        storage::list_groups(storage::describe_groups(builder, storage.clone())?, storage)
    }
}
