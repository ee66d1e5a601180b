#!/usr/bin/env python3
"""A Sluice client in Python, built only from proto/ and its documentation.

Generates the Python code of proto/sluice/v1/*.proto with grpcio-tools into a temporary
directory, then exercises a running broker the way an outside implementer would: health,
reflection (v1 and v1alpha), topic administration, metadata, offsets, a long-poll fetch,
consumer-group look-ups, and errors read as gRPC's rich error model (a google.rpc.Status
in grpc-status-details-bin, whose details pack a sluice.v1.ErrorDetail). Nothing here
depends on the record batch encoding: the one batch sent is not a batch.

Usage: check.py HOST:PORT   (the broker must be fresh: no user topics yet)
Exits non-zero, naming the failed check, on the first failure.
"""

import importlib
import importlib.resources
import pathlib
import sys
import tempfile
import time

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto" / "proto"
PROTOS = ["sluice/v1/sluice.proto", "sluice/v1/groups.proto", "sluice/v1/replication.proto"]
TOPIC = "py-orders"
EXPECTED_SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "sluice.v1.Groups",
    "sluice.v1.Replication",
    "sluice.v1.Sluice",
]
TIMEOUT = 10


def generate(out):
    """Python modules of the .proto files, as `protoc --python_out --grpc_python_out`."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTOS}")
    sys.path.insert(0, str(out))
    mods = {}
    for name in ["sluice_pb2", "sluice_pb2_grpc", "groups_pb2", "groups_pb2_grpc"]:
        mods[name] = importlib.import_module(f"sluice.v1.{name}")
    return mods


class Checks:
    def __init__(self, channel, m):
        self.channel = channel
        self.pb = m["sluice_pb2"]
        self.gpb = m["groups_pb2"]
        self.sluice = m["sluice_pb2_grpc"].SluiceStub(channel)
        self.groups = m["groups_pb2_grpc"].GroupsStub(channel)

    # --- helpers --------------------------------------------------------------------

    def error(self, call, request, code, error_code):
        """Calls `call`, expects an error status `code`, returns (ErrorDetail, message).

        The detail is read as the .proto says: grpc-status-details-bin holds a
        google.rpc.Status with the same code and message (grpcio-status checks both),
        whose details pack an ErrorDetail in an Any.
        """
        try:
            call(request, timeout=TIMEOUT)
        except grpc.RpcError as e:
            assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
            status = rpc_status.from_call(e)
            assert status is not None, f"no google.rpc.Status in the details of {e.code()}: {e.details()}"
            assert status.code == code.value[0], (status.code, code)
            assert status.message == e.details(), (status.message, e.details())
            details = [a for a in status.details if a.Is(self.pb.ErrorDetail.DESCRIPTOR)]
            assert len(details) == 1, f"one ErrorDetail expected in {status.details}"
            assert details[0].type_url == "type.googleapis.com/sluice.v1.ErrorDetail", details[0].type_url
            detail = self.pb.ErrorDetail()
            details[0].Unpack(detail)
            want = self.pb.ErrorCode.Name(error_code)
            got = self.pb.ErrorCode.Name(detail.code)
            assert detail.code == error_code, f"expected {want}, got {got}: {e.details()}"
            return detail, e.details()
        raise AssertionError(f"expected {code}, the call succeeded")

    def reflection(self, version):
        """The services reflection `version` lists, and the file it gives for Sluice.

        grpcio-reflection ships stubs for v1alpha only; v1 has the same messages (it is
        the same protocol, renamed), so v1 is called at its own method path with them.
        """
        method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
        info = self.channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="sluice.v1.Sluice"),
        ]
        answers = list(info(iter(requests), timeout=TIMEOUT))
        assert len(answers) == 2, answers
        services = sorted(s.name for s in answers[0].list_services_response.service)
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in answers[1].file_descriptor_response.file_descriptor_proto
        ]
        return services, files

    # --- the checks, in order -------------------------------------------------------

    def health_lists_both_services(self):
        health = health_pb2_grpc.HealthStub(self.channel)
        for service in ["", "sluice.v1.Sluice", "sluice.v1.Groups"]:
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert r.status == health_pb2.HealthCheckResponse.SERVING, (service, r)
        try:
            health.Check(health_pb2.HealthCheckRequest(service="sluice.v1.Nope"), timeout=TIMEOUT)
            raise AssertionError("an unknown service has no health")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e

    def reflection_v1_and_v1alpha_list_the_services(self):
        for version in ["v1", "v1alpha"]:
            services, files = self.reflection(version)
            assert services == EXPECTED_SERVICES, (version, services)
            sluice = [f for f in files if f.name == "sluice/v1/sluice.proto"]
            assert sluice, (version, [f.name for f in files])
            assert [s.name for s in sluice[0].service] == ["Sluice"], sluice[0].service
            methods = {m.name for m in sluice[0].service[0].method}
            assert {"Produce", "Fetch", "CreateTopic", "Metadata"} <= methods, methods

    def create_topic(self):
        pb = self.pb
        r = self.sluice.CreateTopic(
            pb.CreateTopicRequest(name=TOPIC, partitions=3, config={"retention.ms": "-1"}), timeout=TIMEOUT
        )
        assert r.topic.name == TOPIC and len(r.topic.partitions) == 3, r
        assert r.topic.config["retention.ms"] == "-1" and list(r.topic.overridden) == ["retention.ms"], r.topic
        # partitions left unset (0) is refused, and creates nothing.
        _, message = self.error(
            self.sluice.CreateTopic,
            pb.CreateTopicRequest(name="py-unset"),
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.INVALID_REQUEST,
        )
        assert message == "invalid request: a topic needs at least 1 partition (partitions is 0 or unset)", message
        self.error(
            self.sluice.CreateTopic,
            pb.CreateTopicRequest(name=TOPIC, partitions=1),
            grpc.StatusCode.ALREADY_EXISTS,
            pb.TOPIC_ALREADY_EXISTS,
        )
        self.error(
            self.sluice.CreateTopic,
            pb.CreateTopicRequest(name="bad/name", partitions=1),
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.INVALID_TOPIC_NAME,
        )
        self.error(
            self.sluice.CreateTopic,
            pb.CreateTopicRequest(name="py-cfg", partitions=1, config={"colour": "red"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.INVALID_CONFIG,
        )

    def describe_topic(self):
        pb = self.pb
        t = self.sluice.DescribeTopic(pb.DescribeTopicRequest(name=TOPIC), timeout=TIMEOUT).topic
        assert [p.partition for p in t.partitions] == [0, 1, 2], t
        for p in t.partitions:
            assert (p.log_start_offset, p.log_end_offset, p.high_watermark) == (0, 0, 0), p
            assert p.leader >= 0 and p.leader in p.replicas and p.leader in p.isr, p
        assert not t.internal
        detail, message = self.error(
            self.sluice.DescribeTopic,
            pb.DescribeTopicRequest(name="py-ghost"),
            grpc.StatusCode.NOT_FOUND,
            pb.UNKNOWN_TOPIC_OR_PARTITION,
        )
        assert message == "unknown topic 'py-ghost'", message
        assert not detail.retriable

    def list_topics(self):
        pb = self.pb
        r = self.sluice.ListTopics(pb.ListTopicsRequest(), timeout=TIMEOUT)
        assert [(t.name, t.partitions, t.internal) for t in r.topics] == [(TOPIC, 3, False)], r
        r = self.sluice.ListTopics(pb.ListTopicsRequest(include_internal=True), timeout=TIMEOUT)
        internal = [t for t in r.topics if t.internal]
        assert [t.name for t in internal] == ["__consumer_offsets"], r

    def metadata(self):
        pb = self.pb
        r = self.sluice.Metadata(pb.MetadataRequest(topics=[TOPIC]), timeout=TIMEOUT)
        assert len(r.brokers) == 1 and r.brokers[0].address, r
        assert r.responding_broker == r.brokers[0].id, r
        assert [t.name for t in r.topics] == [TOPIC] and len(r.topics[0].partitions) == 3, r
        for p in r.topics[0].partitions:
            assert p.leader == r.brokers[0].id and list(p.isr) == [p.leader], p
        everything = self.sluice.Metadata(pb.MetadataRequest(), timeout=TIMEOUT)
        assert TOPIC in [t.name for t in everything.topics], everything
        self.error(
            self.sluice.Metadata,
            pb.MetadataRequest(topics=["py-ghost"]),
            grpc.StatusCode.NOT_FOUND,
            pb.UNKNOWN_TOPIC_OR_PARTITION,
        )

    def list_offsets(self):
        pb = self.pb
        for spec in [pb.OFFSET_SPEC_EARLIEST, pb.OFFSET_SPEC_LATEST]:
            r = self.sluice.ListOffsets(pb.ListOffsetsRequest(topic=TOPIC, partition=1, spec=spec), timeout=TIMEOUT)
            assert r.offset == 0, (spec, r)
        r = self.sluice.ListOffsets(
            pb.ListOffsetsRequest(topic=TOPIC, partition=1, spec=pb.OFFSET_SPEC_TIMESTAMP, timestamp_ms=1),
            timeout=TIMEOUT,
        )
        assert (r.offset, r.timestamp_ms) == (0, -1), r
        _, message = self.error(
            self.sluice.ListOffsets,
            pb.ListOffsetsRequest(topic=TOPIC, partition=9),
            grpc.StatusCode.NOT_FOUND,
            pb.UNKNOWN_TOPIC_OR_PARTITION,
        )
        assert message == f"unknown partition 9 of topic '{TOPIC}': it has partitions 0..3", message

    def produce_errors_carry_their_detail(self):
        pb = self.pb
        detail, message = self.error(
            self.sluice.Produce,
            pb.ProduceRequest(topic=TOPIC, partition=0, batch=b"not a batch"),
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.CORRUPT_BATCH,
        )
        assert message and not detail.retriable, (message, detail)
        _, message = self.error(
            self.sluice.Produce,
            pb.ProduceRequest(topic="py-ghost", batch=b"not a batch"),
            grpc.StatusCode.NOT_FOUND,
            pb.UNKNOWN_TOPIC_OR_PARTITION,
        )
        assert message == "unknown topic 'py-ghost'", message
        self.error(
            self.sluice.Produce,
            pb.ProduceRequest(topic=TOPIC, acks=9, batch=b"x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.INVALID_REQUEST,
        )
        t = self.sluice.DescribeTopic(pb.DescribeTopicRequest(name=TOPIC), timeout=TIMEOUT).topic
        assert all(p.log_end_offset == 0 for p in t.partitions), "refused batches stored nothing"

    def fetch_long_polls_an_empty_partition(self):
        pb = self.pb
        started = time.monotonic()
        # replica_id and current_leader_epoch left unset: a consumer.
        r = self.sluice.Fetch(
            pb.FetchRequest(topic=TOPIC, partition=2, offset=0, max_wait_ms=200, min_bytes=1), timeout=TIMEOUT
        )
        waited = time.monotonic() - started
        assert r.batches == b"" and (r.high_watermark, r.log_end_offset, r.log_start_offset) == (0, 0, 0), r
        assert 0.15 <= waited < 5, f"a 200 ms long poll took {waited:.3f} s"
        # Out of range: the detail carries the valid range.
        detail, message = self.error(
            self.sluice.Fetch,
            pb.FetchRequest(topic=TOPIC, partition=2, offset=5),
            grpc.StatusCode.OUT_OF_RANGE,
            pb.OFFSET_OUT_OF_RANGE,
        )
        assert (detail.log_start_offset, detail.high_watermark) == (0, 0), detail
        assert message == f"offset 5 is out of range for {TOPIC}-2: valid offsets are 0 to 0", message
        # replica_id set (0 is a broker id): refused until brokers replicate.
        self.error(
            self.sluice.Fetch,
            pb.FetchRequest(topic=TOPIC, partition=2, replica_id=0),
            grpc.StatusCode.UNIMPLEMENTED,
            pb.UNSUPPORTED,
        )

    def groups_find_coordinator_and_list(self):
        gpb = self.gpb
        r = self.groups.FindCoordinator(gpb.FindCoordinatorRequest(group="py-group"), timeout=TIMEOUT)
        meta = self.sluice.Metadata(self.pb.MetadataRequest(), timeout=TIMEOUT)
        assert (r.broker_id, r.address) == (meta.brokers[0].id, meta.brokers[0].address), (r, meta.brokers)
        offsets = [t for t in meta.topics if t.name == "__consumer_offsets"]
        assert offsets and r.offsets_partition < len(offsets[0].partitions), (r, offsets)
        groups = self.groups.ListGroups(gpb.ListGroupsRequest(), timeout=TIMEOUT)
        assert list(groups.groups) == [], groups
        self.error(
            self.groups.DescribeGroup,
            gpb.DescribeGroupRequest(group="py-group"),
            grpc.StatusCode.NOT_FOUND,
            self.pb.GROUP_NOT_FOUND,
        )

    def delete_topic(self):
        pb = self.pb
        self.sluice.DeleteTopic(pb.DeleteTopicRequest(name=TOPIC), timeout=TIMEOUT)
        self.error(
            self.sluice.DescribeTopic,
            pb.DescribeTopicRequest(name=TOPIC),
            grpc.StatusCode.NOT_FOUND,
            pb.UNKNOWN_TOPIC_OR_PARTITION,
        )


ORDER = [
    "health_lists_both_services",
    "reflection_v1_and_v1alpha_list_the_services",
    "create_topic",
    "describe_topic",
    "list_topics",
    "metadata",
    "list_offsets",
    "produce_errors_carry_their_detail",
    "fetch_long_polls_an_empty_partition",
    "groups_find_coordinator_and_list",
    "delete_topic",
]


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with tempfile.TemporaryDirectory(prefix="sluice-grpc-python-") as out:
        modules = generate(out)
        with grpc.insecure_channel(sys.argv[1]) as channel:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
            checks = Checks(channel, modules)
            for name in ORDER:
                try:
                    getattr(checks, name)()
                except Exception as e:
                    print(f"FAILED {name}: {type(e).__name__}: {e}", file=sys.stderr)
                    raise SystemExit(1) from e
                print(f"ok {name}")
    print(f"{len(ORDER)} checks passed")


if __name__ == "__main__":
    main()
