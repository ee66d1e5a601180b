//! The compression codecs of a RecordBatch v2 (attributes bits 0–2), with the stream
//! framings Kafka's Java client writes, so batches compress and decompress the same on
//! both sides:
//!
//! - gzip: one gzip member (RFC 1952), level 6 (`java.util.zip` default).
//! - snappy: xerial snappy-java's block stream (`SnappyOutputStream`): a 16-byte header
//!   `0x82 "SNAPPY" 0x00`, version 1 and compatible version 1 (big-endian i32s), then
//!   blocks of at most 32 KiB of input, each a big-endian i32 length and raw snappy
//!   bytes. Raw snappy without the header is read too, as Kafka's reader does.
//! - lz4: the LZ4 frame format with independent 64 KiB blocks and no checksums (what
//!   `KafkaLZ4BlockOutputStream` writes; any LZ4 frame reader reads it).
//! - zstd: one zstd frame, level 3 (Kafka's default).
//!
//! Decompression is bounded ([`MAX_UNCOMPRESSED_BYTES`]) so that a small batch cannot
//! make a broker or consumer allocate without limit.

use std::{
    fmt,
    io::{Read, Write},
    str::FromStr,
};

/// Largest records section a compressed batch may decompress to.
pub const MAX_UNCOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// A batch's compression codec (`compression.type` on a Kafka producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codec with this id (attributes bits 0–2), if Kafka defines one.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }

    /// The id written in attributes bits 0–2.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for it (`compression.type` values).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            format!("compression must be one of {}, not '{s}'", Self::ALL.map(Compression::as_str).join(", "))
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const SNAPPY_HEADER_LEN: usize = 16;
const SNAPPY_BLOCK: usize = 32 * 1024;

/// Compresses a records section. Errors are the codec's (none is expected when
/// compressing into memory).
pub(crate) fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| format!("{codec} compression failed: {e}");
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), flate2::Compression::new(6));
            e.write_all(data).map_err(io)?;
            e.finish().map_err(io)
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(SNAPPY_HEADER_LEN + data.len() / 2);
            out.extend_from_slice(SNAPPY_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(SNAPPY_BLOCK) {
                let at = out.len();
                out.resize(at + 4 + snap::raw::max_compress_len(block.len()), 0);
                let n = encoder.compress(block, &mut out[at + 4..]).map_err(|e| format!("snappy: {e}"))?;
                out[at..at + 4].copy_from_slice(&(n as i32).to_be_bytes());
                out.truncate(at + 4 + n);
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(data.len() / 2));
            e.write_all(data).map_err(io)?;
            e.finish().map_err(|e| format!("lz4 compression failed: {e}"))
        }
        Compression::Zstd => zstd::bulk::compress(data, 3).map_err(io),
    }
}

/// Decompresses a records section, refusing output beyond `limit` bytes. The error
/// says why the payload is not a valid stream of the codec.
pub(crate) fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let too_big = || format!("it decompresses to more than {limit} bytes");
    let read_bounded = |mut r: Box<dyn Read + '_>| -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
        r.by_ref().take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| e.to_string())?;
        if out.len() > limit { Err(too_big()) } else { Ok(out) }
    };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_bounded(Box::new(flate2::read::GzDecoder::new(data))),
        Compression::Snappy => snappy_decompress(data, limit),
        Compression::Lz4 => read_bounded(Box::new(lz4_flex::frame::FrameDecoder::new(data))),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| e.to_string())?;
            read_bounded(Box::new(d))
        }
    }
}

fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let n = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        if out.len() + n > limit {
            return Err(format!("it decompresses to more than {limit} bytes"));
        }
        let at = out.len();
        out.resize(at + n, 0);
        let written = snap::raw::Decoder::new().decompress(block, &mut out[at..]).map_err(|e| e.to_string())?;
        out.truncate(at + written);
        Ok(())
    };
    let mut out = Vec::new();
    if data.len() < SNAPPY_HEADER_LEN || &data[..SNAPPY_MAGIC.len()] != SNAPPY_MAGIC {
        raw(data, &mut out)?;
        return Ok(out);
    }
    let mut pos = SNAPPY_HEADER_LEN;
    while pos < data.len() {
        let len_bytes: [u8; 4] =
            data.get(pos..pos + 4).and_then(|b| b.try_into().ok()).ok_or("truncated xerial block length")?;
        let len = usize::try_from(i32::from_be_bytes(len_bytes)).map_err(|_| "negative xerial block length")?;
        pos += 4;
        let block = data.get(pos..pos + len).ok_or("xerial block runs past the payload")?;
        raw(block, &mut out)?;
        pos += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_like(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("{{\"id\":{i},\"user\":\"u{}\",\"ok\":true}}", i % 17).into_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips_and_compresses() {
        let data = json_like(5_000);
        for codec in Compression::ALL {
            let c = compress(codec, &data).expect("compress");
            if codec != Compression::None {
                assert!(c.len() < data.len() / 3, "{codec}: {} of {}", c.len(), data.len());
            }
            assert_eq!(decompress(codec, &c, MAX_UNCOMPRESSED_BYTES).expect("decompress"), data, "{codec}");
            assert_eq!(codec.as_str().parse::<Compression>(), Ok(codec));
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
        }
        assert_eq!(Compression::from_id(5), None);
        let err = "brotli".parse::<Compression>().unwrap_err();
        assert_eq!(err, "compression must be one of none, gzip, snappy, lz4, zstd, not 'brotli'");
    }

    #[test]
    fn snappy_uses_xerial_framing_and_reads_raw_snappy() {
        let data = json_like(3_000);
        let c = compress(Compression::Snappy, &data).expect("compress");
        assert_eq!(&c[..16], b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01");
        let raw = snap::raw::Encoder::new().compress_vec(&data).expect("raw");
        assert_eq!(decompress(Compression::Snappy, &raw, usize::MAX).expect("raw snappy"), data);
    }

    #[test]
    fn garbage_and_bombs_are_refused() {
        let junk = b"this is not compressed at all, not by any codec".to_vec();
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert!(decompress(codec, &junk, MAX_UNCOMPRESSED_BYTES).is_err(), "{codec} accepted junk");
            let zeros = compress(codec, &vec![0u8; 100_000]).expect("compress");
            let err = decompress(codec, &zeros, 1000).expect_err("over the limit");
            assert!(err.contains("more than 1000 bytes"), "{codec}: {err}");
        }
    }
}
