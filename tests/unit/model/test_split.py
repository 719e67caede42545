"""`agent.model.split`: property loops over sizes and limits, for every signal."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.model import Batch, ClientInfo, Signal, count_items, new_request
from agent.model.split import split
from agent.testing import key_values

# A layout is resources → scopes → (for metrics: metrics →) item counts.
Layout = list[list[Any]]
# Where an item sits and which item it is: (resource, scope, metric or -1, item number).
Place = tuple[int, int, int, int]

KINDS = ["sum", "gauge", "histogram", "exponential_histogram", "summary"]


def build(signal: Signal, layout: Layout) -> tuple[Batch, list[Place]]:
    """A batch shaped as `layout`, each item numbered in order, and the expected places."""
    req: Any = new_request(signal)
    expected: list[Place] = []
    k = 0
    for r, scopes in enumerate(layout):
        res = getattr(req, _fields(signal)[0]).add()
        res.resource.attributes.extend(key_values({"r": r}))
        res.schema_url = f"https://schema/r{r}"
        for s, content in enumerate(scopes):
            scope = getattr(res, _fields(signal)[1]).add()
            scope.scope.name = f"scope-{r}.{s}"
            scope.schema_url = f"https://schema/r{r}s{s}"
            if signal is Signal.METRICS:
                for m, points in enumerate(content):
                    _add_metric(scope, r, s, m, points, k)
                    expected.extend((r, s, m, k + i) for i in range(points))
                    k += points
            else:
                for _ in range(content):
                    _add_item(signal, scope, k)
                    expected.append((r, s, -1, k))
                    k += 1
    return Batch(signal, req, client=ClientInfo(address="10.0.0.1:5")), expected


def _fields(signal: Signal) -> tuple[str, str]:
    return {
        Signal.TRACES: ("resource_spans", "scope_spans"),
        Signal.LOGS: ("resource_logs", "scope_logs"),
        Signal.METRICS: ("resource_metrics", "scope_metrics"),
    }[signal]


def _add_item(signal: Signal, scope: Any, k: int) -> None:
    if signal is Signal.TRACES:
        span = scope.spans.add()
        span.name = str(k)
        span.span_id = k.to_bytes(8, "big")
    else:
        scope.log_records.add().body.string_value = str(k)


def _add_metric(scope: Any, r: int, s: int, m: int, points: int, k: int) -> None:
    metric = scope.metrics.add()
    metric.name = f"metric-{r}.{s}.{m}"
    metric.description = "a test metric"
    metric.unit = "ms"
    metric.metadata.extend(key_values({"origin": "test"}))
    kind = KINDS[m % len(KINDS)]
    data = getattr(metric, kind)
    data.SetInParent()
    if kind == "sum":
        data.aggregation_temporality = 1
        data.is_monotonic = True
    elif kind in ("histogram", "exponential_histogram"):
        data.aggregation_temporality = 2
    for i in range(points):
        data.data_points.add().attributes.extend(key_values({"k": k + i}))


def places(signal: Signal, pieces: list[Batch]) -> list[Place]:
    """Every item of `pieces`, in order, with where it sits (read back from the data)."""
    out: list[Place] = []
    for piece in pieces:
        msg: Any = piece.message
        for res in getattr(msg, _fields(signal)[0]):
            r = res.resource.attributes[0].value.int_value
            for scope in getattr(res, _fields(signal)[1]):
                s = int(scope.scope.name.rsplit(".", 1)[1])
                if signal is Signal.METRICS:
                    for metric in scope.metrics:
                        m = int(metric.name.rsplit(".", 1)[1])
                        kind = metric.WhichOneof("data")
                        for dp in getattr(metric, kind).data_points:
                            out.append((r, s, m, dp.attributes[0].value.int_value))
                elif signal is Signal.TRACES:
                    out.extend((r, s, -1, int(span.name)) for span in scope.spans)
                else:
                    out.extend((r, s, -1, int(lr.body.string_value)) for lr in scope.log_records)
    return out


def random_layout(signal: Signal, total: int, rng: random.Random) -> Layout:
    """`total` items spread over 1–4 resources and 1–3 scopes each, empty ones included."""
    resources = rng.randint(1, 4)
    cells = [(r, s) for r in range(resources) for s in range(rng.randint(1, 3))]
    counts = [0] * len(cells)
    for _ in range(total):
        counts[rng.randrange(len(cells))] += 1
    layout: Layout = [[] for _ in range(resources)]
    for (r, _s), n in zip(cells, counts, strict=True):
        if signal is Signal.METRICS:
            # Split the cell's points over 1–3 metrics (some may have none).
            metrics = [0] * rng.randint(1, 3)
            for _ in range(n):
                metrics[rng.randrange(len(metrics))] += 1
            layout[r].append(metrics)
        else:
            layout[r].append(n)
    return layout


def assert_well_formed(signal: Signal, pieces: list[Batch], limit: int) -> None:
    for i, piece in enumerate(pieces):
        assert piece.signal is signal
        assert piece.client.address == "10.0.0.1:5"
        assert piece.items == count_items(signal, piece.message)
        assert 1 <= piece.items <= limit
        if i < len(pieces) - 1:
            assert piece.items == limit, "pieces are filled before the next one starts"
        msg: Any = piece.message
        for res in getattr(msg, _fields(signal)[0]):
            r = res.resource.attributes[0].value.int_value
            assert res.schema_url == f"https://schema/r{r}"
            scopes = getattr(res, _fields(signal)[1])
            assert len(scopes) > 0, "no empty resources"
            for scope in scopes:
                assert scope.schema_url.startswith(f"https://schema/r{r}s")
                if signal is Signal.METRICS:
                    assert len(scope.metrics) > 0, "no empty scopes"
                    for metric in scope.metrics:
                        assert_metric_shell(metric)
                elif signal is Signal.TRACES:
                    assert len(scope.spans) > 0, "no empty scopes"
                else:
                    assert len(scope.log_records) > 0, "no empty scopes"


def assert_metric_shell(metric: Any) -> None:
    m = int(metric.name.rsplit(".", 1)[1])
    kind = KINDS[m % len(KINDS)]
    assert metric.WhichOneof("data") == kind
    assert metric.description == "a test metric"
    assert metric.unit == "ms"
    assert metric.metadata[0].key == "origin"
    data = getattr(metric, kind)
    assert len(data.data_points) > 0, "no empty metrics"
    if kind == "sum":
        assert data.aggregation_temporality == 1
        assert data.is_monotonic
    elif kind in ("histogram", "exponential_histogram"):
        assert data.aggregation_temporality == 2


@pytest.mark.parametrize("signal", list(Signal))
def test_split_keeps_every_item_in_order_and_grouped(signal: Signal) -> None:
    rng = random.Random(f"split-{signal.value}")
    for total in range(1, 51):
        layout = random_layout(signal, total, rng)
        batch, expected = build(signal, layout)
        before = batch.serialize()
        for limit in range(1, 21):
            pieces = split(batch, limit)
            assert sum(p.items for p in pieces) == total
            if total <= limit:
                assert pieces == [batch]
                continue
            assert len(pieces) == -(-total // limit)
            assert places(signal, pieces) == expected
            assert_well_formed(signal, pieces, limit)
        assert batch.serialize() == before
        assert Batch.parse(signal, before).message == batch.message, "the input is unchanged"


def test_within_the_limit_returns_the_batch_without_parsing_it() -> None:
    # These bytes are not a valid request: parsing them would raise.
    batch = Batch(Signal.TRACES, data=b"\xff\xff\xff", items=5)
    assert split(batch, 5) == [batch]
    assert split(batch, 100)[0] is batch


def test_empty_resources_and_scopes_are_not_emitted() -> None:
    batch, expected = build(Signal.LOGS, [[0, 3, 0], [], [0], [2, 0, 1]])
    pieces = split(batch, 2)
    assert [p.items for p in pieces] == [2, 2, 2]
    assert places(Signal.LOGS, pieces) == expected
    # Resource 1 and 2 hold no items, so no piece mentions them.
    seen = {res.resource.attributes[0].value.int_value for p in pieces for res in p.message.resource_logs}
    assert seen == {0, 3}


def test_a_metric_with_many_points_is_split_across_pieces() -> None:
    batch, expected = build(Signal.METRICS, [[[7]]])  # one sum metric with 7 points
    pieces = split(batch, 3)
    assert [p.items for p in pieces] == [3, 3, 1]
    assert places(Signal.METRICS, pieces) == expected
    for piece in pieces:
        (metric,) = piece.message.resource_metrics[0].scope_metrics[0].metrics
        assert metric.name == "metric-0.0.0"
        assert metric.sum.is_monotonic and metric.sum.aggregation_temporality == 1


def test_a_limit_below_one_is_refused() -> None:
    batch, _ = build(Signal.TRACES, [[3]])
    with pytest.raises(ValueError, match="at least 1"):
        split(batch, 0)
