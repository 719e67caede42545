"""Index names: data-stream routing, prefix/suffix attributes and logstash dates."""

from __future__ import annotations

import calendar

import pytest

from agent.exporters.elasticsearch import routing
from agent.exporters.elasticsearch.encode import DocumentEncoder
from agent.model import Batch, Signal, new_request
from agent.testing import key_values

DAY = calendar.timegm((2024, 5, 1, 13, 45, 10, 0, 0, 0)) * 1_000_000_000


def _stream(record: dict[str, str], scope: dict[str, str], resource: dict[str, str],
            otel: bool = False) -> tuple[str, bool]:
    stream, chosen = routing.data_stream("logs", otel, record, scope, resource)
    return stream.index(), chosen


def test_data_stream_attributes_take_record_over_scope_over_resource() -> None:
    ds, ns = routing.DATASET, routing.NAMESPACE
    assert _stream({}, {}, {}) == ("logs-generic-default", False)
    assert _stream({}, {}, {ds: "nginx"}) == ("logs-nginx-default", True)
    assert _stream({}, {ds: "scope"}, {ds: "res", ns: "prod"}) == ("logs-scope-prod", True)
    assert _stream({ds: "rec"}, {ds: "scope"}, {ds: "res"}) == ("logs-rec-default", True)
    assert _stream({ns: "staging"}, {}, {ns: "prod"}) == ("logs-generic-staging", True)


def test_otel_mode_appends_otel_to_the_dataset_once() -> None:
    assert _stream({}, {}, {}, otel=True) == ("logs-generic.otel-default", False)
    assert _stream({routing.DATASET: "app"}, {}, {}, otel=True)[0] == "logs-app.otel-default"
    assert _stream({routing.DATASET: "app.otel"}, {}, {}, otel=True)[0] == "logs-app.otel-default"


@pytest.mark.parametrize(("dataset", "namespace", "index"), [
    ("My-App", "Prod", "logs-my_app-prod"),
    ("a/b*c", "x y", "logs-a_b_c-x_y"),
    ("ok.name", "team-a", "logs-ok.name-team-a"),  # `-` is allowed in a namespace only
    ("x" * 150, "n", "logs-" + "x" * 100 + "-n"),
])
def test_names_are_sanitized_as_elasticsearch_requires(dataset: str, namespace: str, index: str) -> None:
    assert _stream({routing.DATASET: dataset, routing.NAMESPACE: namespace}, {}, {})[0] == index


def test_prefix_and_suffix_take_resource_over_scope_over_record() -> None:
    stream, chosen = routing.data_stream("logs", False, {}, {}, {})
    pre, suf = routing.PREFIX, routing.SUFFIX
    idx = routing.dynamic_index
    assert idx(stream, chosen, "my-logs", {}, {}, {pre: "team-"}) == "team-my-logs"
    assert idx(stream, chosen, "my-logs", {suf: "-rec"}, {suf: "-scope"}, {}) == "my-logs-scope"
    assert idx(stream, chosen, "my-logs", {pre: "r-"}, {pre: "s-"}, {pre: "res-", suf: "-x"}) == "res-my-logs-x"
    # Neither: the generic data stream, and the configured index is ignored.
    assert idx(stream, chosen, "my-logs", {}, {}, {}) == "logs-generic-default"


def test_data_stream_attributes_win_over_prefix_and_suffix() -> None:
    record = {routing.DATASET: "d", routing.PREFIX: "p-"}
    stream, chosen = routing.data_stream("logs", False, record, {}, {})
    assert routing.dynamic_index(stream, chosen, "my-logs", record, {}, {}) == "logs-d-default"


@pytest.mark.parametrize(("separator", "fmt", "suffix"), [
    ("-", "%Y.%m.%d", "-2024.05.01"),
    ("_", "%Y-%m", "_2024-05"),
    ("-", "%Y.%m.%d.%H", "-2024.05.01.13"),
])
def test_logstash_dates(separator: str, fmt: str, suffix: str) -> None:
    date = routing.LogstashDate(separator, fmt)
    assert date.index("logs-generic-default", DAY) == "logs-generic-default" + suffix
    assert date.index("x", DAY + 1) == "x" + suffix  # cached, same answer


def test_logstash_dates_change_at_midnight_utc() -> None:
    date = routing.LogstashDate("-", "%Y.%m.%d")
    midnight = calendar.timegm((2024, 5, 2, 0, 0, 0, 0, 0, 0)) * 1_000_000_000
    assert date.index("i", midnight - 1) == "i-2024.05.01"
    assert date.index("i", midnight) == "i-2024.05.02"


def _encoder(**overrides: object) -> DocumentEncoder:
    options: dict[str, object] = dict(
        mode="otel", logs_index="my-logs", traces_index="my-traces", logs_dynamic_index=True,
        traces_dynamic_index=True, logstash=None, pipeline="", logs_dynamic_id=False, hash_ids=False)
    options.update(overrides)
    return DocumentEncoder(**options)  # type: ignore[arg-type]


def _logs(resource: dict[str, str], scope: dict[str, str], records: list[dict[str, str]]) -> Batch:
    req = new_request(Signal.LOGS)
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(key_values(resource))
    sl = rl.scope_logs.add()
    sl.scope.attributes.extend(key_values(scope))
    for attrs in records:
        r = sl.log_records.add()
        r.time_unix_nano = DAY
        r.body.string_value = "x"
        r.attributes.extend(key_values(attrs))
    return Batch(Signal.LOGS, req)


def test_each_record_is_routed_by_its_own_attributes() -> None:
    batch = _logs({routing.DATASET: "res"}, {routing.NAMESPACE: "scope"},
                  [{}, {routing.DATASET: "rec"}, {routing.NAMESPACE: "own"}])
    docs, _ = _encoder().encode(batch)
    assert [d.index for d in docs] == ["logs-res.otel-scope", "logs-rec.otel-scope", "logs-res.otel-own"]


def test_static_index_and_logstash_without_dynamic_routing() -> None:
    batch = _logs({routing.DATASET: "res"}, {}, [{}])
    docs, _ = _encoder(logs_dynamic_index=False).encode(batch)
    assert docs[0].index == "my-logs"
    docs, _ = _encoder(logs_dynamic_index=False, logstash=routing.LogstashDate("-", "%Y.%m.%d")).encode(batch)
    assert docs[0].index == "my-logs-2024.05.01"
    docs, _ = _encoder(logstash=routing.LogstashDate("-", "%Y.%m.%d")).encode(batch)
    assert docs[0].index == "logs-res.otel-default-2024.05.01"
