//! Framing of one v2 record inside an (uncompressed) records section: every length is
//! checked against the record's own length, header keys are checked to be UTF-8. Used
//! by the validator (which keeps nothing) and the decoder (which slices key, value and
//! headers out of the same bytes).

use std::ops::Range;

use crate::varint;

/// Where the parts of one record lie in the records section.
#[derive(Debug, Clone)]
pub(crate) struct RecordView {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    /// The headers, already checked (see [`Headers`]).
    pub header_count: u32,
    pub headers: Range<usize>,
    /// Position after the record.
    pub end: usize,
}

/// Reads the record at `pos`. The error says what is wrong, for a message that also
/// names the record.
pub(crate) fn read_record(b: &[u8], pos: usize) -> Result<RecordView, String> {
    let mut p = pos;
    let length = varint::get_i32(b, &mut p).ok_or("its length is not a valid varint")?;
    let length = usize::try_from(length).map_err(|_| format!("negative length {length}"))?;
    let end = p
        .checked_add(length)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| format!("its length {length} runs past the end of the records ({} bytes left)", b.len() - p))?;
    let b = &b[..end];
    if p >= end {
        return Err("it is empty (no attributes)".into());
    }
    p += 1; // attributes: unused in v2
    let timestamp_delta = varint::get_i64(b, &mut p).ok_or("its timestamp delta runs past its end")?;
    let offset_delta = varint::get_i32(b, &mut p).ok_or("its offset delta runs past its end")?;
    let key = bytes_field(b, &mut p, "key")?;
    let value = bytes_field(b, &mut p, "value")?;
    let count = varint::get_i32(b, &mut p).ok_or("its header count runs past its end")?;
    let header_count = u32::try_from(count).map_err(|_| format!("negative header count {count}"))?;
    let headers_start = p;
    for h in 0..header_count {
        let klen = varint::get_i32(b, &mut p)
            .ok_or_else(|| format!("header {h}: its key length runs past the record's end"))?;
        let klen = usize::try_from(klen)
            .map_err(|_| format!("header {h}: key length {klen} (a header key cannot be null)"))?;
        let key = p
            .checked_add(klen)
            .filter(|e| *e <= end)
            .map(|e| p..e)
            .ok_or_else(|| format!("header {h}: its key of {klen} bytes runs past the record's end"))?;
        std::str::from_utf8(&b[key.clone()]).map_err(|e| format!("header {h}: its key is not UTF-8 ({e})"))?;
        p = key.end;
        bytes_field(b, &mut p, &format!("header {h} value"))?;
    }
    if p != end {
        return Err(format!("{} bytes after its last header, within its length", end - p));
    }
    Ok(RecordView { timestamp_delta, offset_delta, key, value, header_count, headers: headers_start..end, end })
}

/// A nullable bytes field: varint length (-1 = null) and the bytes.
fn bytes_field(b: &[u8], p: &mut usize, what: &str) -> Result<Option<Range<usize>>, String> {
    let len = varint::get_i32(b, p).ok_or_else(|| format!("its {what} length runs past the record's end"))?;
    if len == -1 {
        return Ok(None);
    }
    let n = usize::try_from(len).map_err(|_| format!("its {what} has length {len}"))?;
    let r = p
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .map(|e| *p..e)
        .ok_or_else(|| format!("its {what} of {n} bytes runs past the record's end"))?;
    *p = r.end;
    Ok(Some(r))
}

/// The headers of a record [`read_record`] accepted: (key range, value range) pairs.
#[derive(Debug)]
pub(crate) struct Headers<'a> {
    b: &'a [u8],
    p: usize,
    left: u32,
}

impl<'a> Headers<'a> {
    pub fn new(b: &'a [u8], view: &RecordView) -> Self {
        Self { b: &b[..view.end], p: view.headers.start, left: view.header_count }
    }
}

impl Iterator for Headers<'_> {
    /// `None` inside means a malformed header, which `read_record` rules out.
    type Item = Option<(Range<usize>, Option<Range<usize>>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut p = self.p;
        let item = (|| {
            let klen = usize::try_from(varint::get_i32(self.b, &mut p)?).ok()?;
            let key = p..p.checked_add(klen).filter(|e| *e <= self.b.len())?;
            p = key.end;
            let value = bytes_field(self.b, &mut p, "").ok()?;
            Some((key, value))
        })();
        self.p = p;
        if item.is_none() {
            self.left = 0;
        }
        Some(item)
    }
}
