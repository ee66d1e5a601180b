#!/usr/bin/env bash
# The Kafka path against the gRPC path (docs/benchmarks.md, "Kafka protocol"); not run by CI.
# One separate sluice-broker process (release build, durability interval, gRPC and Kafka
# listeners), side by side in one run, acks=all and idempotence on both sides:
#   gRPC:  `sluice bench produce|consume` (the Rust client);
#   Kafka: kcat (librdkafka) producing the same number of records of the same size from a
#          file, and consuming them to /dev/null.
# 100 B and 1 KiB records, one partition each. Needs kcat (tests/kafka_compat/install-kcat.sh).
# Build first: cargo build --release -p sluice -p sluice-broker
set -u
B="${CARGO_TARGET_DIR:-target}/release"
DATA=/var/tmp/sluice-bench-kafka
N100="${N100:-2000000}"
N1K="${N1K:-500000}"
rm -rf "$DATA"; mkdir -p "$DATA"
$B/sluice-broker --data-dir "$DATA/data" --listen 127.0.0.1:19092 --kafka-listen 127.0.0.1:19093 \
  --metrics-listen off >"$DATA/broker.log" 2>&1 &
BP=$!
trap 'kill $BP 2>/dev/null; wait $BP 2>/dev/null' EXIT
for _ in $(seq 50); do $B/sluice --broker 127.0.0.1:19092 topic list >/dev/null 2>&1 && break; sleep 0.2; done
S="$B/sluice --broker 127.0.0.1:19092"
K=127.0.0.1:19093
# librdkafka's settings closest to the Rust client's defaults: 64 KiB batches, acks=all,
# idempotence (5 in flight).
KP="-X enable.idempotence=true -X acks=all -X batch.size=65536 -X linger.ms=5 -X queue.buffering.max.messages=1000000"
# and the Rust consumer's fetch size per partition (4 MiB).
KC="-X fetch.message.max.bytes=4194304"

secs() { date +%s.%N; }
rate() { python3 -c "n=$1; b=$2; t=$3; print(f'{n/t/1e3:.0f} k records/s, {n*b/t/1e6:.1f} MB/s ({t:.2f} s)')"; }

# The record files first, written back to disk before anything is measured (their
# writeback would otherwise compete with the broker's writes).
for size in 100 1024; do
  n=$N100; [ "$size" = 1024 ] && n=$N1K
  # One record per line: `size` printable random characters (base64, incompressible
  # enough), then the newline kcat splits on and drops.
  python3 - "$n" "$size" >"$DATA/records-$size" <<'EOF'
import os, sys, base64
n, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
chunk = 10000
for start in range(0, n, chunk):
    lines = [base64.b64encode(os.urandom(size))[:size] + b"\n" for _ in range(min(chunk, n - start))]
    out.write(b"".join(lines))
EOF
done
sync

# Each pair twice, alternating (this machine's disk varies a lot from run to run).
for size in 100 1024; do
  n=$N100; [ "$size" = 1024 ] && n=$N1K
  echo "## produce $n x $size B, acks=all, idempotent"
  for round in 1 2; do
    $S topic create "grpc-$size-$round" >/dev/null
    $S topic create "kafka-$size-$round" >/dev/null
    echo "# round $round, gRPC (sluice bench produce)"
    $S bench produce --topic "grpc-$size-$round" --record-size "$size" --count "$n" --keep-topic 2>&1 | grep -E 'throughput|latency'
    echo "# round $round, Kafka (kcat -P, librdkafka)"
    t0=$(secs)
    kcat -P -b $K -t "kafka-$size-$round" -p 0 $KP -l "$DATA/records-$size"
    t1=$(secs)
    echo "kcat produce: $(rate "$n" "$size" "$(python3 -c "print($t1-$t0)")")"
  done
  $S topic describe "kafka-$size-1" | grep -A1 PARTITION
  echo "## consume $n x $size B from the beginning (each reads what the other protocol wrote)"
  for round in 1 2; do
    echo "# round $round, gRPC (sluice bench consume), the records kcat wrote"
    $S bench consume --topic "kafka-$size-$round" --record-size "$size" --count "$n" --keep-topic 2>&1 | grep throughput
    echo "# round $round, Kafka (kcat -C, librdkafka), the records sluice bench wrote"
    t0=$(secs)
    got=$(kcat -C -b $K -t "grpc-$size-$round" -p 0 $KC -o beginning -c "$n" -e -q -f '\n' | wc -l)
    t1=$(secs)
    echo "kcat consume ($got records): $(rate "$n" "$size" "$(python3 -c "print($t1-$t0)")")"
  done
done
echo "broker RSS: $(grep VmRSS /proc/$BP/status)"
