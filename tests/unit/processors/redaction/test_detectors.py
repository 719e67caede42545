"""The built-in detectors, one by one and together over the labelled corpus.

Each corpus string is put where personal data turns up — a span attribute, a metric data
point attribute, a log body string, a value deep in a map body, and the query string of an
URL attribute — and the processor runs with every detector on. No positive may leak; the
look-alikes changed are counted as false positives, printed, and held under a ceiling so
that a greedier detector fails this test.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.config.types import dec_hook
from agent.model import Signal, new_request
from agent.processors.redaction import RedactionConfig
from agent.processors.redaction.detectors import DETECTORS, find_all, fold, iban_ok, luhn_ok, ssn_ok
from agent.processors.redaction.redactor import MASK, Redactor
from agent.testing import any_value, attrs_dict, from_any_value, key_values

from .corpus import NEGATIVES, POSITIVES

#: False positives allowed on the corpus negatives: the four "known hard cases" at the end of
#: the corpus (an scp-style git remote, a 4-part OID, a "+" build number, "be:ef::"), which
#: have exactly the shape of an e-mail, an IPv4, a phone number and an IPv6 address.
MAX_FALSE_POSITIVES = 4


def redactor(**options: Any) -> Redactor:
    return Redactor(msgspec.convert(options, RedactionConfig, dec_hook=dec_hook))


@pytest.mark.parametrize(("detector", "secret", "text"), POSITIVES, ids=[f"{d}:{t[:30]}" for d, _, t in POSITIVES])
def test_each_positive_is_found_by_its_own_detector(detector: str, secret: str, text: str) -> None:
    masked = redactor(allow_all_keys=True, detectors=[detector]).mask_text(text)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_candidate_spans_cover_every_finding(name: str) -> None:
    """The cheap scan over folded text never misses what the exact pattern finds."""
    d = DETECTORS[name]
    for det, _, text in POSITIVES:
        if det != name:
            continue
        joined = f"x\n{text}\ny"
        exact = list(d.spans(joined))
        candidates = list(d.candidate_spans(joined, fold(joined)))
        for start, end in exact:
            assert any(cs < end and start < ce for cs, ce in candidates), (text, joined[start:end])


def test_checks() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert not iban_ok("XX82WEST12345698765432")
    assert ssn_ok("078", "05", "1120")
    assert not ssn_ok("000", "05", "1120") and not ssn_ok("666", "05", "1120")
    assert not ssn_ok("901", "05", "1120") and not ssn_ok("078", "00", "1120") and not ssn_ok("078", "05", "0000")


def test_findings_that_overlap_are_merged() -> None:
    text = "mail 4111111111111111@example.com"
    spans = find_all((DETECTORS["email"], DETECTORS["credit_card"]), text)
    assert spans == [(5, len(text))]


def test_bearer_masks_only_the_token() -> None:
    assert redactor(allow_all_keys=True, detectors=["bearer_token"]).mask_text(
        "Authorization: Bearer abc123DEF456ghi789jkl") == f"Authorization: Bearer {MASK}"


def _embed(texts: list[str]) -> tuple[Any, Any, Any]:
    traces = new_request(Signal.TRACES)
    spans = traces.resource_spans.add().scope_spans.add()
    for t in texts:
        span = spans.spans.add(name="POST /checkout")
        span.attributes.extend(key_values({"note": t, "url.full": f"https://shop.example.com/api/v1/search?q={t}&page=2"}))
    logs = new_request(Signal.LOGS)
    records = logs.resource_logs.add().scope_logs.add()
    for t in texts:
        lr = records.log_records.add()
        lr.body.CopyFrom(any_value(t))
        lr2 = records.log_records.add()
        lr2.body.CopyFrom(any_value({"event": "checkout", "payload": {"fields": [t], "text": t}}))
    metrics = new_request(Signal.METRICS)
    gauge = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="m").gauge
    for t in texts:
        gauge.data_points.add(as_int=1).attributes.extend(key_values({"label": t}))
    return traces, logs, metrics


def _outputs(traces: Any, logs: Any, metrics: Any) -> list[list[str]]:
    """Per corpus string, every place it ended up, as text."""
    out: list[list[str]] = []
    spans = traces.resource_spans[0].scope_spans[0].spans
    records = logs.resource_logs[0].scope_logs[0].log_records
    points = metrics.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    for i, span in enumerate(spans):
        a = attrs_dict(span.attributes)
        body_map = from_any_value(records[2 * i + 1].body)
        out.append([
            a["note"], a["url.full"], records[2 * i].body.string_value,
            body_map["payload"]["text"], body_map["payload"]["fields"][0],
            attrs_dict(points[i].attributes)["label"],
        ])
    return out


def test_corpus_no_positive_leaks_and_false_positives_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    r = redactor(allow_all_keys=True, detectors=sorted(DETECTORS))
    positives = [text for _, _, text in POSITIVES]
    negatives = [text for _, text in NEGATIVES]
    messages = _embed(positives + negatives)
    r.redact(Signal.TRACES, messages[0])
    r.redact(Signal.LOGS, messages[1])
    r.redact(Signal.METRICS, messages[2])
    outputs = _outputs(*messages)

    leaks = []
    for (detector, secret, text), places in zip(POSITIVES, outputs[: len(POSITIVES)], strict=True):
        for place in places:
            if secret in place:
                leaks.append((detector, text, place))
    assert leaks == []

    prefix = "https://shop.example.com/api/v1/search?q="
    false_positives = []
    for (kind, text), places in zip(NEGATIVES, outputs[len(POSITIVES):], strict=True):
        expected = [text, f"{prefix}{text}&page=2", text, text, text, text]
        if places != expected:
            false_positives.append((kind, text, places))
    with capsys.disabled():
        print(
            f"\nredaction corpus: {len(POSITIVES)} positives, 0 leaked; {len(NEGATIVES)} look-alikes, "
            f"{len(false_positives)} false positives {[t for _, t, _ in false_positives]}"
        )
    assert len(false_positives) <= MAX_FALSE_POSITIVES, false_positives
