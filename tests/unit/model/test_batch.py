from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from agent.model import Batch, Signal, count_items, otlp_json
from agent.model.otlp_json import OTLPJSONError
from agent.testing import make_logs, make_metrics, make_traces, spans_of


def test_parse_counts_items_of_each_signal() -> None:
    for batch, n in ((make_traces(7, resources=2), 14), (make_metrics(9), 9), (make_logs(4, resources=3), 12)):
        parsed = Batch.parse(batch.signal, batch.serialize())
        assert parsed.items == n
        assert count_items(batch.signal, parsed.message) == n


def test_parse_rejects_garbage() -> None:
    with pytest.raises(DecodeError):
        Batch.parse(Signal.TRACES, b"\xff\xff\xff\xff garbage")


def test_merge_joins_encodings_and_keeps_order() -> None:
    a, b = make_traces(3, seed=1), make_traces(5, seed=2)
    merged = Batch.merge([a, b])
    assert merged.items == 8
    assert merged.serialize() == a.serialize() + b.serialize()
    names = [s.span_id for s in spans_of([merged])]
    assert names == [s.span_id for s in spans_of([a, b])]
    assert len(merged.message.resource_spans) == 2


def test_mutable_drops_cached_bytes_and_recounts() -> None:
    batch = Batch.parse(Signal.TRACES, make_traces(4).serialize())
    before = batch.serialize()
    msg = batch.mutable()
    del msg.resource_spans[0].scope_spans[0].spans[0]
    assert batch.items == 3
    assert batch.serialize() != before
    assert Batch.parse(Signal.TRACES, batch.serialize()).items == 3


def test_copy_is_independent() -> None:
    original = make_traces(2)
    clone = original.copy()
    clone.mutable().resource_spans[0].scope_spans[0].spans[0].name = "changed"
    assert spans_of([original])[0].name == "predict"
    raw = Batch.parse(Signal.TRACES, original.serialize())
    clone2 = raw.copy()
    clone2.mutable().resource_spans[0].scope_spans[0].spans[0].name = "changed"
    assert spans_of([raw])[0].name == "predict"


@pytest.mark.parametrize("make", [make_traces, make_metrics, make_logs])
def test_otlp_json_round_trip(make) -> None:  # type: ignore[no-untyped-def]
    batch = make(6)
    data = otlp_json.encode(batch.message)
    assert otlp_json.decode(batch.signal, data) == batch.message


def test_otlp_json_ids_are_hex() -> None:
    batch = make_traces(1)
    doc = otlp_json.to_dict(batch.message)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == spans_of([batch])[0].trace_id.hex()
    assert span["kind"] == 2


def test_otlp_json_errors_say_where() -> None:
    with pytest.raises(OTLPJSONError, match="invalid JSON"):
        otlp_json.decode(Signal.LOGS, b"{not json")
    with pytest.raises(OTLPJSONError, match=r"spans\[0\]\.traceId"):
        otlp_json.decode(Signal.TRACES, b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}')
    with pytest.raises(OTLPJSONError):
        otlp_json.decode(Signal.TRACES, b'{"resourceSpans": 7}')
    with pytest.raises(OTLPJSONError, match="expected a JSON object"):
        otlp_json.decode(Signal.TRACES, b"[1,2]")


def test_otlp_json_accepts_snake_case_and_ignores_unknown_fields() -> None:
    doc = b'{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"000102030405060708090a0b0c0d0e0f","name":"n","futureField":1}]}]}]}'
    msg = otlp_json.decode(Signal.TRACES, doc)
    assert msg.resource_spans[0].scope_spans[0].spans[0].trace_id == bytes(range(16))


@pytest.mark.parametrize("make", [make_traces, make_metrics, make_logs])
def test_otlp_json_encoder_matches_the_protobuf_json_mapping(make) -> None:  # type: ignore[no-untyped-def]
    """The fast encoder gives exactly what json_format gives, with OTLP's hex ids."""
    import base64

    from google.protobuf import json_format

    batch = make(12)
    msg = batch.mutable()
    # Exercise the rarer value kinds too: bytes, nested lists and maps, empty value, NaN.
    first = msg.resource_spans[0].scope_spans[0].spans[0] if batch.signal is Signal.TRACES else None
    if first is not None:
        from agent.testing import key_values
        first.attributes.extend(key_values({"raw": b"\x00\x01", "nested": {"a": [1, 2.5, "x"], "b": {}}}))
        first.attributes.add(key="empty")
        first.attributes.add(key="nan").value.double_value = float("nan")
    expected = json_format.MessageToDict(msg, use_integers_for_enums=True)

    def hexify(node):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hexify(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [hexify(x) for x in node]
        return node

    assert otlp_json.to_dict(msg) == hexify(expected)
