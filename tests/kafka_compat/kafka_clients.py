#!/usr/bin/env python3
"""Kafka clients nobody here wrote (confluent-kafka = librdkafka, kafka-python, aiokafka)
against the broker's Kafka listener. Driven by cli/tests/kafka_clients.rs; every
subcommand prints JSON on stdout and exits non-zero with the reason on stderr when a
check fails.

  kafka_clients.py metadata BOOTSTRAP
      confluent-kafka's list_topics: brokers, controller, topics and partitions.
  kafka_clients.py produce BOOTSTRAP TOPIC COUNT CODEC
      confluent-kafka producer (acks=all, CODEC compression): COUNT records with keys,
      headers and timestamps, to partition 0. Prints the records sent with offsets.
  kafka_clients.py consume BOOTSTRAP TOPIC COUNT [CLIENT]
      Reads COUNT records of partition 0 from the beginning with CLIENT (confluent or
      kafka-python; no group) and prints them as `sluice consume --format json` does.
  kafka_clients.py kafka-python BOOTSTRAP TOPIC
      kafka-python producer (acks=all) with every codec, consumer from the beginning,
      seek by timestamp (offsets_for_times).
  kafka_clients.py kafka-python-group BOOTSTRAP TOPIC GROUP
      kafka-python end to end: KafkaAdminClient creates TOPIC (6 partitions) and creates
      and deletes a scratch topic; an idempotent producer (acks=all) writes 600 records;
      three KafkaConsumers of GROUP split the partitions with commits, one leaves and the
      other two take its partitions and read what came after.
  kafka_clients.py errors BOOTSTRAP
      Error answers: a produce to an unknown partition.
  kafka_clients.py group BOOTSTRAP TOPIC GROUP
      Three confluent-kafka consumers of GROUP split TOPIC (6 partitions) with commits;
      one leaves and the other two take its partitions.
  kafka_clients.py admin BOOTSTRAP
      confluent-kafka AdminClient: create (and validate-only create) topics, add
      partitions, describe and alter configs, delete, describe the cluster; a
      transactional producer is refused with an error that says so.
  kafka_clients.py aiokafka BOOTSTRAP TOPIC GROUP
      aiokafka producer, then an aiokafka group consumer reading it all and committing.
  kafka_clients.py steady-produce BOOTSTRAP TOPIC RATE STOPFILE LOGFILE
      confluent-kafka idempotent producer (acks=all) sending `kafka-<i>` to partition 0
      at RATE records/s until STOPFILE exists, then flushing. Every delivery report is
      appended to LOGFILE as a JSON line as it arrives ({"i", "offset", "sent", "acked"}
      wall-clock seconds, or {"i", "error"}); prints the totals at the end.
"""

import json
import sys
import time

BASE_TS = 1_700_000_000_000


def record_json(topic, partition, offset, ts, key, value, headers):
    text = lambda b: None if b is None else b.decode("utf-8", "replace")
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": ts,
        "key": text(key),
        "value": text(value),
        "headers": [{"key": k, "value": text(v)} for k, v in (headers or [])],
    }


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def metadata(bootstrap):
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    print(json.dumps({
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "brokers": {str(b.id): f"{b.host}:{b.port}" for b in md.brokers.values()},
        "topics": {
            name: {
                "error": None if t.error is None else t.error.name(),
                "partitions": {
                    str(p.id): {"leader": p.leader, "replicas": p.replicas, "isrs": p.isrs}
                    for p in t.partitions.values()
                },
            }
            for name, t in md.topics.items()
        },
    }))


def produce(bootstrap, topic, count, codec):
    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 5,
        # librdkafka's idempotent producer (InitProducerId, sequences, 5 in flight) for
        # every codec but "none", which stays a plain producer.
        "enable.idempotence": codec != "none",
    })
    sent, errors = [], []

    def delivered(headers):
        # The delivery report does not carry the headers: take them from what was sent.
        def done(err, msg):
            if err is not None:
                errors.append(str(err))
                return
            sent.append(record_json(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],
                                    msg.key(), msg.value(), headers))
        return done

    for i in range(count):
        key = None if i % 5 == 4 else f"key-{i}".encode()
        headers = [("h", f"v{i}".encode()), ("n", None)] if i % 2 == 0 else None
        p.produce(topic, value=f"value-{i} {codec}".encode(), key=key, partition=0,
                  headers=headers, timestamp=BASE_TS + i, on_delivery=delivered(headers))
    remaining = p.flush(30)
    if remaining or errors:
        fail(f"produce: {remaining} undelivered, errors {errors}")
    print(json.dumps(sorted(sent, key=lambda r: r["offset"])))


def consume(bootstrap, topic, count, client="confluent"):
    out = []
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-no-commits",
                      "enable.auto.commit": False, "enable.partition.eof": False})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.time() + 30
        while len(out) < count and time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                fail(f"consume: {m.error()}")
            out.append(record_json(m.topic(), m.partition(), m.offset(), m.timestamp()[1],
                                   m.key(), m.value(), m.headers()))
        c.close()
    else:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.time() + 30
        while len(out) < count and time.time() < deadline:
            for records in c.poll(timeout_ms=1000).values():
                for m in records:
                    out.append(record_json(m.topic, m.partition, m.offset, m.timestamp,
                                           m.key, m.value, m.headers))
        c.close()
    if len(out) < count:
        fail(f"consume: read {len(out)} of {count} records")
    print(json.dumps(out[:count]))


def kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    sent = []
    for codec in ["gzip", "snappy", "lz4", "zstd", None]:
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=5,
                          enable_idempotence=False)
        futures = [
            p.send(topic, value=f"{codec}-{i}".encode(), key=f"k{i}".encode(), partition=0,
                   headers=[("codec", str(codec).encode())], timestamp_ms=BASE_TS + len(sent) + i)
            for i in range(10)
        ]
        for f in futures:
            md = f.get(timeout=30)
            sent.append(md.offset)
        p.close()
    if sent != list(range(len(sent))):
        fail(f"offsets not dense from 0: {sent}")
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + 30
    while len(got) < len(sent) and time.time() < deadline:
        for records in c.poll(timeout_ms=1000).values():
            got.extend(records)
    if [m.offset for m in got] != sent:
        fail(f"read offsets {[m.offset for m in got]}, sent {sent}")
    values = [m.value.decode() for m in got]
    # Seek by timestamp: the first record at or after BASE_TS + 25 is offset 25.
    found = c.offsets_for_times({tp: BASE_TS + 25})[tp]
    later = c.offsets_for_times({tp: BASE_TS + 10_000})[tp]
    end = c.end_offsets([tp])[tp]
    begin = c.beginning_offsets([tp])[tp]
    c.close()
    print(json.dumps({"count": len(got), "first": values[0], "last": values[-1],
                      "by_time": [found.offset, found.timestamp], "after_last": None if later is None else later.offset,
                      "begin": begin, "end": end}))


def kafka_python_group(bootstrap, topic, group_id):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 6, 1), NewTopic(topic + "-scratch", 1, 1)])
    made = set(admin.list_topics())
    admin.delete_topics([topic + "-scratch"])
    deadline = time.time() + 10
    while topic + "-scratch" in set(admin.list_topics()) and time.time() < deadline:
        time.sleep(0.1)
    out = {"created": topic in made and topic + "-scratch" in made,
           "deleted": topic + "-scratch" not in set(admin.list_topics())}
    admin.close()

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)

    def produce(prefix, n):
        futures = [p.send(topic, value=f"{prefix}{i}".encode(), partition=i % 6) for i in range(n)]
        return [f.get(timeout=30) for f in futures]

    offsets = {}
    for md in produce("v", 600):
        offsets.setdefault(md.partition, []).append(md.offset)
    if any(o != list(range(100)) for o in offsets.values()) or len(offsets) != 6:
        fail(f"idempotent producer: offsets not dense per partition: { {k: (v[0], v[-1], len(v)) for k, v in offsets.items()} }")

    # One thread per member, as applications run them (kafka-python's poll joins the
    # group synchronously, so members polled in turn from one thread starve each other).
    import threading

    seen, lock = set(), threading.Lock()

    class Member(threading.Thread):
        def __init__(self, i):
            super().__init__(daemon=True)
            self.c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, client_id=f"kp-member-{i}",
                                   auto_offset_reset="earliest", enable_auto_commit=False,
                                   session_timeout_ms=6000, heartbeat_interval_ms=500)
            self.stop, self.assigned, self.error = threading.Event(), set(), None
            self.start()

        def run(self):
            try:
                while not self.stop.is_set():
                    batch = self.c.poll(timeout_ms=100)
                    with lock:
                        for records in batch.values():
                            seen.update((m.partition, m.offset) for m in records)
                    if batch:
                        self.c.commit()
                    self.assigned = {tp.partition for tp in self.c.assignment()}
                self.c.close()
            except Exception as e:  # reported by the main thread
                self.error = repr(e)

        def leave(self):
            self.stop.set()
            self.join(30)

    def wait_split(live, total, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            errors = [m.error for m in live if m.error]
            if errors:
                fail(f"kafka-python consumer failed: {errors}")
            sets = [m.assigned for m in live]
            split = set().union(*sets) == set(range(6)) and sum(len(x) for x in sets) == 6 and all(sets)
            with lock:
                read = len(seen)
            if split and read >= total:
                return sorted(len(x) for x in sets)
            time.sleep(0.1)
        fail(f"members did not split and read {total}: {[sorted(m.assigned) for m in live]}, read {len(seen)}")

    members = [Member(i) for i in range(3)]
    out["before"] = wait_split(members, 600, 90)
    members.pop().leave()
    produce("after", 60)
    out["after"] = wait_split(members, 660, 90)
    for m in members:
        m.leave()
    p.close()
    out["read"] = len(seen)
    print(json.dumps(out))


def errors(bootstrap):
    from confluent_kafka import Producer

    result = {}
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                  "message.timeout.ms": 5000, "allow.auto.create.topics": False})
    out = []
    p.produce("errors-topic", value=b"x", partition=7, on_delivery=lambda e, m: out.append(e))
    p.flush(10)
    result["unknown_partition"] = out[0].name() if out and out[0] else None
    print(json.dumps(result))



def group(bootstrap, topic, group_id):
    from confluent_kafka import Consumer, Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False, "linger.ms": 5})
    for i in range(600):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 6)
    if p.flush(30):
        fail("produce did not finish")

    seen = set()

    def consumer(name):
        state = {"assigned": set(), "name": name}

        def on_assign(c, parts):
            state["assigned"] = {tp.partition for tp in parts}

        def on_revoke(c, parts):
            state["assigned"] = set()

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "client.id": name,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        return c, state

    members = [consumer(f"member-{i}") for i in range(3)]

    def poll_all(live, until, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            for c, st in live:
                m = c.poll(0.05)
                if m is None:
                    continue
                if m.error():
                    fail(f"{st['name']}: {m.error()}")
                seen.add((m.partition(), m.offset()))
                c.commit(message=m, asynchronous=False)
            if until(live):
                return True
        return False

    def split(live):
        sets = [st["assigned"] for _, st in live]
        union = set().union(*sets)
        return union == set(range(6)) and sum(len(x) for x in sets) == 6 and all(sets)

    def done(live, total):
        return split(live) and len(seen) >= total

    if not poll_all(members, lambda live: done(live, 600), 60):
        fail(f"three members did not split and read the topic: {[sorted(st['assigned']) for _, st in members]}")
    before = sorted(len(st["assigned"]) for _, st in members)
    leaving, _ = members.pop()
    leaving.close()
    for i in range(60):
        p.produce(topic, value=f"after{i}".encode(), partition=i % 6)
    p.flush(30)
    if not poll_all(members, lambda live: done(live, 660), 60):
        fail(f"the two remaining members did not take over: {[sorted(st['assigned']) for _, st in members]}")
    after = sorted(len(st["assigned"]) for _, st in members)
    for c, _ in members:
        c.close()
    print(json.dumps({"before": before, "after": after}))


def admin(bootstrap):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

    a = AdminClient({"bootstrap.servers": bootstrap})
    out = {}
    a.create_topics([NewTopic("adm", 2, 1, config={"retention.ms": "60000"})])["adm"].result(10)
    a.create_topics([NewTopic("adm-dry", 3, 1)], validate_only=True)["adm-dry"].result(10)
    try:
        a.create_topics([NewTopic("adm", 2, 1)])["adm"].result(10)
    except KafkaException as e:
        out["again"] = e.args[0].name()
    a.create_partitions([NewPartitions("adm", 4)])["adm"].result(10)
    md = a.list_topics(timeout=10)
    out["partitions"] = len(md.topics["adm"].partitions)
    out["dry_created"] = "adm-dry" in md.topics
    res = ConfigResource(ConfigResource.Type.TOPIC, "adm")
    configs = a.describe_configs([res])[res].result(10)
    out["retention"] = configs["retention.ms"].value
    alter = ConfigResource(ConfigResource.Type.TOPIC, "adm",
                           incremental_configs=[ConfigEntry("retention.ms", "120000",
                                                            incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([alter])[alter].result(10)
    out["altered"] = a.describe_configs([res])[res].result(10)["retention.ms"].value
    cluster = a.describe_cluster().result(10)
    out["cluster"] = {"id": cluster.cluster_id, "controller": cluster.controller.id, "nodes": len(cluster.nodes)}
    a.delete_topics(["adm"])["adm"].result(10)
    out["deleted"] = "adm" not in a.list_topics(timeout=10).topics
    tp = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-1"})
    try:
        tp.init_transactions(10)
        out["transactions"] = "accepted"
    except KafkaException as e:
        out["transactions"] = e.args[0].name()
    print(json.dumps(out))


def aio(bootstrap, topic, group_id):
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
        await p.start()
        try:
            for i in range(50):
                await p.send_and_wait(topic, f"aio-{i}".encode(), key=f"k{i}".encode(), partition=i % 2)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        got = []
        try:
            async def read():
                async for m in c:
                    got.append(m.value.decode())
                    if len(got) == 50:
                        await c.commit()
                        return
            await asyncio.wait_for(read(), 60)
        finally:
            await c.stop()
        return sorted(got)

    got = asyncio.run(run())
    print(json.dumps({"count": len(got), "first": got[0]}))


def steady_produce(bootstrap, topic, rate, stopfile, logfile):
    import os

    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # acks=all, retries, 5 in flight, no reordering
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,  # delivery.timeout.ms: outlives every failover
        "request.timeout.ms": 10000,
        "retry.backoff.ms": 50,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    log = open(logfile, "a", buffering=1)
    totals = {"sent": 0, "acked": 0, "errors": 0}

    def report(i, sent):
        def done(err, msg):
            if err is not None:
                totals["errors"] += 1
                log.write(json.dumps({"i": i, "error": str(err)}) + "\n")
            else:
                totals["acked"] += 1
                log.write(json.dumps({"i": i, "offset": msg.offset(), "sent": sent, "acked": time.time()}) + "\n")
        return done

    interval, start, i = 1.0 / rate, time.time(), 0
    while not os.path.exists(stopfile):
        due = start + i * interval
        now = time.time()
        if due > now:
            p.poll(due - now)
            continue
        sent = time.time()
        p.produce(topic, value=f"kafka-{i}".encode(), partition=0, on_delivery=report(i, sent))
        totals["sent"] += 1
        i += 1
        p.poll(0)
    totals["undelivered"] = p.flush(150)
    log.close()
    print(json.dumps(totals))
    if totals["undelivered"]:
        fail(f"steady-produce: {totals}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "metadata":
        metadata(args[0])
    elif cmd == "produce":
        produce(args[0], args[1], int(args[2]), args[3])
    elif cmd == "consume":
        consume(args[0], args[1], int(args[2]), *(args[3:4]))
    elif cmd == "kafka-python":
        kafka_python(args[0], args[1])
    elif cmd == "kafka-python-group":
        kafka_python_group(args[0], args[1], args[2])
    elif cmd == "errors":
        errors(args[0])
    elif cmd == "group":
        group(args[0], args[1], args[2])
    elif cmd == "admin":
        admin(args[0])
    elif cmd == "aiokafka":
        aio(args[0], args[1], args[2])
    elif cmd == "steady-produce":
        steady_produce(args[0], args[1], float(args[2]), args[3], args[4])
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
