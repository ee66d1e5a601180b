//! Bad input gets a clear error and loses nothing: each case checks the exact gRPC
//! status code, the message a user sees, and the machine-readable error code; then
//! that the log is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::TestBroker;
use sluice_client::proto::{self, ErrorCode};
use sluice_core::BatchBuilder;
use sluice_proto::error_detail;
use tonic::Code;

fn batch(values: &[&[u8]]) -> Bytes {
    let mut b = BatchBuilder::default();
    for v in values {
        b.push(1_000, None, Some(v), &[]);
    }
    b.finish().unwrap()
}

fn produce(topic: &str, partition: u32, batch: Bytes) -> proto::ProduceRequest {
    proto::ProduceRequest {
        topic: topic.into(),
        partition,
        acks: proto::Acks::All as i32,
        batch,
        producer_id: -1,
        base_sequence: -1,
    }
}

fn fetch(topic: &str, partition: u32, offset: i64) -> proto::FetchRequest {
    proto::FetchRequest {
        topic: topic.into(),
        partition,
        offset,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
        replica_id: None,
        current_leader_epoch: None,
    }
}

#[track_caller]
fn assert_status(s: &tonic::Status, code: Code, error: ErrorCode, message: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(s.message(), message);
    let detail = error_detail(s).expect("an ErrorDetail in the status details");
    assert_eq!(detail.code, error as i32, "{detail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_request_gets_its_status_and_loses_nothing() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    admin
        .create_topic(
            "events",
            2,
            // Batches here carry 1970 timestamps: keep them forever, or retention deletes them.
            BTreeMap::from([
                ("max.message.bytes".to_string(), "1024".to_string()),
                ("retention.ms".to_string(), "-1".to_string()),
            ]),
        )
        .await
        .unwrap();
    let mut raw = broker.client().await.raw();
    let good = raw.produce(produce("events", 0, batch(&[b"a", b"b", b"c"]))).await.unwrap().into_inner();
    assert_eq!((good.base_offset, good.record_count), (Some(0), 3));

    // Unknown topic and partition.
    let s = raw.produce(produce("nope", 0, batch(&[b"x"]))).await.unwrap_err();
    assert_status(&s, Code::NotFound, ErrorCode::UnknownTopicOrPartition, "unknown topic 'nope'");
    let s = raw.produce(produce("events", 7, batch(&[b"x"]))).await.unwrap_err();
    assert_status(
        &s,
        Code::NotFound,
        ErrorCode::UnknownTopicOrPartition,
        "unknown partition 7 of topic 'events': it has partitions 0..2",
    );
    let s = raw.fetch(fetch("nope", 0, 0)).await.unwrap_err();
    assert_status(&s, Code::NotFound, ErrorCode::UnknownTopicOrPartition, "unknown topic 'nope'");

    // Corrupt batches: CRC mismatch, truncated, wrong record count, not a batch at all.
    let mut flipped = batch(&[b"hello"]).to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    let s = raw.produce(produce("events", 0, flipped.into())).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("corrupt batch: CRC mismatch: header 0x"), "{}", s.message());
    assert_eq!(error_detail(&s).unwrap().code, ErrorCode::CorruptBatch as i32);

    let whole = batch(&[b"hello", b"world"]);
    let s = raw.produce(produce("events", 0, whole.slice(..whole.len() - 3))).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        &format!(
            "corrupt batch: header says a batch length of {} bytes, the batch carries {} (truncated?)",
            whole.len() - 12,
            whole.len() - 15
        ),
    );

    let mut miscounted = batch(&[b"one", b"two"]).to_vec();
    miscounted[57..61].copy_from_slice(&3i32.to_be_bytes());
    miscounted[23..27].copy_from_slice(&2i32.to_be_bytes());
    recrc(&mut miscounted);
    let s = raw.produce(produce("events", 0, miscounted.into())).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "corrupt batch: header says 3 records, batch holds 2",
    );

    let s = raw.produce(produce("events", 0, Bytes::from_static(b"not a batch"))).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "corrupt batch: 11 bytes is shorter than the 61-byte batch header",
    );

    // Empty batches: no bytes, or a header with zero records.
    let s = raw.produce(produce("events", 0, Bytes::new())).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "empty batch: a batch must hold at least one record",
    );
    let s = raw.produce(produce("events", 0, BatchBuilder::default().finish().unwrap())).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::CorruptBatch,
        "empty batch: a batch must hold at least one record",
    );

    // Over max.message.bytes (1024 for this topic): one record, or many small ones.
    let big = batch(&[&[7u8; 2000]]);
    let s = raw.produce(produce("events", 0, big.clone())).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::RecordTooLarge,
        &format!("record of {} bytes exceeds max.message.bytes=1024", big.len()),
    );
    let many: Vec<&[u8]> = vec![&[1u8; 100]; 20];
    let many = batch(&many);
    let s = raw.produce(produce("events", 0, many.clone())).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::BatchTooLarge,
        &format!("batch of {} bytes exceeds max.message.bytes=1024", many.len()),
    );

    // Fetch out of range: negative, beyond the log end. The details carry the range.
    let s = raw.fetch(fetch("events", 0, -1)).await.unwrap_err();
    assert_status(
        &s,
        Code::OutOfRange,
        ErrorCode::OffsetOutOfRange,
        "offset -1 is out of range for events-0: valid offsets are 0 to 3",
    );
    let s = raw.fetch(fetch("events", 0, 4)).await.unwrap_err();
    assert_status(
        &s,
        Code::OutOfRange,
        ErrorCode::OffsetOutOfRange,
        "offset 4 is out of range for events-0: valid offsets are 0 to 3",
    );
    let d = error_detail(&s).unwrap();
    assert_eq!((d.log_start_offset, d.high_watermark), (0, 3));

    // Batches whose header or records are wrong in ways only a full check sees.
    for (bad, message) in bad_batches() {
        let s = raw.produce(produce("events", 0, bad.into())).await.unwrap_err();
        assert_status(&s, Code::InvalidArgument, ErrorCode::CorruptBatch, &message);
    }

    // Unknown acks value.
    let mut req = produce("events", 0, batch(&[b"x"]));
    req.acks = 9;
    let s = raw.produce(req).await.unwrap_err();
    assert_status(&s, Code::InvalidArgument, ErrorCode::InvalidRequest, "invalid request: unknown acks value 9");

    // Nothing was lost or added by all of the above.
    let t = admin.describe_topic("events").await.unwrap();
    assert_eq!(t.partitions[0].log_end_offset, 3);
    assert_eq!(t.partitions[0].batch_count, 1);
    let after = raw.produce(produce("events", 0, batch(&[b"d"]))).await.unwrap().into_inner();
    assert_eq!(after.base_offset, Some(3), "offsets continue without gaps");
    broker.stop().await;
}

/// Rewrites a batch's CRC (over attributes to the end) after a test changed it.
fn recrc(b: &mut [u8]) {
    let crc = crc32c_reference(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Kafka's zig-zag varint, written here independently of the implementation under test.
fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A v2 record: attributes, deltas, key (None = null), value "v", `headers` raw with
/// their count.
fn record(ts_delta: i64, offset_delta: i64, key: Option<&[u8]>, header_count: i64, headers: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    varint(&mut body, ts_delta);
    varint(&mut body, offset_delta);
    match key {
        Some(k) => {
            varint(&mut body, k.len() as i64);
            body.extend_from_slice(k);
        }
        None => varint(&mut body, -1),
    }
    varint(&mut body, 1);
    body.push(b'v');
    varint(&mut body, header_count);
    body.extend_from_slice(headers);
    let mut r = Vec::new();
    varint(&mut r, body.len() as i64);
    r.extend_from_slice(&body);
    r
}

/// A RecordBatch v2 built by hand: header fields as a producer writes them around
/// `records` (already encoded), with `attributes` and the CRC computed here.
fn raw_batch(records: &[Vec<u8>], attributes: i16, base_ts: i64, max_ts: i64) -> Vec<u8> {
    let n = records.len() as i32;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    b.extend_from_slice(&0i32.to_be_bytes()); // batchLength, below
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes()); // lastOffsetDelta
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    b.extend_from_slice(&n.to_be_bytes());
    assert_eq!(b.len(), 61);
    for r in records {
        b.extend_from_slice(r);
    }
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    recrc(&mut b);
    b
}

/// Each a batch a buggy producer could send, and the message it gets.
fn bad_batches() -> Vec<(Vec<u8>, String)> {
    let plain = |d| record(0, d, Some(b"k"), 0, &[]);
    let mut wrong_magic = raw_batch(&[plain(0)], 0, 1_000, 1_000);
    wrong_magic[16] = 1;
    let unknown_codec = raw_batch(&[plain(0)], 6, 1_000, 1_000);
    // Attributes say zstd, the payload is uncompressed records.
    let not_zstd = raw_batch(&[plain(0), plain(1)], 4, 1_000, 1_000);
    let gaps = raw_batch(&[plain(0), plain(5), plain(7)], 0, 1_000, 1_000);
    let mut long_key = plain(0);
    long_key[4] = 120; // the key's length: 60 bytes, in a record of a dozen
    let long_key = raw_batch(&[long_key], 0, 1_000, 1_000);
    let mut header = Vec::new();
    varint(&mut header, 2);
    header.extend_from_slice(&[0xc3, 0x28]); // not UTF-8
    varint(&mut header, -1);
    let bad_header = raw_batch(&[plain(0), record(0, 1, None, 1, &header)], 0, 1_000, 1_000);
    let negative_ts = raw_batch(&[plain(0), record(-2_000, 1, None, 0, &[])], 0, 1_000, 1_000);
    let negative_base = raw_batch(&[plain(0)], 0, -1, -1);
    vec![
        (wrong_magic, "corrupt batch: unknown magic byte 1 (expected 2: Kafka RecordBatch v2)".into()),
        (
            unknown_codec,
            "corrupt batch: unknown compression codec 6 (attributes 0x0006; Kafka defines 0 none, 1 gzip, \
             2 snappy, 3 lz4, 4 zstd)"
                .into(),
        ),
        (not_zstd, "corrupt batch: the zstd payload does not decompress: Unknown frame descriptor".into()),
        (gaps, "corrupt batch: record 1: offset delta 5, expected 1 (offset deltas run 0..2 in order)".into()),
        (long_key, "corrupt batch: record 0: its key of 60 bytes runs past the record's end".into()),
        (
            bad_header,
            "corrupt batch: record 1: header 0: its key is not UTF-8 (invalid utf-8 sequence of 1 bytes from \
             index 0)"
                .into(),
        ),
        (negative_ts, "corrupt batch: record 1: timestamp 1000 + -2000 is negative or overflows".into()),
        (negative_base, "corrupt batch: negative base timestamp -1".into()),
    ]
}

/// Bitwise CRC-32C (Castagnoli), independent of the crate the format uses.
fn crc32c_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_errors_are_clear() {
    let broker = TestBroker::start().await;
    let mut raw = broker.client().await.raw();
    let create = |name: &str, partitions: u32, config: &[(&str, &str)]| proto::CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor: 0,
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    raw.create_topic(create("payments", 3, &[])).await.unwrap();

    let s = raw.create_topic(create("payments", 3, &[])).await.unwrap_err();
    assert_status(&s, Code::AlreadyExists, ErrorCode::TopicAlreadyExists, "topic 'payments' already exists");

    for (name, message) in [
        ("", "invalid topic name '': the name is empty"),
        (".", "invalid topic name '.': '.' and '..' are not allowed"),
        ("..", "invalid topic name '..': '.' and '..' are not allowed"),
        (
            "bad/name",
            "invalid topic name 'bad/name': character '/' is not allowed (use letters, digits, '.', '_' and '-')",
        ),
        ("__internal", "invalid topic name '__internal': names starting with '__' are reserved for internal topics"),
    ] {
        let s = raw.create_topic(create(name, 1, &[])).await.unwrap_err();
        assert_status(&s, Code::InvalidArgument, ErrorCode::InvalidTopicName, message);
    }
    let long = "x".repeat(250);
    let s = raw.create_topic(create(&long, 1, &[])).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::InvalidTopicName,
        &format!("invalid topic name '{long}': 250 characters, the limit is 249"),
    );

    let s = raw.create_topic(create("cfg", 1, &[("retention.ms", "soon")])).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::InvalidConfig,
        "invalid config: retention.ms=soon: expected a non-negative number or -1 for unlimited",
    );
    let s = raw.create_topic(create("cfg", 1, &[("colour", "red")])).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::InvalidConfig,
        "invalid config: unknown topic config key 'colour' (known: retention.ms, retention.bytes, max.message.bytes, durability, compression.type, min.insync.replicas, unclean.leader.election.enable)",
    );
    let s = raw.create_topic(create("cfg", 1, &[("compression.type", "gzip")])).await.unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::InvalidConfig,
        "invalid config: compression.type=gzip: only 'producer' is supported: brokers store batches as the \
         producer compressed them and never recompress (set the codec on the producer)",
    );
    raw.create_topic(create("cfg", 1, &[("compression.type", "producer")])).await.unwrap();
    let s = raw
        .alter_topic_config(proto::AlterTopicConfigRequest {
            name: "payments".into(),
            set: [("durability".to_string(), "sometimes".to_string())].into(),
        })
        .await
        .unwrap_err();
    assert_status(
        &s,
        Code::InvalidArgument,
        ErrorCode::InvalidConfig,
        "invalid config: durability=sometimes: durability must be 'interval' or 'always', not 'sometimes'",
    );
    let s = raw.delete_topic(proto::DeleteTopicRequest { name: "ghost".into() }).await.unwrap_err();
    assert_status(&s, Code::NotFound, ErrorCode::UnknownTopicOrPartition, "unknown topic 'ghost'");
    let s = raw.describe_topic(proto::DescribeTopicRequest { name: "ghost".into() }).await.unwrap_err();
    assert_status(&s, Code::NotFound, ErrorCode::UnknownTopicOrPartition, "unknown topic 'ghost'");

    // Delete then recreate: the new topic starts empty at offset 0.
    let producer = sluice_client::Producer::new(broker.client().await, Default::default());
    producer.send(sluice_client::ProducerRecord::new("payments").partition(0).value("x")).await.unwrap().await.unwrap();
    raw.delete_topic(proto::DeleteTopicRequest { name: "payments".into() }).await.unwrap();
    raw.create_topic(create("payments", 1, &[])).await.unwrap();
    let d = raw.describe_topic(proto::DescribeTopicRequest { name: "payments".into() }).await.unwrap().into_inner();
    assert_eq!(d.topic.unwrap().partitions[0].log_end_offset, 0);
    broker.stop().await;
}
