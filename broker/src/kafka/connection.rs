//! One Kafka connection: a reader task decodes frames one ahead of the handler, the
//! handler answers requests strictly in order (Kafka's per-connection guarantee, which
//! clients rely on for produce ordering), and writes are flushed when no request is
//! waiting. Bad input closes this connection and nothing else.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::{
    io::{AsyncWriteExt, BufReader, BufWriter},
    net::TcpStream,
    sync::{mpsc, watch},
};
use tracing::{Instrument, debug, info_span, warn};

use super::{
    Context, admin,
    codec::{self, FrameError},
    errors, fetch, groups, groups_admin, metadata, produce, versions,
};
use crate::metrics::KafkaRequestLabels;

/// A handler's answer: the response (none for a Produce with acks=0, which Kafka never
/// answers) and the error code it counts under (the first error in it, 0 for none).
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Option<ResponseKind>,
    pub error: i16,
}

impl Answer {
    pub fn new(body: ResponseKind, error: i16) -> Self {
        Self { body: Some(body), error }
    }

    pub fn silent(error: i16) -> Self {
        Self { body: None, error }
    }
}

/// The first non-zero code, else 0.
pub(crate) fn first_error(codes: impl IntoIterator<Item = i16>) -> i16 {
    codes.into_iter().find(|c| *c != 0).unwrap_or(0)
}

pub(crate) async fn serve(ctx: Arc<Context>, socket: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let (rd, wr) = socket.into_split();
    let limit = ctx.config.max_request_bytes;
    // One frame read ahead: decoding overlaps handling, and at most two requests of a
    // connection are in memory.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, FrameError>>(1);
    let reader = tokio::spawn(async move {
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        loop {
            let frame = codec::read_frame(&mut rd, limit).await;
            let end = frame.is_err();
            if tx.send(frame).await.is_err() || end {
                return;
            }
        }
    });
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = stop.wait_for(|s| *s) => break,
        };
        let frame = match frame {
            None | Some(Err(FrameError::Closed)) => break,
            Some(Err(e)) => {
                refuse(&ctx, peer, &e);
                break;
            }
            Some(Ok(f)) => f,
        };
        let out = match handle(&ctx, frame).await {
            Ok(out) => out,
            Err(e) => {
                refuse(&ctx, peer, &e);
                break;
            }
        };
        if let Some(out) = out
            && let Err(e) = wr.write_all(&out).await
        {
            debug!(%peer, error = %e, "kafka connection write failed");
            break;
        }
        if rx.is_empty() && wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    reader.abort();
}

fn refuse(ctx: &Context, peer: SocketAddr, e: &FrameError) {
    if matches!(e, FrameError::Io(_)) {
        debug!(%peer, error = %e, "kafka connection ended");
        return;
    }
    ctx.broker.metrics().kafka_connections_refused.inc();
    warn!(%peer, error = %e, "closing kafka connection: bad request");
}

/// Decodes one frame, handles it, encodes the answer. `Ok(None)`: nothing to send.
async fn handle(ctx: &Context, frame: Bytes) -> Result<Option<Bytes>, FrameError> {
    let (key, version) = codec::peek_api(&frame)?;
    let api = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey(key))?;
    if !versions::supports(api, version) {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with the supported ranges; the client picks one.
            let correlation = codec::peek_correlation_id(&frame);
            let body = ResponseKind::ApiVersions(versions::api_versions(35));
            count(ctx, api, 35);
            return encode(ApiKey::ApiVersions, 0, correlation, &body).map(Some);
        }
        return Err(FrameError::UnsupportedVersion { api, version });
    }
    let req = codec::decode(frame, api, version)?;
    let correlation = req.header.correlation_id;
    let client = req.header.client_id.as_ref().map(|c| c.as_str().to_string()).unwrap_or_default();
    let span = info_span!("kafka", api = ?api, version, correlation_id = correlation, client_id = %client);
    let answer = dispatch(ctx, api, req.body, version).instrument(span).await?;
    count(ctx, api, answer.error);
    match answer.body {
        Some(body) => encode(api, version, correlation, &body).map(Some),
        None => Ok(None),
    }
}

fn encode(api: ApiKey, version: i16, correlation: i32, body: &ResponseKind) -> Result<Bytes, FrameError> {
    codec::encode(api, version, correlation, body).map_err(|e| FrameError::Malformed {
        api,
        version,
        why: format!("the response does not encode: {e:#}"),
    })
}

fn count(ctx: &Context, api: ApiKey, error: i16) {
    let labels = KafkaRequestLabels { api: format!("{api:?}"), error: errors::label(error) };
    ctx.broker.metrics().kafka_requests.get_or_create(&labels).inc();
}

async fn dispatch(ctx: &Context, api: ApiKey, body: RequestKind, version: i16) -> Result<Answer, FrameError> {
    Ok(match body {
        RequestKind::ApiVersions(_) => Answer::new(ResponseKind::ApiVersions(versions::api_versions(0)), 0),
        RequestKind::Metadata(r) => metadata::metadata(ctx, r, version),
        RequestKind::DescribeCluster(r) => metadata::describe_cluster(ctx, r),
        RequestKind::Produce(r) => produce::produce(ctx, r, version).await,
        RequestKind::InitProducerId(r) => produce::init_producer_id(ctx, r).await,
        RequestKind::Fetch(r) => fetch::fetch(ctx, r, version).await,
        RequestKind::ListOffsets(r) => fetch::list_offsets(ctx, r, version),
        RequestKind::OffsetForLeaderEpoch(r) => fetch::offset_for_leader_epoch(ctx, r),
        RequestKind::FindCoordinator(r) => groups::find_coordinator(ctx, r, version),
        RequestKind::JoinGroup(r) => groups::join_group(ctx, r, version).await,
        RequestKind::SyncGroup(r) => groups::sync_group(ctx, r, version).await,
        RequestKind::Heartbeat(r) => groups::heartbeat(ctx, r),
        RequestKind::LeaveGroup(r) => groups::leave_group(ctx, r, version),
        RequestKind::OffsetCommit(r) => groups::offset_commit(ctx, r).await,
        RequestKind::OffsetFetch(r) => groups::offset_fetch(ctx, r, version),
        RequestKind::ListGroups(r) => groups_admin::list_groups(ctx, r),
        RequestKind::DescribeGroups(r) => groups_admin::describe_groups(ctx, r),
        RequestKind::DeleteGroups(r) => groups_admin::delete_groups(ctx, r).await,
        RequestKind::CreateTopics(r) => admin::create_topics(ctx, r, version),
        RequestKind::DeleteTopics(r) => admin::delete_topics(ctx, r, version),
        RequestKind::CreatePartitions(r) => admin::create_partitions(ctx, r),
        RequestKind::DescribeConfigs(r) => admin::describe_configs(ctx, r),
        RequestKind::IncrementalAlterConfigs(r) => admin::incremental_alter_configs(ctx, r),
        // `versions::SUPPORTED` lists exactly the arms above.
        _ => return Err(FrameError::UnsupportedVersion { api, version }),
    })
}
