//! The gRPC adapter of consumer groups: `sluice.v1.Groups` requests in, calls on the
//! [`Coordinator`], protobuf out. Errors become statuses through [`crate::grpc::status`].

use std::{sync::Arc, time::Duration};

use sluice_proto::v1::{self as pb, groups_server::Groups};
use tonic::{Request, Response, Status};

use sluice_groups::{Heartbeat, ResetTo, Strategy, TopicPartition};

use crate::{
    error::BrokerError,
    groups::{Coordinator, GroupDescription},
    grpc::status,
};

/// The tonic service; cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupsService {
    coordinator: Arc<Coordinator>,
    broker: Arc<crate::Broker>,
}

impl GroupsService {
    pub fn new(coordinator: Arc<Coordinator>, broker: Arc<crate::Broker>) -> Self {
        Self { coordinator, broker }
    }

    fn fail(&self, rpc: &str, e: BrokerError) -> Status {
        let status = status(e);
        let code = format!("{:?}", status.code());
        self.broker.metrics().errors.get_or_create(&crate::metrics::ErrorLabels { rpc: rpc.into(), code }).inc();
        status
    }
}

fn tp(p: &TopicPartition) -> pb::TopicPartition {
    pb::TopicPartition { topic: p.topic.clone(), partition: p.partition }
}

fn from_pb(p: pb::TopicPartition) -> TopicPartition {
    TopicPartition { topic: p.topic, partition: p.partition }
}

fn strategy(s: i32) -> Result<Option<Strategy>, Status> {
    match pb::AssignmentStrategy::try_from(s) {
        Ok(pb::AssignmentStrategy::Unspecified) => Ok(None),
        Ok(pb::AssignmentStrategy::Range) => Ok(Some(Strategy::Range)),
        Ok(pb::AssignmentStrategy::RoundRobin) => Ok(Some(Strategy::RoundRobin)),
        Ok(pb::AssignmentStrategy::CooperativeSticky) => Ok(Some(Strategy::CooperativeSticky)),
        Err(_) => Err(status(BrokerError::InvalidRequest(format!("unknown assignment strategy {s}")))),
    }
}

fn describe(d: GroupDescription, coordinator_id: i32) -> pb::DescribeGroupResponse {
    pb::DescribeGroupResponse {
        coordinator_id,
        group: d.group,
        state: d.state.as_str().to_string(),
        group_epoch: d.epoch,
        strategy: d.strategy.as_str().to_string(),
        members: d
            .members
            .into_iter()
            .map(|m| pb::MemberDescription {
                member_id: m.id,
                client_id: m.client_id,
                member_epoch: m.epoch,
                topics: m.topics,
                assignment: m.owned.iter().map(tp).collect(),
                target: m.target.iter().map(tp).collect(),
                last_heartbeat_ago_ms: m.last_heartbeat_ago.as_millis() as u64,
            })
            .collect(),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| pb::PartitionLag {
                topic: p.tp.topic,
                partition: p.tp.partition,
                committed: p.committed,
                log_end_offset: p.log_end,
                lag: p.lag,
                owner: p.owner.unwrap_or_default(),
            })
            .collect(),
        total_lag: d.total_lag,
    }
}

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn find_coordinator(
        &self,
        req: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        let c =
            self.coordinator.find_coordinator(&req.into_inner().group).map_err(|e| self.fail("find_coordinator", e))?;
        Ok(Response::new(pb::FindCoordinatorResponse {
            broker_id: c.broker_id,
            address: c.address,
            offsets_partition: c.partition,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let hb = Heartbeat {
            member_id: r.member_id,
            member_epoch: r.member_epoch,
            client_id: r.client_id,
            topics: r.topics.into_iter().collect(),
            owned: r.owned.into_iter().map(from_pb).collect(),
            session_timeout: Duration::from_millis(u64::from(r.session_timeout_ms)),
            strategy: strategy(r.strategy)?,
        };
        let out = self.coordinator.heartbeat(&r.group, hb).map_err(|e| self.fail("heartbeat", e))?;
        Ok(Response::new(pb::HeartbeatResponse {
            member_id: out.reply.member_id,
            member_epoch: out.reply.member_epoch,
            heartbeat_interval_ms: out.heartbeat_interval.as_millis() as u32,
            assignment: out.reply.assignment.iter().map(tp).collect(),
            reconciling: out.reply.reconciling,
            session_timeout_ms: out.session_timeout.as_millis() as u32,
        }))
    }

    async fn leave_group(
        &self,
        req: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        let r = req.into_inner();
        self.coordinator.leave(&r.group, &r.member_id).map_err(|e| self.fail("leave_group", e))?;
        Ok(Response::new(pb::LeaveGroupResponse {}))
    }

    async fn offset_commit(
        &self,
        req: Request<pb::OffsetCommitRequest>,
    ) -> Result<Response<pb::OffsetCommitResponse>, Status> {
        let r = req.into_inner();
        let offsets =
            r.offsets.into_iter().map(|o| (TopicPartition::new(&o.topic, o.partition), o.offset, o.metadata)).collect();
        self.coordinator
            .commit(&r.group, &r.member_id, r.member_epoch, offsets)
            .await
            .map_err(|e| self.fail("offset_commit", e))?;
        Ok(Response::new(pb::OffsetCommitResponse {}))
    }

    async fn offset_fetch(
        &self,
        req: Request<pb::OffsetFetchRequest>,
    ) -> Result<Response<pb::OffsetFetchResponse>, Status> {
        let r = req.into_inner();
        let tps: Vec<TopicPartition> = r.partitions.into_iter().map(from_pb).collect();
        let offsets = self
            .coordinator
            .fetch_offsets(&r.group, &tps)
            .map_err(|e| self.fail("offset_fetch", e))?
            .into_iter()
            .map(|(tp, c)| pb::CommittedOffset {
                topic: tp.topic,
                partition: tp.partition,
                offset: c.offset,
                metadata: c.metadata,
                commit_time_ms: c.commit_time_ms,
            })
            .collect();
        Ok(Response::new(pb::OffsetFetchResponse { offsets }))
    }

    async fn list_groups(
        &self,
        _req: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let groups = self
            .coordinator
            .list_groups()
            .map_err(|e| self.fail("list_groups", e))?
            .into_iter()
            .map(|g| pb::GroupSummary {
                group: g.group,
                state: g.state.as_str().to_string(),
                members: g.members as u32,
            })
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        req: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        let d = self.coordinator.describe(&req.into_inner().group).map_err(|e| self.fail("describe_group", e))?;
        let coordinator_id = self.broker.metadata().broker_id();
        Ok(Response::new(describe(d, coordinator_id)))
    }

    async fn delete_group(
        &self,
        req: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let n = self.coordinator.delete(&req.into_inner().group).await.map_err(|e| self.fail("delete_group", e))?;
        Ok(Response::new(pb::DeleteGroupResponse { offsets_deleted: n as u32 }))
    }

    async fn reset_offsets(
        &self,
        req: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        use pb::reset_offsets_request::To;
        let r = req.into_inner();
        let to = match r.to {
            Some(To::Earliest(_)) => ResetTo::Earliest,
            Some(To::Latest(_)) => ResetTo::Latest,
            Some(To::Offset(o)) => ResetTo::Offset(o),
            Some(To::TimestampMs(ts)) => ResetTo::Timestamp(ts),
            Some(To::ShiftBy(n)) => ResetTo::ShiftBy(n),
            None => return Err(status(BrokerError::InvalidRequest("say where to reset the offsets to".into()))),
        };
        let plan = self
            .coordinator
            .reset(&r.group, &r.topic, &r.partitions, to, r.dry_run)
            .await
            .map_err(|e| self.fail("reset_offsets", e))?
            .into_iter()
            .map(|l| pb::OffsetResetPlan {
                topic: l.tp.topic,
                partition: l.tp.partition,
                current: l.current,
                new_offset: l.new_offset,
                log_start_offset: l.log_start,
                log_end_offset: l.log_end,
                clamped: l.clamped,
            })
            .collect();
        Ok(Response::new(pb::ResetOffsetsResponse { plan, executed: !r.dry_run }))
    }
}
