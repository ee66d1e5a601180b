//! acks=-1 over the Kafka listener on a replicated partition: committed on the ISR when
//! it is large enough; NOT_ENOUGH_REPLICAS (19) with the ISR and the minimum in the
//! message once it is below `min.insync.replicas`; acks=1 still accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::cluster::{TestCluster, batch, offsets, wait_until};
use kafka_protocol::{
    messages::{
        ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
        produce_request::{PartitionProduceData, TopicProduceData},
    },
    protocol::{Decodable, Encodable, StrBytes},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const VERSION: i16 = 9;

/// One Produce of `records` to k-0 with `acks`; the partition's (error code, message).
async fn produce(s: &mut TcpStream, acks: i16, records: Bytes) -> (i16, String) {
    let p = PartitionProduceData::default().with_index(0).with_records(Some(records));
    let t =
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("k"))).with_partition_data(vec![p]);
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(20_000).with_topic_data(vec![t]);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .encode(&mut buf, ApiKey::Produce.request_header_version(VERSION))
        .unwrap();
    req.encode(&mut buf, VERSION).unwrap();
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    s.write_all(&buf).await.unwrap();
    let n = s.read_i32().await.unwrap();
    let mut body = vec![0; n as usize];
    s.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(VERSION)).unwrap();
    let r = ProduceResponse::decode(&mut body, VERSION).unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_acks_all_waits_for_the_isr_and_is_refused_below_min_isr() {
    let mut c = TestCluster::start_with(3, Duration::from_millis(1000), true).await;
    c.ctl.create_topic("k", 1, &[("min.insync.replicas", "2")], |_| vec![1, 2, 3]);
    c.sync();
    let mut s = TcpStream::connect(c.kafka_addr(1)).await.unwrap();
    assert_eq!(produce(&mut s, -1, batch("a", 3, None)).await, (0, String::new()));
    // acks=-1 answered: committed on the leader.
    assert_eq!(offsets(&c.broker(1), "k", 0), (3, 3));

    c.stop_broker(2).await;
    c.stop_broker(3).await;
    wait_until("the ISR shrinks to the leader", 60, || c.ctl.placement("k", 0).isr == [1]).await;
    let (code, message) = produce(&mut s, -1, batch("b", 3, None)).await;
    assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS: {message}");
    assert!(message.contains("1 in-sync replica(s) [1], fewer than min.insync.replicas=2"), "{message}");
    assert_eq!(produce(&mut s, 1, batch("c", 3, None)).await.0, 0, "acks=1 ignores min ISR");
    assert_eq!(offsets(&c.broker(1), "k", 0), (6, 3));
    c.shutdown().await;
}
