//! Kafka's variable-length integers: LEB128 over zig-zag encoded values, as protobuf's
//! `sint32`/`sint64`. Every varint inside a RecordBatch v2 record is zig-zag encoded
//! (Kafka's `ByteUtils.writeVarint` / `writeVarlong`), lengths included, so `-1` (a
//! null key or value) takes one byte.

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zig-zag encoded (Kafka's varlong; a varint is the same for i32 values).
pub fn put_i64(buf: &mut Vec<u8>, v: i64) {
    put_u64(buf, zigzag(v));
}

/// Writes `v` zig-zag encoded into `out`; returns the bytes written.
pub fn encode_i64(v: i64, out: &mut [u8; 10]) -> usize {
    let mut v = zigzag(v);
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

/// Number of bytes `put_u64(v)` writes.
pub fn len_u64(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Number of bytes `put_i64(v)` writes.
pub fn len_i64(v: i64) -> usize {
    len_u64(zigzag(v))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Reads an unsigned varint of at most `max_bytes` bytes at `*pos`, advancing it.
/// `None` on truncation or when it is longer.
fn get_bounded(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Reads an unsigned varint at `*pos`, advancing it. `None` on truncation or overflow.
pub fn get_u64(buf: &[u8], pos: &mut usize) -> Option<u64> {
    get_bounded(buf, pos, 10)
}

/// Reads a zig-zag varlong (at most 10 bytes) at `*pos`, advancing it.
pub fn get_i64(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let v = get_bounded(buf, pos, 10)?;
    Some(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// Reads a zig-zag varint (Kafka's i32 varint: at most 5 bytes, value within i32) at
/// `*pos`, advancing it.
pub fn get_i32(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let v = get_bounded(buf, pos, 5)?;
    let v = u32::try_from(v).ok()?;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_u64(&mut buf, v);
            assert_eq!(buf.len(), len_u64(v), "length of {v}");
            let mut pos = 0;
            assert_eq!(get_u64(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_i64(&mut buf, v);
            assert_eq!(buf.len(), len_i64(v));
            let mut out = [0u8; 10];
            let n = encode_i64(v, &mut out);
            assert_eq!(&out[..n], &buf[..]);
            let mut pos = 0;
            assert_eq!(get_i64(&buf, &mut pos), Some(v));
        }
        for v in [0i32, -1, 1, i32::MIN, i32::MAX] {
            let mut buf = Vec::new();
            put_i64(&mut buf, i64::from(v));
            let mut pos = 0;
            assert_eq!(get_i32(&buf, &mut pos), Some(v));
        }
    }

    #[test]
    fn kafka_encodings() {
        // Null (-1) is one byte 0x01; 300 is zig-zag 600 = 0xd8 0x04.
        let mut buf = Vec::new();
        put_i64(&mut buf, -1);
        put_i64(&mut buf, 300);
        assert_eq!(buf, [0x01, 0xd8, 0x04]);
    }

    #[test]
    fn truncated_or_oversized_input_is_none() {
        let mut pos = 0;
        assert_eq!(get_u64(&[0x80, 0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(get_u64(&[0xff; 11], &mut pos), None);
        // A varint longer than 5 bytes, or beyond i32, is no Kafka varint.
        let mut pos = 0;
        assert_eq!(get_i32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos), None);
        let mut pos = 0;
        assert_eq!(get_i32(&[0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos), None);
    }
}
