"""The `redaction` processor: config, the Collector's key/value rules and order, summaries,
hashing, URL sanitizing, coverage of every attribute map and log bodies, and counters."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.component import Kind, Settings
from agent.components import default_registry
from agent.config import load_text
from agent.config.types import dec_hook
from agent.errors import ConfigError
from agent.model import Batch, Signal, new_request
from agent.processors.redaction import FACTORY, RedactionConfig
from agent.processors.redaction.processor import RedactionProcessor
from agent.processors.redaction.redactor import MASK, Redactor
from agent.testing import Sink, attrs_dict, from_any_value, key_values, make_logs, make_metrics, make_traces

ID = "redaction/test"


def convert(raw: dict[str, Any]) -> RedactionConfig:
    return msgspec.convert(raw, RedactionConfig, dec_hook=dec_hook)


def redact(signal: Signal, message: Any, **options: Any) -> Any:
    Redactor(convert(options)).redact(signal, message)
    return message


def span_batch(attrs: dict[str, Any], *, name: str = "predict", kind: int = Span.SPAN_KIND_SERVER,
               resource: dict[str, Any] | None = None, event: dict[str, Any] | None = None) -> Any:
    req = new_request(Signal.TRACES)
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(key_values(resource or {}))
    span = rs.scope_spans.add().spans.add()
    span.name = name
    span.kind = kind  # type: ignore[assignment]
    span.attributes.extend(key_values(attrs))
    if event is not None:
        span.events.add(name="e").attributes.extend(key_values(event))
    return req


def span_attrs(req: Any) -> dict[str, Any]:
    return attrs_dict(req.resource_spans[0].scope_spans[0].spans[0].attributes)


def log_request(body: Any, attrs: dict[str, Any] | None = None) -> Any:
    req = new_request(Signal.LOGS)
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.attributes.extend(key_values(attrs or {}))
    if body is not None:
        from agent.testing import any_value

        lr.body.CopyFrom(any_value(body))
    return req


def the_log(req: Any) -> Any:
    return req.resource_logs[0].scope_logs[0].log_records[0]


# -- config ------------------------------------------------------------------------------


def test_defaults_are_the_collectors() -> None:
    c = convert({})
    assert (c.allow_all_keys, c.allowed_keys, c.blocked_values, c.summary, c.hash_function) == (False, [], [], "silent", "")
    assert c.url_sanitizer.enabled is False and c.url_sanitizer.sanitize_span_name is True
    assert c.detectors == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"blocked_values": ["ok", "(unclosed"]}, r"blocked_values\[1\] '\(unclosed' is not a valid regular expression"),
        ({"allowed_values": ["["]}, "allowed_values"),
        ({"blocked_key_patterns": ["*x"]}, "blocked_key_patterns"),
        ({"ignored_key_patterns": ["(?P<"]}, "ignored_key_patterns"),
        ({"detectors": ["email", "email"]}, "more than once"),
        ({"url_sanitizer": {"enabled": True, "sanitize_span_name": False}}, "nothing to do"),
    ],
)
def test_invalid_configs_say_why(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert(raw)


@pytest.mark.parametrize("raw", [{"detectors": ["passport"]}, {"hash_function": "sha512"}, {"summary": "loud"}])
def test_unknown_choices_are_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        convert(raw)


def _yaml(processor: str) -> str:
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  redaction:
{processor}
exporters:
  debug: {{}}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [redaction]
      exporters: [debug]
"""


def test_db_sanitizer_is_named_as_the_collectors_unsupported_option() -> None:
    with pytest.raises(ConfigError, match=r"db_sanitizer.*not supported by Flowglass"):
        load_text(_yaml("    db_sanitizer:\n      sql:\n        enabled: true"), registry=default_registry(), environ={})


def test_a_full_config_loads() -> None:
    text = _yaml(
        "    allow_all_keys: true\n    blocked_values: ['4[0-9]{12}']\n    detectors: [email, iban]\n"
        "    hash_function: sha3\n    summary: debug\n    url_sanitizer:\n      enabled: true\n      attributes: [url.full]"
    )
    config = load_text(text, registry=default_registry(), environ={})
    assert config.pipelines


# -- keys --------------------------------------------------------------------------------


def test_empty_allowed_keys_fails_closed_but_keeps_ignored_keys() -> None:
    req = redact(Signal.TRACES, span_batch({"user": "x", "id": 5, "safe": "y"}), ignored_keys=["safe"])
    assert span_attrs(req) == {"safe": "y"}


def test_allowed_keys_keep_only_those_and_summary_debug_lists_them() -> None:
    req = redact(
        Signal.TRACES,
        span_batch({"group": "g", "id": 5, "credit_card": "4111111111111111", "name": "n", "safe_attribute": "4111111111111112"}),
        allowed_keys=["group", "id", "name"], ignored_keys=["safe_attribute"], summary="debug",
    )
    assert span_attrs(req) == {
        "group": "g", "id": 5, "name": "n", "safe_attribute": "4111111111111112",
        "redaction.redacted.keys": "credit_card", "redaction.redacted.count": 1,
        "redaction.ignored.count": 1,
    }


def test_ignored_key_patterns_pass_untouched() -> None:
    req = redact(
        Signal.TRACES, span_batch({"internal.trace.note": "4111111111111111", "note": "4111111111111111"}),
        allow_all_keys=True, ignored_key_patterns=[r"^internal\."], blocked_values=["4[0-9]{15}"],
    )
    assert span_attrs(req) == {"internal.trace.note": "4111111111111111", "note": MASK}


def test_blocked_key_patterns_mask_the_whole_value_of_any_type() -> None:
    req = redact(
        Signal.TRACES, span_batch({"api_token": "abc", "session.token.id": 12345, "user": "ok", "auth": {"k": "v"}}),
        allow_all_keys=True, blocked_key_patterns=[".*token.*", "^auth$"], summary="debug",
    )
    attrs = span_attrs(req)
    assert attrs["api_token"] == MASK and attrs["session.token.id"] == MASK and attrs["auth"] == MASK
    assert attrs["user"] == "ok"
    assert attrs["redaction.masked.keys"] == "api_token,auth,session.token.id"
    assert attrs["redaction.masked.count"] == 3


def test_a_key_not_allowed_is_deleted_before_value_checks() -> None:
    req = redact(Signal.TRACES, span_batch({"email": "a@example.com"}), allowed_keys=["other"], detectors=["email"], summary="info")
    assert span_attrs(req) == {"redaction.redacted.count": 1}


# -- values ------------------------------------------------------------------------------


def test_blocked_values_mask_each_match_in_order() -> None:
    req = redact(
        Signal.TRACES, span_batch({"note": "visa 4111111111111111 and mc 5555555555554444, ok", "n": 4111111111111111}),
        allow_all_keys=True, blocked_values=["4[0-9]{12}(?:[0-9]{3})?", "(5[1-5][0-9]{14})"], summary="info",
    )
    attrs = span_attrs(req)
    assert attrs["note"] == f"visa {MASK} and mc {MASK}, ok"
    assert attrs["n"] == 4111111111111111  # not a string and redact_all_types is off
    assert attrs["redaction.masked.count"] == 1
    assert "redaction.masked.keys" not in attrs  # info: counts only


def test_redact_all_types_checks_ints_by_their_string_form() -> None:
    req = redact(
        Signal.TRACES, span_batch({"n": 4111111111111111, "ok": 7, "flag": True}),
        allow_all_keys=True, blocked_values=["4[0-9]{15}", "^true$"], redact_all_types=True,
    )
    assert span_attrs(req) == {"n": MASK, "ok": 7, "flag": MASK}


@pytest.mark.parametrize(("name", "fn"), [("md5", hashlib.md5), ("sha1", hashlib.sha1), ("sha3", hashlib.sha3_256)])
def test_hash_function_replaces_matches_with_their_digest(name: str, fn: Any) -> None:
    req = redact(
        Signal.TRACES, span_batch({"note": "card 4111111111111111!", "password": "hunter2"}),
        allow_all_keys=True, blocked_values=["4[0-9]{15}"], blocked_key_patterns=["password"], hash_function=name,
    )
    attrs = span_attrs(req)
    assert attrs["note"] == f"card {fn(b'4111111111111111').hexdigest()}!"
    assert attrs["password"] == fn(b"hunter2").hexdigest()


def test_allowed_values_win_over_blocked_values_and_detectors() -> None:
    req = redact(
        Signal.TRACES,
        span_batch({"a": "support@mycompany.com", "b": "someone@example.com", "c": "x mycompany.com y"}),
        allow_all_keys=True, blocked_values=["mycompany.com"], allowed_values=[r".+@mycompany\.com"],
        detectors=["email"], summary="debug",
    )
    attrs = span_attrs(req)
    assert attrs["a"] == "support@mycompany.com"
    assert attrs["b"] == MASK
    assert attrs["c"] == f"x {MASK} y"
    assert attrs["redaction.allowed.keys"] == "a" and attrs["redaction.allowed.count"] == 1
    assert attrs["redaction.masked.keys"] == "b,c"


def test_summary_silent_writes_nothing() -> None:
    req = redact(Signal.TRACES, span_batch({"a": "x", "b": "4111111111111111"}), allowed_keys=["b"], blocked_values=["4[0-9]{15}"])
    assert span_attrs(req) == {"b": MASK}


def test_anchored_patterns_are_checked_value_by_value() -> None:
    req = redact(
        Signal.TRACES, span_batch({"a": "secret-1", "b": "not secret-2", "c": "ends-x"}),
        allow_all_keys=True, blocked_values=[r"\Asecret-\d", r"x\Z", "^not"],
    )
    assert span_attrs(req) == {"a": MASK, "b": f"{MASK} secret-2", "c": f"ends-{MASK}"}


def test_a_match_is_never_missed_next_to_other_values() -> None:
    # The batch text is scanned joined by newlines; a pattern that could run across the
    # join must still find the match inside the next value.
    req = redact(
        Signal.TRACES, span_batch({"a": "ab", "b": "c ab c", "c": "abc"}),
        allow_all_keys=True, blocked_values=[r"b\s*c"],
    )
    assert span_attrs(req) == {"a": "ab", "b": f"c a{MASK}", "c": f"a{MASK}"}


def test_nested_maps_and_lists_in_attributes_are_walked() -> None:
    req = redact(
        Signal.TRACES, span_batch({"req": {"user": {"mail": "a@example.com", "password": "p"}, "tags": ["ok", "b@example.org"]}}),
        allow_all_keys=True, detectors=["email"], blocked_key_patterns=["password"],
    )
    assert span_attrs(req) == {"req": {"user": {"mail": MASK, "password": MASK}, "tags": ["ok", MASK]}}


# -- where ------------------------------------------------------------------------------


def test_resource_span_and_event_attributes_are_covered() -> None:
    req = redact(
        Signal.TRACES,
        span_batch({"x": "a@example.com"}, resource={"owner": "b@example.com"}, event={"who": "c@example.com"}),
        allow_all_keys=True, detectors=["email"],
    )
    rs = req.resource_spans[0]
    assert attrs_dict(rs.resource.attributes) == {"owner": MASK}
    span = rs.scope_spans[0].spans[0]
    assert attrs_dict(span.attributes) == {"x": MASK}
    assert attrs_dict(span.events[0].attributes) == {"who": MASK}


def test_metric_data_points_of_every_kind_are_covered() -> None:
    batch = make_metrics(6)
    msg = batch.mutable()
    for m in msg.resource_metrics[0].scope_metrics[0].metrics:
        kind = m.WhichOneof("data")
        for dp in getattr(m, kind).data_points:
            dp.attributes.extend(key_values({"client": "10.1.2.3"}))
    redact(Signal.METRICS, msg, allow_all_keys=True, detectors=["ipv4"])
    seen = 0
    for m in msg.resource_metrics[0].scope_metrics[0].metrics:
        for dp in getattr(m, m.WhichOneof("data")).data_points:
            assert attrs_dict(dp.attributes)["client"] == MASK
            seen += 1
    assert seen == 6


def test_log_attributes_and_string_body() -> None:
    req = redact(Signal.LOGS, log_request("user a@example.com paid", {"ip": "10.0.0.1"}),
                 allow_all_keys=True, detectors=["email", "ipv4"], summary="debug")
    lr = the_log(req)
    assert lr.body.string_value == f"user {MASK} paid"
    attrs = attrs_dict(lr.attributes)
    assert attrs["ip"] == MASK
    assert attrs["redaction.masked.keys"] == "body,ip"


def test_map_body_keys_follow_the_key_rules_and_nested_values_are_masked() -> None:
    body = {"msg": "call +44 20 7946 0958", "user": {"ssn": "078-05-1120", "note": "fine"}, "debug": "x", "items": [1, "4111111111111111"]}
    req = redact(Signal.LOGS, log_request(body), allowed_keys=["msg", "user", "items"], detectors=["phone", "us_ssn", "credit_card"], summary="debug")
    lr = the_log(req)
    assert from_any_value(lr.body) == {"msg": f"call {MASK}", "user": {"ssn": MASK, "note": "fine"}, "items": [1, MASK]}
    attrs = attrs_dict(lr.attributes)
    assert attrs["redaction.redacted.keys"] == "body.debug"
    assert attrs["redaction.masked.keys"] == "body.items,body.msg,body.user"


# -- URLs --------------------------------------------------------------------------------


def test_url_sanitizer_on_attributes_and_server_client_span_names() -> None:
    options = {"allow_all_keys": True, "url_sanitizer": {"enabled": True, "attributes": ["url.full"]}}
    req = redact(Signal.TRACES, span_batch({"url.full": "https://api.example.com/users/1234/orders?id=9", "other": "/users/1234"},
                                           name="GET /users/1234"), **options)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span_attrs(req) == {"url.full": "https://api.example.com/users/*/orders", "other": "/users/1234"}
    assert span.name == "GET /users/*"
    internal = redact(Signal.TRACES, span_batch({}, name="GET /users/1234", kind=Span.SPAN_KIND_INTERNAL), **options)
    assert internal.resource_spans[0].scope_spans[0].spans[0].name == "GET /users/1234"
    off = redact(Signal.TRACES, span_batch({}, name="GET /users/1234"),
                 allow_all_keys=True, url_sanitizer={"enabled": True, "attributes": ["u"], "sanitize_span_name": False})
    assert off.resource_spans[0].scope_spans[0].spans[0].name == "GET /users/1234"


# -- the component ----------------------------------------------------------------------


async def test_processor_changes_the_batch_in_place_counts_and_passes_it_on() -> None:
    settings = Settings.for_test(ID, Kind.PROCESSOR, "traces")
    sink = Sink()
    assert FACTORY.create is not None
    config = convert({"allowed_keys": ["http.request.method", "ml.model.name"], "detectors": ["email"]})
    proc = FACTORY.create(settings, config, Signal.TRACES, sink)
    assert isinstance(proc, RedactionProcessor) and proc.mutates_data is True
    batch = make_traces(3, span_attrs={"ml.model.name": "a@example.com"})
    before = batch.serialize()
    await proc.start()
    await proc.consume(batch)
    await proc.shutdown()
    assert sink.batches == [batch]
    assert batch.serialize() != before  # the cached bytes were dropped and re-encoded
    decoded = Batch.parse(Signal.TRACES, batch.serialize())
    for span in decoded.message.resource_spans[0].scope_spans[0].spans:
        assert attrs_dict(span.attributes) == {"http.request.method": "POST", "ml.model.name": MASK}
    sample = settings.metrics.registry.get_sample_value
    labels = {"component": ID, "pipeline": "traces", "signal": "traces"}
    assert sample("flowglass_processor_redaction_masked_values_total", labels) == 3
    # make_traces spans carry 6 attributes, the resource 3 and each event 1: all but 2 per span go.
    assert sample("flowglass_processor_redaction_deleted_keys_total", labels) == 3 * 4 + 3 + 3


async def test_fail_closed_config_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.for_test(ID, Kind.PROCESSOR, "logs")
    assert FACTORY.create is not None
    with caplog.at_level("WARNING"):
        FACTORY.create(settings, convert({}), Signal.LOGS, Sink())
    assert "every attribute that is not ignored will be deleted" in caplog.text
    proc = FACTORY.create(settings, convert({"allow_all_keys": True}), Signal.LOGS, Sink())
    batch = make_logs(2)
    await proc.consume(batch)


def test_deleting_and_masking_in_one_map_touch_the_right_attributes() -> None:
    attrs = {f"k{i}": f"v{i} 4111111111111111" if i % 2 else f"v{i}" for i in range(12)}
    allowed = [f"k{i}" for i in range(12) if i % 3]
    req = redact(Signal.TRACES, span_batch(attrs), allowed_keys=allowed, blocked_values=["4[0-9]{15}"], summary="info")
    out = span_attrs(req)
    expected = {k: (v.replace("4111111111111111", MASK)) for k, v in attrs.items() if k in allowed}
    assert out == {**expected, "redaction.redacted.count": 4, "redaction.masked.count": sum(1 for k in expected if MASK in expected[k])}
