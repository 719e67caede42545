"""OTLP → Jaeger api_v2: a table of cases, each decoded with the generated messages and checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent._proto.jaeger.api_v2 import collector_pb2, model_pb2
from agent.exporters.jaeger.translate import Translator
from agent.model.protowire import delimited
from agent.testing import key_values, make_traces
from tests.unit.exporters.jaeger.mapping import check_request, tag_map

TRACE = bytes(range(1, 17))
SPAN = bytes(range(21, 29))
PARENT = bytes(range(31, 39))
START = 1_700_000_000_123_456_789


def request(*resources: tuple[dict[str, Any], list[tuple[str, str, list[Span]]]]) -> ExportTraceServiceRequest:
    """resources: (resource attributes, [(scope name, scope version, spans)])."""
    req = ExportTraceServiceRequest()
    for attrs, scopes in resources:
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(key_values(attrs))
        for name, version, spans in scopes:
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = name, version
            ss.spans.extend(spans)
    return req


def span(**fields: Any) -> Span:
    attrs = fields.pop("attributes", {})
    base: dict[str, Any] = {"trace_id": TRACE, "span_id": SPAN, "name": "predict",
                            "start_time_unix_nano": START, "end_time_unix_nano": START + 2_500_999}
    s = Span(**{**base, **fields})
    s.attributes.extend(key_values(attrs))
    return s


def one(s: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    return request((resource if resource is not None else {"service.name": "ranker"},
                    [("flowglass.test", "1.2", [s])]))


def translate(req: ExportTraceServiceRequest, translator: Translator | None = None) -> list[model_pb2.Batch]:
    out = (translator or Translator()).requests(req.SerializeToString())
    batches = [collector_pb2.PostSpansRequest.FromString(body).batch for body, _ in out]
    assert [n for _, n in out] == [len(b.spans) for b in batches]
    return batches


def event(name: str, t: int, attrs: dict[str, Any] | None = None, dropped: int = 0) -> Span.Event:
    e = Span.Event(name=name, time_unix_nano=t, dropped_attributes_count=dropped)
    e.attributes.extend(key_values(attrs or {}))
    return e


Check = Callable[[list[model_pb2.Batch]], None]


def tags(batches: list[model_pb2.Batch], i: int = 0) -> dict[str, tuple[str, Any]]:
    return tag_map(batches[0].spans[i].tags)


def _kind(kind: int, text: str | None) -> tuple[ExportTraceServiceRequest, Check]:
    def check(b: list[model_pb2.Batch]) -> None:
        assert tags(b).get("span.kind") == (("STRING", text) if text else None)
    return one(span(kind=kind)), check


def _status(code: int, message: str, expected: dict[str, Any], absent: tuple[str, ...] = ()) -> Any:
    def check(b: list[model_pb2.Batch]) -> None:
        t = tags(b)
        for key, value in expected.items():
            assert t[key] == value
        for key in absent:
            assert key not in t
    return one(span(status=Status(code=code, message=message), attributes={"error": "nope"})), check


CASES: dict[str, tuple[ExportTraceServiceRequest, Check]] = {
    "kind unspecified": _kind(Span.SPAN_KIND_UNSPECIFIED, None),
    "kind internal": _kind(Span.SPAN_KIND_INTERNAL, "internal"),
    "kind server": _kind(Span.SPAN_KIND_SERVER, "server"),
    "kind client": _kind(Span.SPAN_KIND_CLIENT, "client"),
    "kind producer": _kind(Span.SPAN_KIND_PRODUCER, "producer"),
    "kind consumer": _kind(Span.SPAN_KIND_CONSUMER, "consumer"),
    "status unset": _status(Status.STATUS_CODE_UNSET, "", {"error": ("STRING", "nope")},
                            ("otel.status_code", "otel.status_description")),
    "status ok": _status(Status.STATUS_CODE_OK, "", {"otel.status_code": ("STRING", "OK"),
                                                     "error": ("STRING", "nope")}, ("otel.status_description",)),
    "status error with description": _status(
        Status.STATUS_CODE_ERROR, "model timed out",
        {"otel.status_code": ("STRING", "ERROR"), "otel.status_description": ("STRING", "model timed out"),
         "error": ("BOOL", True)}),
    "status error without description": _status(
        Status.STATUS_CODE_ERROR, "", {"otel.status_code": ("STRING", "ERROR"), "error": ("BOOL", True)},
        ("otel.status_description",)),
}


def _attribute_types() -> tuple[ExportTraceServiceRequest, Check]:
    attrs = {"s": "text é", "empty": "", "t": True, "f": False, "i": -42, "big": 2**63 - 1, "zero": 0,
             "d": 0.25, "nd": -1e300, "b": b"\x00\xffbin", "arr": ["a", 1, 2.5, True, b"\x01"],
             "map": {"k": "v", "n": {"x": [1]}}, "ints": [1, 2, 3]}
    req = one(span(attributes=attrs))
    req.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="none")  # an empty value

    def check(b: list[model_pb2.Batch]) -> None:
        t = tags(b)
        assert t["s"] == ("STRING", "text é") and t["empty"] == ("STRING", "")
        assert t["t"] == ("BOOL", True) and t["f"] == ("BOOL", False)
        assert t["i"] == ("INT64", -42) and t["big"] == ("INT64", 2**63 - 1) and t["zero"] == ("INT64", 0)
        assert t["d"] == ("FLOAT64", 0.25) and t["nd"] == ("FLOAT64", -1e300)
        assert t["b"] == ("BINARY", b"\x00\xffbin")
        assert t["arr"] == ("STRING", '["a",1,2.5,true,"AQ=="]')
        assert t["map"] == ("STRING", '{"k":"v","n":{"x":[1]}}')
        assert t["none"] == ("STRING", "")
    return req, check


def _events() -> tuple[ExportTraceServiceRequest, Check]:
    s = span(events=[event("tokens", START + 10, {"count": 42, "ratio": 0.5}),
                     event("exception", START + 20, {"event": "override", "exception.type": "ValueError"}),
                     event("", START + 30, {"only": "attrs"}, dropped=3),
                     event("bare", 1_700_000_001_000_000_000), event("at zero", 0)])

    def check(b: list[model_pb2.Batch]) -> None:
        logs = b[0].spans[0].logs
        assert tag_map(logs[0].fields) == {"event": ("STRING", "tokens"), "count": ("INT64", 42),
                                           "ratio": ("FLOAT64", 0.5)}
        assert tag_map(logs[1].fields)["event"] == ("STRING", "override")
        assert tag_map(logs[2].fields) == {"only": ("STRING", "attrs"),
                                           "otel.dropped_attributes_count": ("INT64", 3)}
        assert logs[3].timestamp.seconds == 1_700_000_001 and logs[3].timestamp.nanos == 0
        assert not logs[4].HasField("timestamp") or logs[4].timestamp.ToNanoseconds() == 0
    return one(s), check


def _links_and_parent() -> tuple[ExportTraceServiceRequest, Check]:
    links = [Span.Link(trace_id=bytes(16 * [i]), span_id=bytes(8 * [i]), attributes=key_values({"a": 1}))
             for i in (7, 8)]
    s = span(parent_span_id=PARENT, links=links)

    def check(b: list[model_pb2.Batch]) -> None:
        refs = b[0].spans[0].references
        assert [(r.ref_type, r.trace_id, r.span_id) for r in refs] == [
            (model_pb2.CHILD_OF, TRACE, PARENT),
            (model_pb2.FOLLOWS_FROM, bytes(16 * [7]), bytes(8 * [7])),
            (model_pb2.FOLLOWS_FROM, bytes(16 * [8]), bytes(8 * [8])),
        ]
    return one(s), check


def _times() -> tuple[ExportTraceServiceRequest, Check]:
    spans = [span(start_time_unix_nano=START, end_time_unix_nano=START + 3_000_000_001),  # > 1 s
             span(start_time_unix_nano=START, end_time_unix_nano=START),  # zero
             span(start_time_unix_nano=START, end_time_unix_nano=START - 1_500),  # ends before it starts
             span(start_time_unix_nano=START, end_time_unix_nano=START + 1_500),  # below 16 µs
             span(start_time_unix_nano=START, end_time_unix_nano=START + 999_999_999)]  # just below 1 s

    def check(b: list[model_pb2.Batch]) -> None:
        got = b[0].spans
        assert (got[0].start_time.seconds, got[0].start_time.nanos) == (1_700_000_000, 123_456_789)
        assert (got[0].duration.seconds, got[0].duration.nanos) == (3, 1)
        assert got[0].start_time.ToMicroseconds() == 1_700_000_000_123_456  # what Jaeger stores
        assert got[0].duration.ToMicroseconds() == 3_000_000
        assert got[1].duration.ToNanoseconds() == 0
        assert (got[2].duration.seconds, got[2].duration.nanos) == (0, -1_500)
        assert got[3].duration.ToNanoseconds() == 1_500 and got[4].duration.nanos == 999_999_999
    return request(({"service.name": "s"}, [("", "", spans)])), check


def _multiple_resources() -> tuple[ExportTraceServiceRequest, Check]:
    req = request(
        ({"service.name": "ranker", "host.name": "n1", "k8s.pod.uid": b"\x01"},
         [("a", "", [span(span_id=b"\x01" * 8)]), ("b", "2", [span(span_id=b"\x02" * 8)])]),
        ({"service.name": "empty"}, [("a", "", [])]),  # no spans: no batch
        ({"process.executable.name": "python3", "n": 3}, [("", "", [span(span_id=b"\x03" * 8)])]),
        ({}, [("", "", [span(span_id=b"\x04" * 8)])]),
        ({"service.name": ""}, [("", "", [span(span_id=b"\x05" * 8)])]),  # empty counts as missing
    )

    def check(b: list[model_pb2.Batch]) -> None:
        assert [x.process.service_name for x in b] == [
            "ranker", "unknown_service:python3", "unknown_service", "unknown_service"]
        assert [[s.span_id[0] for s in x.spans] for x in b] == [[1, 2], [3], [4], [5]]
        assert tag_map(b[0].process.tags) == {"host.name": ("STRING", "n1"), "k8s.pod.uid": ("BINARY", b"\x01")}
        assert tag_map(b[0].spans[1].tags)["otel.scope.version"] == ("STRING", "2")
        assert "otel.scope.name" not in tag_map(b[2].spans[0].tags)
    return req, check


def _extras() -> tuple[ExportTraceServiceRequest, Check]:
    s = span(trace_state="vendor=1", flags=0x301, dropped_attributes_count=2, dropped_events_count=3,
             dropped_links_count=4)

    def check(b: list[model_pb2.Batch]) -> None:
        t = tags(b)
        assert t["w3c.tracestate"] == ("STRING", "vendor=1")
        assert (t["otel.dropped_attributes_count"], t["otel.dropped_events_count"],
                t["otel.dropped_links_count"]) == (("INT64", 2), ("INT64", 3), ("INT64", 4))
        assert b[0].spans[0].flags == 1
    return one(s), check


def _long_values() -> tuple[ExportTraceServiceRequest, Check]:
    s = span(name="n" * 200, attributes={"text": "é" * 150, "blob": bytes(300)},
             events=[event("stack", START + 5, {"exception.stacktrace": "frame\n" * 4000})])

    def check(b: list[model_pb2.Batch]) -> None:
        assert b[0].spans[0].operation_name == "n" * 200
        assert len(tag_map(b[0].spans[0].logs[0].fields)["exception.stacktrace"][1]) == 24_000
    return one(s), check


CASES |= {
    "ids of unusual lengths": (one(span(trace_id=b"\x01" * 8, span_id=b"\x02" * 4, parent_span_id=b"\x03" * 3,
                                        links=[Span.Link(trace_id=b"\x04" * 5, span_id=b"\x05" * 5)])),
                               lambda b: None),
    "standard ids, unusual parent": (one(span(parent_span_id=b"\x03" * 3)), lambda b: None),
    "long values (multi-byte lengths)": _long_values(),
    "every attribute type": _attribute_types(),
    "events with attributes": _events(),
    "parent and links": _links_and_parent(),
    "start and duration": _times(),
    "multiple resources, missing service.name": _multiple_resources(),
    "trace state, flags, dropped counts": _extras(),
    "generated batch": (make_traces(40, resources=3, seed=5, error_every=3).message, lambda b: None),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_field_matches_the_otlp_input(case: str) -> None:
    req, check = CASES[case]
    batches = translate(req)
    check_request(req, batches)
    check(batches)


def test_cached_encodings_give_the_same_bytes_and_survive_eviction() -> None:
    req = make_traces(50, resources=2, seed=9, error_every=4,
                      span_attrs={"ml.score": 0.5, "tags": ["a", "b"]}).message
    tiny = Translator(cache_limit=3)  # caches are emptied again and again
    warm = Translator()
    for request in [req] + [r for r, _ in CASES.values()]:
        data = request.SerializeToString()
        fresh = Translator().requests(data)
        for _ in range(3):
            assert tiny.requests(data) == fresh
            assert warm.requests(data) == fresh
    check_request(req, translate(req, tiny))


def test_error_status_replaces_an_error_attribute_only_once() -> None:
    s = span(status=Status(code=Status.STATUS_CODE_ERROR), attributes={"error": False, "errors": 2})
    got = translate(one(s))[0].spans[0].tags
    assert [kv.key for kv in got].count("error") == 1
    assert tag_map(got)["error"] == ("BOOL", True) and tag_map(got)["errors"] == ("INT64", 2)


def test_output_is_what_the_generated_serializer_writes() -> None:
    """Byte for byte: no stray, duplicate or out-of-order fields, defaults left out."""
    reqs = [make_traces(20, resources=2, seed=3, error_every=2).message] + [req for req, _ in CASES.values()]
    for req in reqs:
        for body, _ in Translator().requests(req.SerializeToString()):
            assert collector_pb2.PostSpansRequest.FromString(body).SerializeToString() == body


def test_encodings_in_another_field_order_with_unknown_fields_are_read_right() -> None:
    """Serializers may write fields in any order and add fields this version does not know."""
    s = span(parent_span_id=PARENT, attributes={"a": "x"}, status=Status(code=Status.STATUS_CODE_ERROR),
             events=[event("e", START + 1)])
    link = delimited(0x12, bytes(8 * [9])) + delimited(0x0A, bytes(16 * [9]))  # span_id before trace_id
    value_first = delimited(0x12, b"\x18\x05") + delimited(0x0A, b"b")  # an attribute: value, then key
    error_attr = delimited(0x12, b"\x10\x00") + delimited(0x0A, b"error")  # replaced by error=true
    event_attr = delimited(0x12, b"\x0a\x01x") + delimited(0x0A, b"event")  # wins over the name
    unknown = b"\xf8\x07\x01"  # field 127, varint 1
    ev = delimited(0x1A, event_attr) + delimited(0x12, b"e") + b"\x09" + (START + 1).to_bytes(8, "little")
    raw_span = (unknown + delimited(0x6A, link) + delimited(0x4A, value_first) + delimited(0x4A, error_attr)
                + delimited(0x5A, ev) + s.SerializeToString())
    scope = delimited(0x0A, b"lib")
    data = delimited(0x0A, delimited(0x12, delimited(0x0A, scope) + delimited(0x12, raw_span))
                     + delimited(0x0A, delimited(0x0A, key_values({"service.name": "svc"})[0].SerializeToString())))
    req = ExportTraceServiceRequest.FromString(data)
    assert len(req.resource_spans[0].scope_spans[0].spans[0].attributes) == 3
    batches = [collector_pb2.PostSpansRequest.FromString(body).batch for body, _ in Translator().requests(data)]
    check_request(req, batches)
    got = batches[0].spans[0]
    assert [(r.ref_type, r.span_id) for r in got.references] == [
        (model_pb2.CHILD_OF, PARENT), (model_pb2.FOLLOWS_FROM, bytes(8 * [9]))]
    assert tag_map(got.tags)["b"] == ("INT64", 5) and tag_map(got.tags)["error"] == ("BOOL", True)
    assert tag_map(got.logs[0].fields) == {"event": ("STRING", "x")}


def test_a_malformed_request_is_refused() -> None:
    from agent.exporters.jaeger.translate import MalformedError

    with pytest.raises(MalformedError):
        Translator().requests(b"\x0a\x05\x12\x03\x12\x09")


def test_values_not_seen_before_are_written_from_the_cached_head_of_their_key() -> None:
    """New strings and doubles after a known key take the head path (`encode.value_head`);
    shapes it must not take (0.0, -0.0, a double whose first byte is 0, empty and long
    strings, an attribute with one more field) give the same bytes as a fresh translator."""
    values: list[Any] = ["a", "bc", "", "é" * 70, "x" * 200, "de", 0.25, 0.0, -0.0, 0.5, 1e-300, 3.75, 7, True]
    spans = [span(span_id=bytes([i + 1] * 8), attributes={"v": v, "w": f"id-{i}", "q": i / 7})
             for i, v in enumerate(values)]
    # An attribute that begins as a cached head expects but has a field after its value.
    odd = span(span_id=bytes([99] * 8))
    odd.MergeFromString(delimited(0x4A, delimited(0x0A, b"w") + delimited(0x12, b"\x0a\x04id-x") + b"\x18\x01"))
    req = request(({"service.name": "svc"}, [("lib", "1", [*spans, odd])]))
    data = req.SerializeToString()
    warm, tiny = Translator(), Translator(cache_limit=3)  # tiny: a new generation every attribute
    out = warm.requests(data)
    assert warm._tags.heads and tiny.requests(data) == out  # the path was taken
    assert out == warm.requests(data) == tiny.requests(data)
    for body, _ in out:
        assert collector_pb2.PostSpansRequest.FromString(body).SerializeToString() == body
    batches = translate(req, Translator())
    check_request(req, batches)
    for i, v in enumerate(values):
        t = tags(batches, i)
        assert t["w"] == ("STRING", f"id-{i}") and t["q"] == ("FLOAT64", i / 7)
        assert t["v"][1] == v
    assert tags(batches, len(values))["w"] == ("STRING", "id-x")
    # Fresh translators (no heads) agree with the warm one on every span, one span at a time.
    for i in range(len(spans)):
        single = request(({"service.name": "svc"}, [("lib", "1", [req.resource_spans[0].scope_spans[0].spans[i]])]))
        assert Translator().requests(single.SerializeToString()) == warm.requests(single.SerializeToString())


def test_times_at_the_edges_of_the_table_paths() -> None:
    """Start and event nanos around 2**28 (5 varint bytes) and durations around 2**14,
    2**21 and 2**28 ns: the tables and the general path write what the serializer writes."""
    base = 1_700_000_000 * 10**9
    starts = [0, 1, 2**28 - 1, 2**28, 999_999_999, base, base + 2**28, base + 999_999_999, 5 * 10**9 + 2**28]
    lengths = [0, 1, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 10**9 - 1, 10**9 + 2**28]
    spans = [span(span_id=bytes([i + 1, j + 1] * 4), start_time_unix_nano=t, end_time_unix_nano=t + d,
                  events=[event("e", t + d)])
             for i, t in enumerate(starts) for j, d in enumerate(lengths)]
    req = request(({"service.name": "svc"}, [("lib", "1", spans)]))
    translator = Translator()
    for _ in range(2):  # cold, then cached
        out = translator.requests(req.SerializeToString())
        for body, _ in out:
            assert collector_pb2.PostSpansRequest.FromString(body).SerializeToString() == body
        batches = [collector_pb2.PostSpansRequest.FromString(body).batch for body, _ in out]
        check_request(req, batches)
        got = iter(batches[0].spans)
        for t in starts:
            for d in lengths:
                s = next(got)
                assert s.start_time.ToNanoseconds() == t and s.duration.ToNanoseconds() == d
                assert s.logs[0].timestamp.ToNanoseconds() == t + d
