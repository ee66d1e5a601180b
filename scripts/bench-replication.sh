#!/usr/bin/env bash
# Replication benchmarks (docs/benchmarks.md, "Replication"); not run by CI.
# Three brokers as separate processes (`sluice dev --brokers 3`, release build), side by
# side in one run: RF=1 against RF=3 (min ISR 2), acks=all, idempotent, 100 B records:
# throughput, ack latency at a fixed rate, consume; then the catch-up of a follower that
# was stopped (SIGSTOP) while ~1 GB was written.
# Build first: cargo build --release -p sluice -p sluice-broker
set -u
B="${CARGO_TARGET_DIR:-target}/release"
DATA=/var/tmp/sluice-bench-cluster
GB_RECORDS="${GB_RECORDS:-1000000}"   # x 1 KiB = ~1 GB
rm -rf "$DATA"; mkdir -p "$DATA"
$B/sluice dev --brokers 3 --data-dir "$DATA" --listen 127.0.0.1:19092 --kafka-listen 127.0.0.1:19093 \
  --controller-listen 127.0.0.1:19090 --metrics-listen off --broker-bin "$B/sluice-broker" \
  >"$DATA.stdout" 2>"$DATA.log" &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait $DEV 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q "ready" "$DATA.stdout" && break; sleep 0.2; done
cat "$DATA.stdout"
S="$B/sluice --broker 127.0.0.1:19092"
$S topic create rf1 -r 1
$S topic create rf3 -r 3 --config min.insync.replicas=2
sleep 2
$S topic describe rf1; $S topic describe rf3
echo "## produce 100 B, acks=all, idempotent: RF=1 vs RF=3"
for t in rf1 rf3; do echo "# $t"; $S bench produce --topic $t --record-size 100 --count 2000000 2>&1 | tail -4; done
echo "## ack latency at a fixed 20,000 records/s: RF=1 vs RF=3"
for t in rf1 rf3; do echo "# $t"; $S bench produce --topic $t --record-size 100 --rate 20000 --duration 10 2>&1 | tail -4; done
echo "## e2e at 20,000 records/s: RF=1 vs RF=3"
for t in rf1 rf3; do echo "# $t"; $S bench e2e --topic $t --record-size 100 --rate 20000 --duration 10 2>&1 | tail -4; done
echo "## consume 100 B: RF=1 vs RF=3"
for t in rf1 rf3; do echo "# $t"; $S bench consume --topic $t --record-size 100 --count 2000000 2>&1 | tail -4; done
echo "## catch-up: a follower stopped while ~1 GB is written, then resumed"
$S topic create catchup -r 3 --config min.insync.replicas=2
sleep 2
leader=$($S topic describe catchup --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["leader"])')
follower=$(( (leader + 1) % 3 ))
fpid=$(grep "^broker $follower " "$DATA.stdout" | grep -o 'pid=[0-9]*' | tail -1 | cut -d= -f2)
echo "leader $leader; stopping follower $follower (pid $fpid)"
kill -STOP "$fpid"
sleep 5
$S topic describe catchup
$S bench produce --topic catchup --record-size 1024 --count "$GB_RECORDS" --acks all 2>&1 | tail -3
t0=$(date +%s.%N)
kill -CONT "$fpid"
while :; do
  n=$($S topic describe catchup --output json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["partitions"][0]["isr"]))')
  [ "$n" = 3 ] && break
  sleep 0.2
done
t1=$(date +%s.%N)
echo "follower $follower back in the ISR $(python3 -c "print(round($t1-$t0,2))") s after SIGCONT"
$S topic describe catchup
