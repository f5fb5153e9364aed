//! The routes our coordinator answers itself rather than through tansu's route functions:
//! JoinGroup (it needs the request version, for `MEMBER_ID_REQUIRED`, and the client's
//! address, for DescribeGroups), DescribeGroups and ListGroups.

use std::net::SocketAddr;

use rama::{Context, Service};
use tansu_broker::Error;
use tansu_sans_io::{
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    list_groups_response::ListedGroup,
    ApiKey as _, Body, DescribeGroupsRequest, DescribeGroupsResponse, ErrorCode, Frame, Header,
    JoinGroupRequest, ListGroupsRequest, ListGroupsResponse,
};
use tansu_storage::Storage;

use super::{
    coordinator::{join_body, state_matches, Groups},
    machine::{GroupView, JoinRequest, State},
};
use crate::server::Builder;

/// The first JoinGroup version where a new member must rejoin with the id it is given
/// (KIP-394); librdkafka 1.4 and later handle `MEMBER_ID_REQUIRED`.
const MEMBER_ID_REQUIRED_SINCE: i16 = 4;

/// What a group that does not exist looks like to DescribeGroups, as Kafka answers.
const DEAD: &str = "Dead";

/// Kafka's "authorized operations not requested" marker.
const NO_AUTHORIZED_OPERATIONS: i32 = i32::MIN;

/// The only group type this coordinator runs (KIP-848's ListGroups v5 `GroupType`).
const CLASSIC: &str = "classic";

/// Adds JoinGroup, DescribeGroups and ListGroups over `groups` for a client at `peer`.
pub(crate) fn add<S: Storage>(
    builder: Builder,
    groups: &Groups<S>,
    peer: SocketAddr,
) -> Result<Builder, Error> {
    let route = GroupRoute {
        groups: groups.clone(),
        // Kafka's form of a client host in DescribeGroups.
        client_host: format!("/{}", peer.ip()),
    };
    [
        JoinGroupRequest::KEY,
        DescribeGroupsRequest::KEY,
        ListGroupsRequest::KEY,
    ]
    .into_iter()
    .try_fold(builder, |builder, key| {
        builder
            .with_route(key, route.clone().boxed())
            .map_err(Into::into)
    })
}

/// The keys [`add`] routes.
pub(crate) const KEYS: &[i16] = &[
    JoinGroupRequest::KEY,
    DescribeGroupsRequest::KEY,
    ListGroupsRequest::KEY,
];

#[derive(Clone, Debug)]
struct GroupRoute<S> {
    groups: Groups<S>,
    client_host: String,
}

impl<S: Storage> Service<(), Frame> for GroupRoute<S> {
    type Response = Frame;
    type Error = Error;

    async fn serve(&self, _ctx: Context<()>, req: Frame) -> Result<Frame, Error> {
        let correlation_id = req.correlation_id()?;
        let api_version = req.api_version()?;
        let client_id = req.client_id()?.map(str::to_owned).unwrap_or_default();
        let api_key = req.api_key()?;
        let body = if api_key == JoinGroupRequest::KEY {
            let join = JoinGroupRequest::try_from(req.body)?;
            self.join(api_version, client_id, join).await
        } else if api_key == DescribeGroupsRequest::KEY {
            self.describe(&DescribeGroupsRequest::try_from(req.body)?)
        } else if api_key == ListGroupsRequest::KEY {
            self.list(&ListGroupsRequest::try_from(req.body)?)
        } else {
            return Err(Error::UnsupportedApiService(api_key));
        };
        Ok(Frame {
            size: 0,
            header: Header::Response { correlation_id },
            body,
        })
    }
}

impl<S: Storage> GroupRoute<S> {
    async fn join(&self, api_version: i16, client_id: String, join: JoinGroupRequest) -> Body {
        let instance_id = join.group_instance_id.filter(|id| !id.is_empty());
        let fresh_member_id =
            Groups::<S>::member_id(instance_id.as_deref().unwrap_or(client_id.as_str()));
        let request = JoinRequest {
            member_id: join.member_id,
            instance_id,
            client_id,
            client_host: self.client_host.clone(),
            session_timeout_ms: join.session_timeout_ms.into(),
            rebalance_timeout_ms: join
                .rebalance_timeout_ms
                .unwrap_or(join.session_timeout_ms)
                .into(),
            protocol_type: join.protocol_type,
            protocols: join
                .protocols
                .unwrap_or_default()
                .into_iter()
                .map(|protocol| (protocol.name, protocol.metadata))
                .collect(),
            require_known_member_id: api_version >= MEMBER_ID_REQUIRED_SINCE,
            fresh_member_id,
        };
        join_body(self.groups.join_group(&join.group_id, request).await)
    }

    fn describe(&self, describe: &DescribeGroupsRequest) -> Body {
        let described = describe
            .groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|group_id| {
                let group = DescribedGroup::default()
                    .error_code(ErrorCode::None.into())
                    .group_id(group_id.clone())
                    .authorized_operations(Some(NO_AUTHORIZED_OPERATIONS));
                match self.groups.view(group_id) {
                    Some(view) => described(group, view),
                    None => group
                        .group_state(DEAD.to_owned())
                        .protocol_type(String::new())
                        .protocol_data(String::new())
                        .members(Some(Vec::new())),
                }
            })
            .collect();
        DescribeGroupsResponse::default()
            .throttle_time_ms(Some(0))
            .groups(Some(described))
            .into()
    }

    fn list(&self, list: &ListGroupsRequest) -> Body {
        let states = list.states_filter.as_deref().unwrap_or_default();
        let types = list.types_filter.as_deref().unwrap_or_default();
        let wants_classic =
            types.is_empty() || types.iter().any(|kind| kind.eq_ignore_ascii_case(CLASSIC));
        let listed = self
            .groups
            .views()
            .into_iter()
            .filter(|(_, view)| wants_classic && state_matches(view.state, states))
            .map(|(group_id, view)| {
                ListedGroup::default()
                    .group_id(group_id)
                    .protocol_type(view.protocol_type)
                    .group_state(Some(view.state.name().to_owned()))
                    .group_type(Some(CLASSIC.to_owned()))
            })
            .collect();
        ListGroupsResponse::default()
            .throttle_time_ms(Some(0))
            .error_code(ErrorCode::None.into())
            .groups(Some(listed))
            .into()
    }
}

fn described(group: DescribedGroup, view: GroupView) -> DescribedGroup {
    // As Kafka: members' metadata, assignments and the protocol only once they are
    // settled (Stable); ids, clients and hosts always.
    let settled = view.state == State::Stable;
    group
        .group_state(view.state.name().to_owned())
        .protocol_type(view.protocol_type)
        .protocol_data(if settled {
            view.protocol
        } else {
            String::new()
        })
        .members(Some(
            view.members
                .into_iter()
                .map(|member| {
                    DescribedGroupMember::default()
                        .member_id(member.member_id)
                        .group_instance_id(member.instance_id)
                        .client_id(member.client_id)
                        .client_host(member.client_host)
                        .member_metadata(if settled {
                            member.metadata
                        } else {
                            Default::default()
                        })
                        .member_assignment(if settled {
                            member.assignment
                        } else {
                            Default::default()
                        })
                })
                .collect(),
        ))
}
