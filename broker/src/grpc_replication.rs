//! The gRPC adapter of replication: `sluice.v1.Replication` requests in, the leader's
//! answers (`crate::replication::serve`) out. Per-partition refusals travel in the
//! answer; the call itself fails only when the broker refuses the whole request.

use std::sync::Arc;

use sluice_proto::v1::{self as pb, replication_server::Replication};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::{Broker, replication::serve};

/// The tonic service; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    broker: Arc<Broker>,
}

impl ReplicationService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn replica_fetch(
        &self,
        req: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<pb::ReplicaFetchResponse>, Status> {
        let r = req.into_inner();
        let span = info_span!("replica_fetch", replica = r.replica_id, partitions = r.partitions.len());
        Ok(Response::new(serve::replica_fetch(&self.broker, r).instrument(span).await))
    }

    async fn offset_for_leader_epoch(
        &self,
        req: Request<pb::OffsetForLeaderEpochRequest>,
    ) -> Result<Response<pb::OffsetForLeaderEpochResponse>, Status> {
        let r = req.into_inner();
        let _span =
            info_span!("offset_for_leader_epoch", replica = r.replica_id, partitions = r.partitions.len()).entered();
        Ok(Response::new(serve::offset_for_leader_epoch(&self.broker, r)))
    }
}
