#!/usr/bin/env bash
# Benchmarks against a separate sluice-broker process (docs/benchmarks.md); not run by CI.
# Build first: cargo build --release -p sluice -p sluice-broker
set -u
B="${CARGO_TARGET_DIR:-target}/release"
DATA=/var/tmp/sluice-bench-data
rm -rf "$DATA"; mkdir -p "$DATA"
$B/sluice-broker --data-dir "$DATA" --listen 127.0.0.1:19092 --metrics-listen off --kafka-listen off >/var/tmp/sluice-bench-broker.log 2>&1 &
BP=$!
trap 'kill $BP 2>/dev/null' EXIT
sleep 2
S="$B/sluice --broker 127.0.0.1:19092"
echo "## produce 100 B, idempotence on vs off"
for idem in true false; do $S bench produce --record-size 100 --count 2000000 --idempotence $idem 2>&1 | tail -4; done
echo "## consume 100 B"
$S bench consume --record-size 100 --count 2000000 2>&1 | tail -4
echo "## e2e 50k/s, idempotence on vs off"
for idem in true false; do $S bench e2e --rate 50000 --duration 10 --idempotence $idem 2>&1 | tail -4; done
echo "## codecs, json payload 1 KiB"
for c in none gzip snappy lz4 zstd; do $S bench produce --record-size 1024 --count 300000 --payload json --compression $c 2>&1 | tail -3; done
echo "## write amplification, 100 B"
w0=$(awk '/^write_bytes/{print $2}' /proc/$BP/io)
$S bench produce --record-size 100 --count 2000000 2>&1 | tail -2
sleep 2
w1=$(awk '/^write_bytes/{print $2}' /proc/$BP/io)
echo "broker write_bytes delta: $((w1-w0)) for 200000000 payload bytes"
echo "## dd"
dd if=/dev/zero of=/var/tmp/sluice-dd bs=1M count=1024 conv=fdatasync 2>&1 | tail -1; rm -f /var/tmp/sluice-dd
echo "## produce 1 KiB"
$S bench produce --record-size 1024 --count 600000 2>&1 | tail -3
echo "broker RSS: $(grep VmRSS /proc/$BP/status)"
