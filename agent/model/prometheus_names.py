"""Prometheus names from OTLP names: the OpenTelemetry specification's compatibility rules.

- Metric names (`metric_name`): with `add_metric_suffixes`, the name is split into words
  at every character that is not a letter or digit, the unit is appended as a word
  (`s` → `seconds`, `By` → `bytes`, `m/s` → `meters_per_second`; `{...}` annotations
  drop out), a monotonic sum gets `total` (any `total` word elsewhere moves to the end),
  a gauge of unit `1` gets `ratio`, and the words are joined with `_`. Without suffixes
  every character outside `[a-zA-Z0-9_:]` becomes `_`. A name starting with a digit gets
  a leading `_`; `namespace` is prepended with `_`.
- Label names (`label_name`): every character outside `[a-zA-Z0-9_]` becomes `_`; a name
  starting with a digit gets `key_` in front and one starting with a single `_` gets
  `key` in front (names starting with `__` are reserved by Prometheus).

Both are cached: a stream of data carries few distinct names.
"""

from __future__ import annotations

import math
import re

#: Main units (the part before `/`) → the word appended to the name.
UNIT_WORDS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}
#: Units after `/` → the word after `per`.
PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

_NOT_WORD = re.compile(r"[^a-zA-Z0-9]+")
_NOT_METRIC = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_ANNOTATION = re.compile(r"\{[^}]*\}")

#: Kinds a metric name depends on.
COUNTER, GAUGE, OTHER = "counter", "gauge", "other"

_metric_cache: dict[tuple[str, str, str, bool, str], str] = {}
_label_cache: dict[str, str] = {}
_CACHE_LIMIT = 100_000


def _unit_words(unit: str) -> tuple[str, str]:
    """(main unit word, per-unit word) of a UCUM unit; either may be empty."""
    unit = _ANNOTATION.sub("", unit).strip()
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    main_word = "_".join(w for w in _NOT_WORD.split(UNIT_WORDS.get(main, main)) if w) if main else ""
    per_word = "_".join(w for w in _NOT_WORD.split(PER_UNIT_WORDS.get(per, per)) if w) if per else ""
    return main_word, per_word


def _build(name: str, unit: str, kind: str, suffixes: bool, namespace: str) -> str:
    if not suffixes:
        out = _NOT_METRIC.sub("_", name)
    else:
        words = [w for w in _NOT_WORD.split(name) if w]
        if kind == COUNTER:
            words = [w for w in words if w != "total"]
        main_word, per_word = _unit_words(unit)
        # A unit word is appended unless the name already holds it ("duration_seconds").
        if main_word and main_word not in words:
            words.append(main_word)
        if per_word and per_word not in words:
            words.extend(("per", per_word))
        if kind == GAUGE and unit.strip() == "1" and (not words or words[-1] != "ratio"):
            words.append("ratio")
        if kind == COUNTER:
            words.append("total")
        out = "_".join(words)
    if namespace:
        out = f"{_NOT_METRIC.sub('_', namespace)}_{out}"
    if not out:
        out = "_"
    if out[0].isdigit():
        out = "_" + out
    return out


def metric_name(name: str, unit: str, kind: str, *, suffixes: bool = True, namespace: str = "") -> str:
    """The Prometheus metric family name of an OTLP metric (before `_bucket`/`_sum`/`_count`)."""
    key = (name, unit, kind, suffixes, namespace)
    cached = _metric_cache.get(key)
    if cached is None:
        if len(_metric_cache) >= _CACHE_LIMIT:
            _metric_cache.clear()
        cached = _metric_cache[key] = _build(name, unit, kind, suffixes, namespace)
    return cached


def label_name(key: str) -> str:
    """A valid Prometheus label name for an OTLP attribute key."""
    cached = _label_cache.get(key)
    if cached is None:
        out = _NOT_LABEL.sub("_", key) if key else "key_empty"
        if out[0].isdigit():
            out = "key_" + out
        elif out[0] == "_" and not out.startswith("__"):
            out = "key" + out
        if len(_label_cache) >= _CACHE_LIMIT:
            _label_cache.clear()
        cached = _label_cache[key] = out
    return cached


def format_float(value: float) -> str:
    """A float as Prometheus writes it: `1`, `0.25`, `1e+06`, `+Inf`, `-Inf`, `NaN`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
