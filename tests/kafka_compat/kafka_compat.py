#!/usr/bin/env python3
"""Cross-implementation checks of Sluice's batch format (Kafka RecordBatch v2) against
kafka-python, an implementation nobody here wrote. Driven by cli/tests/kafka_compat.rs.

  kafka_compat.py build OUT_DIR
      For every codec, builds one batch with kafka-python's DefaultRecordBatchBuilder
      and writes OUT_DIR/<codec>.batch (the bytes) and OUT_DIR/<codec>.json (the
      records put in: offset, timestamp, key, value, headers).

  kafka_compat.py parse FILE
      Reads FILE as batches laid back to back (a Sluice fetch response's `batches`)
      with kafka-python's MemoryRecords / DefaultRecordBatch, checks every CRC, and
      prints JSON: one object per batch with its codec, base offset, leader epoch,
      record count and records.

Keys, values and header values are UTF-8 text here, so they travel through JSON as
strings; null stays null.
"""

import json
import os
import sys

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
NAMES = {v: k for k, v in CODECS.items()}
BASE_TS = 1_700_000_000_000


def text(b):
    return None if b is None else bytes(b).decode("utf-8")


def records_for(codec):
    """Records that exercise the format: null and repeated keys, JSON values that
    compress, headers with null and non-ASCII keys, a timestamp before the batch's
    first (a negative delta)."""
    out = []
    for i in range(40):
        key = None if i % 5 == 0 else f"user-{i % 7}".encode()
        value = json.dumps(
            {"event": ["view", "cart", "pay"][i % 3], "i": i, "codec": codec, "note": "caf\u00e9 \u2713"},
            ensure_ascii=False,
        ).encode()
        if i % 3 == 0:
            headers = [("trace-id", f"t-{i:04}".encode()), ("empty", None)]
        elif i % 3 == 1:
            headers = [("\u00fcber", b"x")]
        else:
            headers = []
        ts = BASE_TS - 250 if i == 5 else BASE_TS + 7 * i
        out.append((ts, key, value, headers))
    return out


def build(out_dir):
    for codec, cid in CODECS.items():
        # Half the codecs as an idempotent producer writes them (an id the broker never
        # issued: it accepts an unknown producer at any sequence, as Kafka does).
        idempotent = cid % 2 == 1
        builder = DefaultRecordBatchBuilder(
            magic=2, compression_type=cid, is_transactional=False,
            producer_id=1000 + cid if idempotent else -1, producer_epoch=0 if idempotent else -1,
            base_sequence=7 if idempotent else -1, batch_size=1 << 20,
        )
        expected = []
        for offset, (ts, key, value, headers) in enumerate(records_for(codec)):
            if builder.append(offset, timestamp=ts, key=key, value=value, headers=headers) is None:
                sys.exit(f"{codec}: the builder refused record {offset}")
            expected.append({
                "offset": offset, "timestamp": ts, "key": text(key), "value": text(value),
                "headers": [[k, text(v)] for k, v in headers],
            })
        data = bytes(builder.build())
        # kafka-python sends a batch uncompressed when compression does not make it
        # smaller; these records compress, so every codec is really used.
        got = DefaultRecordBatch(data).compression_type
        if got != cid:
            sys.exit(f"{codec}: kafka-python built a batch with codec {NAMES.get(got, got)}")
        with open(os.path.join(out_dir, f"{codec}.batch"), "wb") as f:
            f.write(data)
        with open(os.path.join(out_dir, f"{codec}.json"), "w", encoding="utf-8") as f:
            json.dump(expected, f, ensure_ascii=False)


def parse(path):
    with open(path, "rb") as f:
        data = f.read()
    records = MemoryRecords(data)
    batches = []
    while True:
        batch = records.next_batch()
        if batch is None:
            break
        if not batch.validate_crc():
            sys.exit(f"batch at offset {batch.base_offset}: CRC mismatch")
        batches.append({
            "codec": NAMES.get(batch.compression_type, str(batch.compression_type)),
            "base_offset": batch.base_offset,
            "leader_epoch": batch.leader_epoch,
            "record_count": batch.records_count,
            "records": [
                {
                    "offset": r.offset, "timestamp": r.timestamp, "key": text(r.key), "value": text(r.value),
                    "headers": [[k, text(v)] for k, v in r.headers],
                }
                for r in batch
            ],
        })
    if records.valid_bytes() != len(data):
        sys.exit(f"{len(data) - records.valid_bytes()} bytes after the last whole batch")
    json.dump(batches, sys.stdout, ensure_ascii=False)


def main(argv):
    if len(argv) == 3 and argv[1] == "build":
        build(argv[2])
    elif len(argv) == 3 and argv[1] == "parse":
        parse(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
