"""RecordBuilder: topics, keys, encodings, headers and the size limit; the Sarama-compatible partitioner."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.config.types import dec_hook
from agent.exporters.kafka import KafkaExporterConfig
from agent.exporters.kafka.records import RecordBuilder, SaramaPartitioner, fnv1a_32, sarama_partition
from agent.model import Batch, ClientInfo, Signal, otlp_json
from agent.testing import make_logs, make_metrics, make_traces, spans_of


def builder(**options: object) -> RecordBuilder:
    return RecordBuilder(msgspec.convert(options, KafkaExporterConfig, dec_hook=dec_hook))


def test_by_default_one_record_holds_the_batchs_own_bytes() -> None:
    batch = Batch(Signal.TRACES, data=make_traces(10).serialize())
    [record] = builder().build(batch).records
    assert record.value is batch.serialize()
    assert (record.topic, record.key, record.headers, record.items) == ("otlp_spans", None, [], 10)


def test_otlp_json_records_decode_to_the_same_request() -> None:
    batch = make_metrics(6)
    [record] = builder(encoding="otlp_json").build(batch).records
    assert record.topic == "otlp_metrics"
    assert otlp_json.decode(Signal.METRICS, record.value) == batch.message


def test_traces_by_id_make_one_record_per_trace_keyed_by_its_hex_id() -> None:
    batch = make_traces(12, traces=4)
    records = builder(partition_traces_by_id=True).build(batch).records
    assert len(records) == 4
    for record in records:
        spans = spans_of([Batch.parse(Signal.TRACES, record.value)])
        assert {s.trace_id.hex().encode() for s in spans} == {record.key}
        assert record.items == len(spans) == 3


def test_metrics_by_resource_attributes_make_one_record_per_resource() -> None:
    batch = Batch.merge([make_metrics(3, service="a"), make_metrics(3, service="b"), make_metrics(3, service="a")])
    records = builder(partition_metrics_by_resource_attributes=True).build(batch).records
    # Resources "a-0" twice: same attributes, same key, same record.
    assert [r.items for r in records] == [6, 3]
    assert len({r.key for r in records}) == 2 and all(len(r.key or b"") == 16 for r in records)


def test_topic_from_attribute_routes_each_resource() -> None:
    batch = Batch.merge([make_traces(2, resource_attrs={"kafka.topic": "team-a"}),
                         make_traces(3), make_traces(4, resource_attrs={"kafka.topic": "team-b"})])
    records = builder(topic_from_attribute="kafka.topic").build(batch).records
    assert {(r.topic, r.items) for r in records} == {("team-a", 2), ("otlp_spans", 3), ("team-b", 4)}


def test_metadata_names_topic_and_key_and_is_copied_to_headers() -> None:
    client = ClientInfo(metadata={"x-tenant": ("ml",), "x-topic": ("tenant-logs",)})
    batch = Batch(Signal.LOGS, make_logs(2).message, client=client)
    b = builder(logs={"topic_from_metadata_key": "x-topic", "message_key_from_metadata_key": "x-tenant"},
                include_metadata_keys=["x-tenant", "absent"], record_headers={"source": "edge"})
    [record] = b.build(batch).records
    assert (record.topic, record.key) == ("tenant-logs", b"ml")
    assert record.headers == [("source", b"edge"), ("x-tenant", b"ml")]


def test_an_oversized_batch_is_split_into_records_that_fit() -> None:
    batch = make_traces(400, traces=10)
    limit = 20_000
    built = builder(producer={"max_message_bytes": limit}).build(batch)
    assert built.too_large_items == 0
    assert len(built.records) >= math.ceil(batch.nbytes / limit)
    assert all(r.size <= limit for r in built.records)
    got = spans_of([Batch.parse(Signal.TRACES, r.value) for r in built.records])
    assert [s.span_id for s in got] == [s.span_id for s in spans_of([batch])]


def test_an_item_alone_over_the_limit_is_left_out_and_counted() -> None:
    batch = make_logs(4)
    message = batch.mutable()
    message.resource_logs[0].scope_logs[0].log_records[2].body.string_value = "x" * 5000
    built = builder(producer={"max_message_bytes": 2000}).build(batch)
    assert built.too_large_items == 1
    kept = [lr.body.string_value for r in built.records
            for rl in ExportLogsServiceRequest.FromString(r.value).resource_logs
            for sl in rl.scope_logs for lr in sl.log_records]
    assert kept == ["inference done 0", "inference done 1", "inference done 3"]


def test_raw_logs_are_bodies_bytes_as_they_are_anything_else_as_json() -> None:
    batch = make_logs(3)
    records = batch.mutable().resource_logs[0].scope_logs[0].log_records
    records[1].body.bytes_value = b"\x00\x01raw"
    records[2].body.kvlist_value.values.add(key="model").value.string_value = "resnet"
    values = [r.value for r in builder(logs={"encoding": "raw"}).build(batch).records]
    assert values == [b'"inference done 0"', b"\x00\x01raw", b'{"model":"resnet"}']


def test_json_logs_are_objects_with_time_severity_and_trace_ids() -> None:
    batch = make_logs(1)
    record = batch.mutable().resource_logs[0].scope_logs[0].log_records[0]
    record.time_unix_nano = 1_700_000_000_123_456_789
    [out] = builder(logs={"encoding": "json"}).build(batch).records
    doc = json.loads(out.value)
    assert doc == {"body": "inference done 0", "timestamp": "2023-11-14T22:13:20.123456789Z",
                   "severity": "INFO", "trace_id": record.trace_id.hex(), "span_id": record.span_id.hex()}
    record.body.kvlist_value.values.add(key="event").value.string_value = "loaded"
    [out] = builder(logs={"encoding": "json"}).build(batch).records
    assert json.loads(out.value)["event"] == "loaded" and "body" not in json.loads(out.value)


def test_a_split_batch_keeps_whole_requests_per_record() -> None:
    [record] = builder(partition_traces_by_id=True).build(make_traces(3, traces=1)).records
    assert ExportTraceServiceRequest.FromString(record.value).resource_spans[0].resource.attributes


def test_fnv1a_matches_the_reference_vectors() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


@pytest.mark.parametrize(("key", "partitions", "want"), [
    # int32(0x811c9dc5) = -2128831035: Go's remainder keeps the sign, Sarama drops it.
    (b"", 4, 2128831035 % 4),
    (b"a", 7, abs(0xE40C292C - 2**32) % 7),
    (b"foobar", 10, abs(0xBF9CF968 - 2**32) % 10),
])
def test_sarama_partition_matches_go_arithmetic(key: bytes, partitions: int, want: int) -> None:
    assert sarama_partition(key, partitions) == want


def test_the_partitioner_hashes_keys_and_scatters_unkeyed_records() -> None:
    partitioner = SaramaPartitioner()
    assert partitioner(b"foobar", [3, 1, 0, 2, 4, 5, 6, 7, 8, 9], []) == sarama_partition(b"foobar", 10)
    assert {partitioner(None, [0, 1, 2], [1]) for _ in range(20)} == {1}
