"""The redaction rules, compiled (`Redactor`), and how a batch is redacted in place.

A batch is redacted in three passes so that the costly part, regular expressions, runs in C
over the text of the whole batch instead of once per value and pattern:

1. walk every attribute map in place: apply the key rules (ignore, delete, mask whole),
   collect the string values to check;
2. join those values with newlines and scan the joined text once per blocked pattern and
   per detector (each detector first asks whether its trigger occurs at all); every value a
   finding touches is flagged;
3. check the flagged values one by one, exactly as the Collector does (allowed values win,
   then blocked values in order, then detectors), and write back the masked ones; then
   sanitize URLs and write the summaries.

The scan in pass 2 only selects values, so it may flag too many (a pattern matching across
the joining newline) but never too few: a pattern that anchors on the start or end of the
text (`\\A`, `\\Z`) is searched value by value instead.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent.model import Signal
from agent.processors.redaction import RedactionConfig
from agent.processors.redaction.detectors import DETECTORS, Detector, find_all, fold
from agent.processors.redaction.urls import sanitize_url

MASK = "****"

_SCAN, _IGNORE, _DELETE, _MASK_WHOLE = 0, 1, 2, 3
#: Key decisions are cached; past this many distinct keys new ones are classified each time.
_MAX_CACHED_KEYS = 4096
_SPAN_KINDS_WITH_URL_NAMES = (2, 3)  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "md5": hashlib.md5,
    "sha1": hashlib.sha1,
    "sha3": hashlib.sha3_256,
}


class _Summary:
    """What happened to one attribute map, for the `summary` attributes."""

    __slots__ = ("allowed", "attrs", "deleted", "ignored", "masked")

    def __init__(self, attrs: Any) -> None:
        self.attrs = attrs
        self.deleted: list[str] = []
        self.masked: set[str] = set()
        self.allowed: set[str] = set()
        self.ignored = 0


class _Walk:
    """The values of one batch that pass 2 and 3 look at."""

    __slots__ = ("deleted", "keys", "masked", "summaries", "texts", "track", "urls", "values")

    def __init__(self, track: bool) -> None:
        #: Whether keys and summaries are recorded per value (only for `summary` output).
        self.track = track
        self.values: list[AnyValue] = []
        self.texts: list[str] = []
        self.keys: list[str] = []
        self.summaries: list[_Summary | None] = []
        self.urls: list[AnyValue] = []
        self.deleted = 0
        self.masked = 0


class _PatternScan:
    """A blocked_values pattern as a scanner over joined text."""

    def __init__(self, pattern: str) -> None:
        # MULTILINE makes ^ and $ match at the joining newlines, as at a value's edges.
        self.regex = re.compile(pattern, re.MULTILINE)
        self.per_value = "\\A" in pattern or "\\Z" in pattern
        self.exact = re.compile(pattern)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(text):
            yield m.span()


class Redactor:
    """Every rule of one `redaction` config, compiled; redacts export requests in place."""

    def __init__(self, config: RedactionConfig) -> None:
        self.config = config
        self._allow_all = config.allow_all_keys
        self._allowed_keys = frozenset(config.allowed_keys)
        self._ignored_keys = frozenset(config.ignored_keys)
        self._ignored_patterns = [re.compile(p) for p in config.ignored_key_patterns]
        self._blocked_keys = [re.compile(p) for p in config.blocked_key_patterns]
        self._blocked = [_PatternScan(p) for p in config.blocked_values]
        self._allowed_values = [re.compile(p) for p in config.allowed_values]
        self._detectors: tuple[Detector, ...] = tuple(DETECTORS[name] for name in config.detectors)
        self._all_types = config.redact_all_types
        self._summary = config.summary
        hash_name = config.hash_function
        self._hash = _HASHES[hash_name] if hash_name else None
        urls = config.url_sanitizer
        self._url_keys = frozenset(urls.attributes) if urls.enabled else frozenset()
        self._sanitize_span_names = urls.enabled and urls.sanitize_span_name
        self._rules: dict[str, int] = {}
        self._nested_rules: dict[str, int] = {}
        self._scanners: list[_PatternScan | Detector] = [*(b for b in self._blocked if not b.per_value), *self._detectors]
        self._per_value = [b.exact for b in self._blocked if b.per_value]
        self._checks_values = bool(self._blocked or self._detectors)
        self._folds = any(d.hints for d in self._detectors)

    # -- key rules -------------------------------------------------------------------

    def _classify(self, key: str) -> int:
        if key in self._ignored_keys or any(p.search(key) for p in self._ignored_patterns):
            rule = _IGNORE
        elif not self._allow_all and key not in self._allowed_keys:
            rule = _DELETE
        elif any(p.search(key) for p in self._blocked_keys):
            rule = _MASK_WHOLE
        else:
            rule = _SCAN
        if len(self._rules) < _MAX_CACHED_KEYS:
            self._rules[key] = rule
        return rule

    def _classify_nested(self, key: str) -> int:
        rule = self._nested_rules.get(key)
        if rule is None:
            if key in self._ignored_keys or any(p.search(key) for p in self._ignored_patterns):
                rule = _IGNORE
            elif any(p.search(key) for p in self._blocked_keys):
                rule = _MASK_WHOLE
            else:
                rule = _SCAN
            if len(self._nested_rules) < _MAX_CACHED_KEYS:
                self._nested_rules[key] = rule
        return rule

    # -- masking -----------------------------------------------------------------------

    def _replacement(self, text: str) -> str:
        if self._hash is None:
            return MASK
        return str(self._hash(text.encode()).hexdigest())

    def _replace_match(self, m: re.Match[str]) -> str:
        return self._replacement(m.group(0))

    def mask_text(self, text: str) -> str:
        """`text` with blocked values, then detector findings, replaced (allowed values aside)."""
        for b in self._blocked:
            text = b.exact.sub(self._replace_match, text)
        if self._detectors:
            spans = find_all(self._detectors, text)
            if spans:
                parts: list[str] = []
                pos = 0
                for start, end in spans:
                    parts.append(text[pos:start])
                    parts.append(self._replacement(text[start:end]))
                    pos = end
                parts.append(text[pos:])
                text = "".join(parts)
        return text

    def is_allowed_value(self, text: str) -> bool:
        return any(r.search(text) for r in self._allowed_values)

    def _mask_whole(self, value: AnyValue) -> None:
        kind = value.WhichOneof("value")
        if kind == "string_value":
            text = value.string_value
        elif kind in ("int_value", "double_value", "bool_value"):
            text = _as_string(value, kind)
        elif kind == "bytes_value":
            text = value.bytes_value.hex()
        elif kind is None:
            text = ""
        else:  # a map or a list: hashed by its encoding
            text = value.SerializeToString().hex()
        value.string_value = self._replacement(text)

    # -- pass 1: the walk --------------------------------------------------------------

    def _walk_map(self, attrs: Any, walk: _Walk, summary: _Summary | None, prefix: str = "") -> None:
        # The hot loop of the processor: locals instead of attribute lookups, and the key,
        # summary and URL bookkeeping only when something needs it.
        rules = self._rules
        values_append = walk.values.append
        texts_append = walk.texts.append
        track = walk.track
        url_keys = self._url_keys
        doomed: list[int] | None = None
        for i, kv in enumerate(attrs):
            key = kv.key
            rule = rules.get(key)
            if rule is None:
                rule = self._classify(key)
            if rule == _SCAN:
                value = kv.value
                kind = value.WhichOneof("value")
                if kind == "string_value":
                    values_append(value)
                    texts_append(value.string_value)
                    if track:
                        walk.keys.append(prefix + key)
                        walk.summaries.append(summary)
                    if url_keys and key in url_keys:
                        walk.urls.append(value)
                elif kind is not None:
                    self._collect(value, kind, prefix + key, walk, summary)
            elif rule == _DELETE:
                if doomed is None:
                    doomed = []
                doomed.append(i)
                if summary is not None:
                    summary.deleted.append(prefix + key)
            elif rule == _IGNORE:
                if summary is not None:
                    summary.ignored += 1
            else:
                self._mask_whole(kv.value)
                walk.masked += 1
                if summary is not None:
                    summary.masked.add(prefix + key)
        if doomed is not None:
            for i in reversed(doomed):
                del attrs[i]
            walk.deleted += len(doomed)

    def _collect(self, value: AnyValue, kind: str, key: str, walk: _Walk, summary: _Summary | None) -> None:
        """Collect the strings in a value (recursively through maps and lists)."""
        if kind == "string_value":
            walk.values.append(value)
            walk.texts.append(value.string_value)
            if walk.track:
                walk.keys.append(key)
                walk.summaries.append(summary)
        elif kind == "kvlist_value":
            for kv in value.kvlist_value.values:
                rule = self._classify_nested(kv.key)
                if rule == _SCAN:
                    inner = kv.value.WhichOneof("value")
                    if inner is not None:
                        self._collect(kv.value, inner, key, walk, summary)
                elif rule == _MASK_WHOLE:
                    self._mask_whole(kv.value)
                    walk.masked += 1
                    if summary is not None:
                        summary.masked.add(key)
        elif kind == "array_value":
            for item in value.array_value.values:
                inner = item.WhichOneof("value")
                if inner is not None:
                    self._collect(item, inner, key, walk, summary)
        elif self._all_types and kind != "bytes_value":
            walk.values.append(value)
            walk.texts.append(_as_string(value, kind))
            if walk.track:
                walk.keys.append(key)
                walk.summaries.append(summary)

    def _summary_for(self, attrs: Any, walk: list[_Summary]) -> _Summary | None:
        if self._summary == "silent":
            return None
        s = _Summary(attrs)
        walk.append(s)
        return s

    def _walk_message(self, signal: Signal, message: Any, walk: _Walk, summaries: list[_Summary]) -> None:
        if signal is Signal.TRACES:
            for rs in message.resource_spans:
                self._walk_map(rs.resource.attributes, walk, self._summary_for(rs.resource.attributes, summaries))
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = span.attributes
                        self._walk_map(attrs, walk, self._summary_for(attrs, summaries))
                        for ev in span.events:
                            self._walk_map(ev.attributes, walk, self._summary_for(ev.attributes, summaries))
                        if self._sanitize_span_names and span.kind in _SPAN_KINDS_WITH_URL_NAMES and "/" in span.name:
                            span.name = sanitize_url(span.name)
        elif signal is Signal.LOGS:
            for rl in message.resource_logs:
                self._walk_map(rl.resource.attributes, walk, self._summary_for(rl.resource.attributes, summaries))
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        summary = self._summary_for(lr.attributes, summaries)
                        self._walk_map(lr.attributes, walk, summary)
                        self._walk_body(lr.body, walk, summary)
        else:
            for rm in message.resource_metrics:
                self._walk_map(rm.resource.attributes, walk, self._summary_for(rm.resource.attributes, summaries))
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        if kind is None:
                            continue
                        for dp in getattr(metric, kind).data_points:
                            self._walk_map(dp.attributes, walk, self._summary_for(dp.attributes, summaries))

    def _walk_body(self, body: AnyValue, walk: _Walk, summary: _Summary | None) -> None:
        kind = body.WhichOneof("value")
        if kind is None:
            return
        if kind == "kvlist_value":
            self._walk_map(body.kvlist_value.values, walk, summary, prefix="body.")
        else:
            self._collect(body, kind, "body", walk, summary)

    # -- pass 2 and 3 ------------------------------------------------------------------

    def _flagged(self, texts: list[str]) -> Iterable[int]:
        """Indexes of the values that some blocked pattern or detector may touch."""
        if not texts:
            return ()
        flagged: set[int] = set()
        text = "\n".join(texts)
        starts: list[int] = []
        pos = 0
        for t in texts:
            starts.append(pos)
            pos += len(t) + 1
        folded = fold(text) if self._folds else text
        for scanner in self._scanners:
            spans = scanner.candidate_spans(text, folded) if isinstance(scanner, Detector) else scanner.spans(text)
            for start, end in spans:
                first = bisect_right(starts, start) - 1
                last = bisect_right(starts, max(start, end - 1)) - 1
                flagged.update(range(first, last + 1))
        for regex in self._per_value:
            flagged.update(i for i, t in enumerate(texts) if regex.search(t))
        return sorted(flagged)

    def redact(self, signal: Signal, message: Any) -> tuple[int, int]:
        """Redact one export request in place; returns (keys deleted, values masked)."""
        walk = _Walk(self._summary != "silent")
        summaries: list[_Summary] = []
        self._walk_message(signal, message, walk, summaries)
        flagged = self._flagged(walk.texts) if self._checks_values else ()
        allowed = self._allowed_values
        track = walk.track
        for i in flagged:
            text = walk.texts[i]
            summary = walk.summaries[i] if track else None
            if allowed and self.is_allowed_value(text):
                if summary is not None:
                    summary.allowed.add(walk.keys[i])
                continue
            masked = self.mask_text(text)
            if masked != text:
                walk.values[i].string_value = masked
                walk.masked += 1
                if summary is not None:
                    summary.masked.add(walk.keys[i])
        if allowed and summaries:
            # The Collector counts allowed values whether or not a blocked pattern matched.
            for text, key, summary in zip(walk.texts, walk.keys, walk.summaries, strict=True):
                if summary is not None and key not in summary.allowed and self.is_allowed_value(text):
                    summary.allowed.add(key)
        for value in walk.urls:
            if value.WhichOneof("value") == "string_value" and value.string_value:
                value.string_value = sanitize_url(value.string_value)
        for summary in summaries:
            self._write_summary(summary)
        return walk.deleted, walk.masked

    def _write_summary(self, s: _Summary) -> None:
        debug = self._summary == "debug"
        for name, keys, count in (
            ("redacted", s.deleted, len(s.deleted)),
            ("masked", s.masked, len(s.masked)),
            ("allowed", s.allowed, len(s.allowed)),
        ):
            if count:
                if debug:
                    _upsert(s.attrs, f"redaction.{name}.keys", ",".join(sorted(keys)))
                _upsert(s.attrs, f"redaction.{name}.count", count)
        if s.ignored:
            _upsert(s.attrs, "redaction.ignored.count", s.ignored)


def _as_string(value: AnyValue, kind: str) -> str:
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    return repr(value.double_value)


def _upsert(attrs: Any, key: str, value: str | int) -> None:
    for kv in attrs:
        if kv.key == key:
            target = kv.value
            break
    else:
        added = attrs.add()
        added.key = key
        target = added.value
    if isinstance(value, int):
        target.int_value = value
    else:
        target.string_value = value
