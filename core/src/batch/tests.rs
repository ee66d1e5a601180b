//! Unit tests of the batch format: round trips with every codec, the header layout, each
//! refusal of the validator, and a bounded proptest over decode and validate.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::{compression::Compression, record::Header, varint};

fn sample(n: u32, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(codec, 1024);
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("{{\"value\":{i},\"text\":\"some repeated text\"}}");
        let headers = if i % 2 == 0 {
            vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"x")) }]
        } else {
            vec![Header { key: "null".into(), value: None }]
        };
        let k = (i % 3 != 0).then_some(key.as_bytes());
        b.push(1_000 + i64::from(i), k, Some(value.as_bytes()), &headers);
    }
    b.finish().expect("finish")
}

fn err(batch: &[u8]) -> String {
    validate(batch, 1 << 20).expect_err("refused").to_string()
}

/// Rewrites the CRC after a test changed bytes it covers.
fn recrc(b: &mut [u8]) {
    let crc = compute_crc(b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A batch around hand-made record bodies (each without its length prefix).
fn raw_batch(bodies: &[Vec<u8>], base_ts: i64, max_ts: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for body in bodies {
        varint::put_i64(&mut records, body.len() as i64);
        records.extend_from_slice(body);
    }
    let n = bodies.len() as i32;
    let mut b = vec![0u8; HEADER_LEN];
    b.extend_from_slice(&records);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
    b[27..35].copy_from_slice(&base_ts.to_be_bytes());
    b[35..43].copy_from_slice(&max_ts.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&n.to_be_bytes());
    recrc(&mut b);
    b
}

/// A record body: attributes, deltas, key, value, then raw header bytes.
fn body(ts_delta: i64, offset_delta: i64, key: Option<&[u8]>, headers: &[u8], header_count: i64) -> Vec<u8> {
    let mut v = vec![0u8];
    varint::put_i64(&mut v, ts_delta);
    varint::put_i64(&mut v, offset_delta);
    match key {
        Some(k) => {
            varint::put_i64(&mut v, k.len() as i64);
            v.extend_from_slice(k);
        }
        None => varint::put_i64(&mut v, -1),
    }
    varint::put_i64(&mut v, 1);
    v.push(b'v');
    varint::put_i64(&mut v, header_count);
    v.extend_from_slice(headers);
    v
}

#[test]
fn every_codec_round_trips() {
    for codec in Compression::ALL {
        let batch = sample(10, codec);
        let info = validate(&batch, 1 << 20).expect("valid");
        assert_eq!((info.record_count, info.compression), (10, codec));
        assert_eq!((info.first_timestamp_ms, info.max_timestamp_ms), (1_000, 1_009));
        let mut stored = batch.to_vec();
        set_base_offset(&mut stored, 500);
        set_partition_leader_epoch(&mut stored, 7);
        validate(&stored, 1 << 20).expect("base offset and epoch lie outside the CRC");
        let b = Batches::new(Bytes::from(stored)).next().expect("one").expect("batch");
        b.verify().expect("verify");
        assert_eq!((b.header.partition_leader_epoch, b.header.next_offset()), (7, 510));
        let records: Vec<_> = b.records().expect("records").collect::<Result<_, _>>().expect("decode");
        assert_eq!(records.len(), 10);
        assert_eq!((records[3].offset, records[3].timestamp_ms, records[3].key.as_ref()), (503, 1_003, None));
        assert_eq!(records[4].key.as_deref(), Some(&b"k4"[..]));
        assert_eq!(records[4].headers, vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"x")) }]);
        assert_eq!(records[5].headers, vec![Header { key: "null".into(), value: None }]);
    }
}

#[test]
fn an_idempotent_batch_carries_its_producer_fields_inside_the_crc() {
    let mut b = BatchBuilder::new(Compression::None, 1024);
    b.push(1_000, None, Some(b"v"), &[]);
    b.push(1_001, None, Some(b"w"), &[]);
    b.set_producer(42 << 40, 3, i32::MAX - 1);
    let batch = b.finish().expect("finish");
    let h = BatchHeader::parse(&batch).expect("header");
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42 << 40, 3, i32::MAX - 1));
    assert_eq!(h.crc, crc32c::crc32c(&batch[21..]));
    let info = validate(&batch, 1 << 20).expect("valid");
    assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (42 << 40, 3, i32::MAX - 1));
    let mut no_epoch = BatchBuilder::new(Compression::None, 1024);
    no_epoch.push(1_000, None, Some(b"v"), &[]);
    no_epoch.set_producer(7, -1, 0);
    let err = validate(&no_epoch.finish().expect("finish"), 1 << 20).expect_err("no epoch").to_string();
    assert_eq!(err, "corrupt batch: producer id 7 comes with producer epoch -1 (an idempotent batch needs an epoch)");
}

#[test]
fn header_is_kafkas_layout() {
    let batch = sample(3, Compression::Gzip);
    let h = BatchHeader::parse(&batch).expect("header");
    assert_eq!(h.size(), batch.len());
    assert_eq!((h.base_offset, h.partition_leader_epoch, h.magic), (0, -1, 2));
    assert_eq!((h.attributes, h.last_offset_delta, h.record_count), (1, 2, 3));
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (-1, -1, -1));
    assert_eq!(&batch[8..12], &((batch.len() - 12) as i32).to_be_bytes());
    assert_eq!(h.crc, crc32c::crc32c(&batch[21..]));
}

#[test]
fn record_size_bounds_the_encoding() {
    let mut b = BatchBuilder::default();
    let before = b.size_bytes();
    b.push(0, Some(b"key"), Some(&[7u8; 300]), &[]);
    assert!(BatchBuilder::record_size(0, Some(b"key"), Some(&[7u8; 300]), &[]) >= b.size_bytes() - before);
}

#[test]
fn empty_short_and_oversized_batches() {
    assert_eq!(validate(&[], 100), Err(BatchError::Empty));
    let empty = BatchBuilder::default().finish().expect("finish");
    assert_eq!(validate(&empty, 100), Err(BatchError::Empty));
    let batch = sample(3, Compression::None);
    assert_eq!(err(&batch[..10]), "corrupt batch: 10 bytes is shorter than the 61-byte batch header");
    assert!(err(&batch[..batch.len() - 4]).contains("(truncated?)"));
    let mut one = BatchBuilder::default();
    one.push(0, None, Some(&[0u8; 200]), &[]);
    let one = one.finish().expect("finish");
    assert!(matches!(validate(&one, 100), Err(BatchError::RecordTooLarge { max: 100, .. })));
    assert!(matches!(validate(&sample(50, Compression::None), 100), Err(BatchError::BatchTooLarge { .. })));
    let mut two = batch.to_vec();
    two.extend_from_slice(&batch);
    assert!(err(&two).contains("a produce request carries exactly one batch"));
}

#[test]
fn header_faults_are_named() {
    let batch = sample(3, Compression::None).to_vec();
    let mut b = batch.clone();
    b[MAGIC_AT] = 1;
    assert_eq!(err(&b), "corrupt batch: unknown magic byte 1 (expected 2: Kafka RecordBatch v2)");
    let mut b = batch.clone();
    *b.last_mut().expect("byte") ^= 0x55;
    assert!(err(&b).starts_with("corrupt batch: CRC mismatch: header 0x"));
    for (attr, want) in [
        (5i16, "unknown compression codec 5"),
        (1 << 5, "control batches"),
        (1 << 3, "LogAppendTime"),
        (1 << 4, "transactional"),
    ] {
        let mut b = batch.clone();
        b[21..23].copy_from_slice(&attr.to_be_bytes());
        recrc(&mut b);
        assert!(err(&b).contains(want), "{attr}: {}", err(&b));
    }
    let mut b = batch.clone();
    b[57..61].copy_from_slice(&4i32.to_be_bytes());
    recrc(&mut b);
    assert_eq!(err(&b), "corrupt batch: lastOffsetDelta is 2, but the batch holds 4 records (expected 3)");
    b[23..27].copy_from_slice(&3i32.to_be_bytes());
    recrc(&mut b);
    assert_eq!(err(&b), "corrupt batch: header says 4 records, batch holds 3");
    let mut b = batch.clone();
    b[35..43].copy_from_slice(&5_000i64.to_be_bytes());
    recrc(&mut b);
    assert!(err(&b).contains("max timestamp 5000 in the header, but the latest record timestamp is 1002"));
    let mut b = batch;
    b[43..51].copy_from_slice(&9i64.to_be_bytes());
    recrc(&mut b);
    assert!(err(&b).contains("producer id 9 comes with base sequence -1"));
}

#[test]
fn record_faults_name_the_record() {
    let ok = |d| body(0, d, Some(b"k"), &[], 0);
    let b = raw_batch(&[ok(0), ok(5), ok(7)], 10, 10);
    assert!(err(&b).contains("record 1: offset delta 5, expected 1"), "{}", err(&b));
    let mut long_key = body(0, 0, Some(b"k"), &[], 0);
    long_key[3] = 40; // key length 20, in a record of a dozen bytes
    assert!(err(&raw_batch(&[long_key], 10, 10)).contains("record 0: its key of 20 bytes runs past the record's end"));
    let mut header = Vec::new();
    varint::put_i64(&mut header, 2);
    header.extend_from_slice(&[0xff, 0xfe]);
    varint::put_i64(&mut header, -1);
    let b = raw_batch(&[body(0, 0, None, &header, 1)], 10, 10);
    assert!(err(&b).contains("record 0: header 0: its key is not UTF-8"), "{}", err(&b));
    let b = raw_batch(&[body(0, 0, None, &[], 0), body(-20, 1, None, &[], 0)], 10, 10);
    assert!(err(&b).contains("record 1: timestamp 10 + -20 is negative"), "{}", err(&b));
    assert!(err(&raw_batch(&[ok(0)], -5, -5)).contains("negative base timestamp -5"));
    let mut trailing = body(0, 0, None, &[], 0);
    trailing.push(0);
    assert!(err(&raw_batch(&[trailing], 0, 0)).contains("record 0: 1 bytes after its last header"));
}

#[test]
fn compressed_payload_that_does_not_decompress() {
    let mut b = raw_batch(&[body(0, 0, None, &[], 0)], 0, 0);
    b[21..23].copy_from_slice(&4i16.to_be_bytes());
    recrc(&mut b);
    assert!(err(&b).starts_with("corrupt batch: the zstd payload does not decompress"), "{}", err(&b));
}

/// A record to push: timestamp, key, value, headers.
type TestRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn arb_record() -> impl Strategy<Value = TestRecord> {
    (
        0i64..4_000_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(
            ("[a-z\u{e9}]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))),
            0..3,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_batches_round_trip(records in proptest::collection::vec(arb_record(), 1..20), codec in 0u8..5) {
        let codec = Compression::from_id(codec).unwrap_or_default();
        let mut b = BatchBuilder::new(codec, 256);
        for (ts, k, v, hs) in &records {
            let hs: Vec<Header> = hs.iter().map(|(k, v)| Header { key: k.clone(), value: v.clone().map(Bytes::from) }).collect();
            b.push(*ts, k.as_deref(), v.as_deref(), &hs);
        }
        let batch = b.finish().expect("finish");
        let info = validate(&batch, usize::MAX).expect("valid");
        prop_assert_eq!(info.record_count as usize, records.len());
        let decoded: Vec<_> = Records::new(batch).expect("records").collect::<Result<_, _>>().expect("decode");
        for (i, (r, (ts, k, v, hs))) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(r.offset, i as u64);
            prop_assert_eq!(r.timestamp_ms, *ts);
            prop_assert_eq!(r.key.as_deref(), k.as_deref());
            prop_assert_eq!(r.value.as_deref(), v.as_deref());
            prop_assert_eq!(r.headers.len(), hs.len());
        }
    }

    #[test]
    fn mutated_and_random_batches_never_panic(
        n in 1u32..8, codec in 0u8..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(), fix_crc in any::<bool>(), junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = sample(n, Compression::from_id(codec).unwrap_or_default()).to_vec();
        for (at, x) in flips {
            let len = b.len();
            b[at % len] ^= x;
        }
        b.truncate(b.len() - cut % 8);
        if fix_crc && b.len() >= HEADER_LEN {
            recrc(&mut b);
        }
        for input in [b, junk] {
            let valid = validate(&input, usize::MAX).is_ok();
            for batch in Batches::new(Bytes::from(input)) {
                let Ok(batch) = batch else { break };
                let _ = batch.verify();
                if let Ok(records) = batch.records() {
                    let decoded: Result<Vec<_>, _> = records.collect();
                    // What the validator accepts, a consumer can read.
                    prop_assert!(!valid || decoded.is_ok());
                }
            }
        }
    }
}

#[test]
fn set_producer_restamps_a_sealed_batch_that_still_validates() {
    let mut b = BatchBuilder::new(Compression::None, 1024);
    b.set_producer(7, 0, 40);
    b.push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[]);
    b.push(1_700_000_000_001, None, Some(b"w"), &[]);
    let mut bytes = b.finish().expect("finish").to_vec();
    super::set_producer(&mut bytes, 9, 1, 0);
    let info = super::validate(&bytes, 1 << 20).expect("the CRC was recomputed");
    assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence, info.record_count), (9, 1, 0, 2));
}
