//! The Kafka listener over a raw TcpStream, with requests encoded by `kafka-protocol`:
//! ApiVersions (also for a version the broker does not speak), Produce and Fetch with
//! the batch passing through untouched, the Fetch long poll, acks=0 getting no answer,
//! and bad input (garbage, a 2 GiB length, an unknown API key, an unsupported version, a
//! request cut in the middle) closing only its own connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use common::TestBroker;
use kafka_protocol::{
    messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
        MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
        fetch_request::{FetchPartition, FetchTopic},
        metadata_request::MetadataRequestTopic,
        produce_request::{PartitionProduceData, TopicProduceData},
    },
    protocol::{Decodable, Encodable, StrBytes},
};
use sluice_broker::kafka::KafkaConfig;
use sluice_core::{BatchBuilder, Header};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout},
};

async fn broker() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| c.kafka = Some(KafkaConfig::new("127.0.0.1:0".parse().unwrap()))).await;
    let addr = b.handle.as_ref().unwrap().kafka_addr.unwrap();
    (b, addr)
}

fn frame<R: Encodable>(api: ApiKey, version: i16, correlation: i32, body: &R) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    buf.freeze()
}

/// Reads one response; returns its correlation id and body bytes.
async fn read_response(s: &mut TcpStream, api: ApiKey, version: i16) -> (i32, Bytes) {
    let n = s.read_i32().await.unwrap();
    let mut body = vec![0; n as usize];
    s.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    let h = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    (h.correlation_id, body)
}

async fn call<Req: Encodable, Resp: Decodable>(s: &mut TcpStream, api: ApiKey, version: i16, req: &Req) -> Resp {
    s.write_all(&frame(api, version, 7, req)).await.unwrap();
    let (correlation, mut body) = read_response(s, api, version).await;
    assert_eq!(correlation, 7);
    Resp::decode(&mut body, version).unwrap()
}

/// True when the broker closed the connection (EOF or reset) within 5 s.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(timeout(Duration::from_secs(5), s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::default();
    for v in values {
        let h = Header { key: "h".into(), value: Some(Bytes::from_static(b"v")) };
        b.push(1_700_000_000_000, Some(b"k"), Some(v.as_bytes()), &[h]);
    }
    b.finish().unwrap()
}

fn produce_request(topic: &str, acks: i16, records: Bytes) -> ProduceRequest {
    let p = PartitionProduceData::default().with_index(0).with_records(Some(records));
    let t = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_data(vec![p]);
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![t])
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let p = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
        .with_current_leader_epoch(-1);
    let t = FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![p]);
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![t])
}

#[tokio::test]
async fn api_versions_answers_every_version_including_one_it_does_not_speak() {
    let (b, addr) = broker().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(r.error_code, 0);
    let produce = r.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).expect("Produce advertised");
    assert_eq!((produce.min_version, produce.max_version), (3, 9));

    // A version from the future: UNSUPPORTED_VERSION in a v0 answer, with the ranges.
    let mut future = BytesMut::new();
    future.put_i32(0);
    future.put_i16(ApiKey::ApiVersions as i16);
    future.put_i16(99);
    future.put_i32(42);
    future.put_i16(-1);
    future.put_bytes(0, 8);
    let n = (future.len() - 4) as i32;
    future[..4].copy_from_slice(&n.to_be_bytes());
    s.write_all(&future).await.unwrap();
    let (correlation, mut body) = read_response(&mut s, ApiKey::ApiVersions, 0).await;
    assert_eq!(correlation, 42);
    let r = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
    // The connection stays usable, as with Kafka.
    let md: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default()).await;
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[0].port, i32::from(addr.port()));
    b.stop().await;
}

#[tokio::test]
async fn a_produced_batch_is_fetched_byte_for_byte_and_long_polls_wake_on_produce() {
    let (b, addr) = broker().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Metadata auto-creates the topic (auto.create.topics.enable).
    let want = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("raw"))));
    let md: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![want])).with_allow_auto_topic_creation(true),
    )
    .await;
    assert_eq!((md.topics[0].error_code, md.topics[0].partitions.len()), (0, 1), "{md:?}");

    let sent = batch(&["a", "b", "c"]);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_request("raw", -1, sent.clone())).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{p:?}");

    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_request("raw", 0, 0)).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark, p.log_start_offset), (0, 3, 0));
    let got = p.records.clone().unwrap();
    // Byte for byte, but for the base offset (0 here as in the producer's batch) and the
    // partition leader epoch (bytes 12..16: 0 standalone), both outside the CRC.
    let mut want = sent.to_vec();
    want[12..16].copy_from_slice(&0i32.to_be_bytes());
    assert_eq!(got, want);

    // A long poll at the end waits, and wakes when another connection produces.
    let poller = tokio::spawn(async move {
        let started = Instant::now();
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_request("raw", 3, 30_000)).await;
        (started.elapsed(), r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poller.is_finished(), "the fetch waits while there is nothing past offset 3");
    let mut other = TcpStream::connect(addr).await.unwrap();
    let _: ProduceResponse = call(&mut other, ApiKey::Produce, 9, &produce_request("raw", 1, batch(&["d"]))).await;
    let (waited, r) = poller.await.unwrap();
    // Woken by the produce, not by its 30 s max wait (a loaded machine may be slow to
    // send the fetch or to wake it, never by most of 30 s).
    println!("the long poll waited {waited:?}");
    assert!(waited < Duration::from_secs(25), "{waited:?}");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 4);
    assert!(!p.records.as_ref().unwrap().is_empty());

    // Unknown topics and partitions are per-partition errors.
    let r: FetchResponse = call(&mut other, ApiKey::Fetch, 12, &fetch_request("nope", 0, 0)).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 3);
    let r: FetchResponse = call(&mut other, ApiKey::Fetch, 12, &fetch_request("raw", 99, 0)).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 1, "offset out of range");
    b.stop().await;
}

#[tokio::test]
async fn acks_zero_gets_no_answer_and_the_next_request_is_answered_in_order() {
    let (b, addr) = broker().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    b.admin().await.create_topic("quiet", 1, Default::default()).await.unwrap();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&frame(ApiKey::Produce, 9, 1, &produce_request("quiet", 0, batch(&["x"]))));
    buf.extend_from_slice(&frame(ApiKey::ApiVersions, 3, 2, &ApiVersionsRequest::default()));
    s.write_all(&buf).await.unwrap();
    let (correlation, _) = read_response(&mut s, ApiKey::ApiVersions, 3).await;
    assert_eq!(correlation, 2, "the acks=0 produce must not be answered");
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch_request("quiet", 0, 1000)).await;
    assert_eq!(r.responses[0].partitions[0].high_watermark, 1);
    b.stop().await;
}

#[tokio::test]
async fn bad_input_closes_only_its_own_connection() {
    let (b, addr) = broker().await;
    let mut healthy = TcpStream::connect(addr).await.unwrap();

    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed(&mut garbage).await, "garbage");

    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(&0x7fff_ffffu32.to_be_bytes()).await.unwrap();
    assert!(closed(&mut huge).await, "2 GiB length prefix");

    let mut unknown = TcpStream::connect(addr).await.unwrap();
    let mut f = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default()).to_vec();
    f[4..6].copy_from_slice(&999i16.to_be_bytes());
    unknown.write_all(&f).await.unwrap();
    assert!(closed(&mut unknown).await, "unknown API key");

    let mut unsupported = TcpStream::connect(addr).await.unwrap();
    let mut f = frame(ApiKey::Produce, 9, 1, &produce_request("t", 1, batch(&["x"]))).to_vec();
    f[6..8].copy_from_slice(&2i16.to_be_bytes());
    unsupported.write_all(&f).await.unwrap();
    assert!(closed(&mut unsupported).await, "Produce v2 (message sets before RecordBatch v2)");

    let mut malformed = TcpStream::connect(addr).await.unwrap();
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(12);
    f.put_i32(1);
    f.put_i16(400); // a client id longer than the frame
    malformed.write_all(&f).await.unwrap();
    assert!(closed(&mut malformed).await, "a header that does not decode");

    let mut cut = TcpStream::connect(addr).await.unwrap();
    let whole = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    cut.write_all(&whole[..whole.len() / 2]).await.unwrap();
    drop(cut);

    // The healthy connection, opened before all of it, still works, and so do new ones.
    let r: ApiVersionsResponse = call(&mut healthy, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(r.error_code, 0);
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    let md: MetadataResponse = call(&mut fresh, ApiKey::Metadata, 4, &MetadataRequest::default()).await;
    assert_eq!(md.controller_id, 0);
    let metrics = b.handle.as_ref().unwrap().broker().metrics().encode();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("sluice_kafka_connections_refused_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 5.0, "{metrics}");
    assert!(metrics.contains("sluice_kafka_requests_total{api=\"ApiVersions\",error=\"NONE\"}"), "{metrics}");
    b.stop().await;
}
