//! ListGroups, DescribeGroups and DeleteGroups over the coordinator: classic groups,
//! consumer-protocol (KIP-848 style, gRPC) groups and groups that only have committed
//! offsets, as one list.

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest,
        ListGroupsResponse, ResponseKind,
        delete_groups_response::DeletableGroupResult,
        describe_groups_response::{DescribedGroup, DescribedGroupMember},
        list_groups_response::ListedGroup,
    },
    protocol::StrBytes,
};
use sluice_groups::GroupState;

use super::{
    Context,
    connection::{Answer, first_error},
    errors,
};
use crate::error::BrokerError;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// A KIP-848 style group's state in Kafka's classic vocabulary.
fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Reconciling => "PreparingRebalance",
        GroupState::Stable => "Stable",
    }
}

pub(super) fn list_groups(ctx: &Context, r: ListGroupsRequest) -> Answer {
    let classic = ctx.groups.classic_groups().unwrap_or_default();
    let body = match ctx.groups.list_groups() {
        Ok(all) => {
            let groups = all
                .into_iter()
                .map(|g| {
                    let state = match classic.iter().find(|c| c.id == g.group && !c.members.is_empty()) {
                        Some(c) => c.state.as_str(),
                        None => state_name(g.state),
                    };
                    ListedGroup::default()
                        .with_group_id(s(g.group).into())
                        .with_protocol_type(s("consumer"))
                        .with_group_state(s(state))
                })
                .filter(|g| {
                    r.states_filter.is_empty() || r.states_filter.iter().any(|f| f.eq_ignore_ascii_case(&g.group_state))
                })
                .collect();
            ListGroupsResponse::default().with_groups(groups)
        }
        Err(e) => ListGroupsResponse::default().with_error_code(errors::code(&e)),
    };
    let error = body.error_code;
    Answer::new(ResponseKind::ListGroups(body), error)
}

pub(super) fn describe_groups(ctx: &Context, r: DescribeGroupsRequest) -> Answer {
    let groups: Vec<DescribedGroup> = r
        .groups
        .iter()
        .map(|id| {
            let name = id.0.as_str();
            let out = DescribedGroup::default().with_group_id(id.clone());
            if let Ok(Some(c)) = ctx.groups.classic_group(name)
                && !c.members.is_empty()
            {
                let members = c
                    .members
                    .values()
                    .map(|m| {
                        let meta = m.protocols.iter().find(|(n, _)| *n == c.protocol).map(|(_, d)| d.clone());
                        DescribedGroupMember::default()
                            .with_member_id(s(m.id.clone()))
                            .with_client_id(s(m.client_id.clone()))
                            .with_client_host(s(m.client_host.clone()))
                            .with_member_metadata(Bytes::from(meta.unwrap_or_default()))
                            .with_member_assignment(Bytes::from(m.assignment.clone()))
                    })
                    .collect();
                return out
                    .with_group_state(s(c.state.as_str()))
                    .with_protocol_type(s(c.protocol_type.clone()))
                    .with_protocol_data(s(c.protocol.clone()))
                    .with_members(members);
            }
            match ctx.groups.describe(name) {
                Ok(d) => {
                    let members = d
                        .members
                        .iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(s(m.id.clone()))
                                .with_client_id(s(m.client_id.clone()))
                        })
                        .collect();
                    out.with_group_state(s(state_name(d.state)))
                        .with_protocol_type(s("consumer"))
                        .with_protocol_data(s(d.strategy.to_string()))
                        .with_members(members)
                }
                // Kafka describes a group it does not know as Dead, without an error.
                Err(BrokerError::GroupNotFound(_)) => out.with_group_state(s("Dead")),
                Err(e) => out.with_error_code(errors::code(&e)).with_error_message(errors::message(&e)),
            }
        })
        .collect();
    let error = first_error(groups.iter().map(|g| g.error_code));
    Answer::new(ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups)), error)
}

pub(super) async fn delete_groups(ctx: &Context, r: DeleteGroupsRequest) -> Answer {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for id in &r.groups_names {
        let code = match ctx.groups.delete(id.0.as_str()).await {
            Ok(_) => 0,
            Err(e) => errors::code(&e),
        };
        results.push(DeletableGroupResult::default().with_group_id(id.clone()).with_error_code(code));
    }
    let error = first_error(results.iter().map(|r| r.error_code));
    Answer::new(ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results)), error)
}
