"""tail_sampling config: the Collector's keys and defaults, and every malformed policy as a
problem with its path."""

from __future__ import annotations

from typing import Any

import pytest

from agent.components import default_registry
from agent.config import load_text
from agent.config.convert import convert
from agent.config.problems import format_path
from agent.errors import ConfigError
from agent.processors.tail_sampling import TailSamplingConfig

ALWAYS = {"name": "all", "type": "always_sample"}


def problem(raw: dict[str, Any]) -> str:
    config, found = convert(raw, TailSamplingConfig, ("processors", "tail_sampling"))
    assert config is None and found is not None, "expected a config problem"
    return f"{format_path(found.path)}: {found.message}"


def ok(raw: dict[str, Any]) -> TailSamplingConfig:
    config, found = convert(raw, TailSamplingConfig, ("processors", "tail_sampling"))
    assert found is None, found
    assert isinstance(config, TailSamplingConfig)
    return config


def test_defaults_are_the_collectors() -> None:
    c = ok({"policies": [ALWAYS]})
    assert c.decision_wait == 30.0
    assert c.num_traces == 50000
    assert c.expected_new_traces_per_sec == 0
    assert c.decision_wait_after_root_received == 0.0
    assert c.decision_cache.sampled_cache_size == 0 and c.decision_cache.non_sampled_cache_size == 0
    assert c.max_buffered_bytes == 256 * 1024 * 1024
    assert c.record_policy is False and c.sample_on_first_match is False


def test_every_policy_type_parses_as_the_collector_writes_it() -> None:
    c = ok({
        "decision_wait": "10s", "num_traces": 100, "expected_new_traces_per_sec": 10,
        "decision_wait_after_root_received": "2s", "max_buffered_bytes": "64MiB",
        "decision_cache": {"sampled_cache_size": 100_000, "non_sampled_cache_size": 100_000},
        "policies": [
            ALWAYS,
            {"name": "p2", "type": "latency", "latency": {"threshold_ms": 5000, "upper_threshold_ms": 10000}},
            {"name": "p3", "type": "numeric_attribute", "numeric_attribute": {"key": "key1", "min_value": 50, "max_value": 100}},
            {"name": "p4", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
            {"name": "p5", "type": "status_code", "status_code": {"status_codes": ["ERROR", "UNSET"]}},
            {"name": "p6", "type": "string_attribute", "string_attribute": {"key": "key2", "values": ["value1", "value2"]}},
            {"name": "p7", "type": "string_attribute", "string_attribute": {
                "key": "key2", "values": ["value1", "val*"], "enabled_regex_matching": True, "cache_max_size": 10}},
            {"name": "p8", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 35}},
            {"name": "p8b", "type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": 1000, "burst_capacity": 5000}},
            {"name": "p9", "type": "span_count", "span_count": {"min_spans": 2, "max_spans": 20}},
            {"name": "p10", "type": "trace_state", "trace_state": {"key": "key3", "values": ["value1", "value2"]}},
            {"name": "p11", "type": "boolean_attribute", "boolean_attribute": {"key": "key4", "value": True}},
            {"name": "p12", "type": "trace_flags"},
            {"name": "and-1", "type": "and", "and": {"and_sub_policy": [
                {"name": "a1", "type": "numeric_attribute", "numeric_attribute": {"key": "key1", "min_value": 50}},
                {"name": "a2", "type": "string_attribute", "string_attribute": {"key": "key2", "values": ["v"]}},
            ]}},
            {"name": "drop-1", "type": "drop", "drop": {"drop_sub_policy": [
                {"name": "d1", "type": "string_attribute", "string_attribute": {
                    "key": "url.path", "values": ["/health", "/metrics"], "enabled_regex_matching": True}},
            ]}},
            {"name": "composite-1", "type": "composite", "composite": {
                "max_total_spans_per_second": 1000,
                "policy_order": ["c1", "c2", "c3"],
                "composite_sub_policy": [
                    {"name": "c1", "type": "numeric_attribute", "numeric_attribute": {"key": "key1", "min_value": 50}},
                    {"name": "c2", "type": "and", "and": {"and_sub_policy": [ALWAYS]}},
                    {"name": "c3", "type": "always_sample"},
                ],
                "rate_allocation": [{"policy": "c1", "percent": 50}, {"policy": "c2", "percent": 25}],
            }},
        ],
    })
    assert c.decision_wait == 10.0 and c.decision_wait_after_root_received == 2.0
    assert c.max_buffered_bytes == 64 * 1024 * 1024
    assert len(c.policies) == 16


P = "processors.tail_sampling"
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no policies", {}, f"{P}: policies needs at least one policy"),
    ("unknown type", {"policies": [{"name": "x", "type": "sometimes"}]},
     f"{P}.policies[0]: unknown policy type 'sometimes'"),
    ("ottl_condition type", {"policies": [{"name": "x", "type": "ottl_condition"}]},
     f"{P}.policies[0]: policy type 'ottl_condition': OTTL conditions are not supported by Flowglass"),
    ("ottl_condition section", {"policies": [{**ALWAYS, "ottl_condition": {"span": ["true"]}}]},
     f"{P}.policies[0].ottl_condition: the Collector's option \"ottl_condition\" is not supported"),
    ("missing sub-map", {"policies": [{"name": "x", "type": "latency"}]},
     f"{P}.policies[0]: policy 'x' of type latency needs a latency section"),
    ("sub-map of another type", {"policies": [{**ALWAYS, "latency": {"threshold_ms": 1}}]},
     f"{P}.policies[0]: policy 'all' of type always_sample does not read the latency section"),
    ("no name", {"policies": [{"name": "", "type": "always_sample"}]}, f"{P}.policies[0]: every policy needs a name"),
    ("duplicate names", {"policies": [ALWAYS, ALWAYS]}, f"{P}: two policys are named 'all'"),
    ("unknown option in a sub-map", {"policies": [{"name": "x", "type": "latency", "latency": {"threshold": 5}}]},
     f"{P}.policies[0].latency.threshold: unknown option"),
    ("latency without bounds", {"policies": [{"name": "x", "type": "latency", "latency": {}}]},
     f"{P}.policies[0].latency: latency needs threshold_ms or upper_threshold_ms"),
    ("latency upper below lower", {"policies": [{"name": "x", "type": "latency",
                                                  "latency": {"threshold_ms": 50, "upper_threshold_ms": 10}}]},
     f"{P}.policies[0].latency: upper_threshold_ms (10) must be above threshold_ms (50)"),
    ("numeric min > max", {"policies": [{"name": "x", "type": "numeric_attribute",
                                          "numeric_attribute": {"key": "k", "min_value": 9, "max_value": 1}}]},
     f"{P}.policies[0].numeric_attribute: min_value (9) is above max_value (1)"),
    ("numeric without bounds", {"policies": [{"name": "x", "type": "numeric_attribute", "numeric_attribute": {"key": "k"}}]},
     f"{P}.policies[0].numeric_attribute: numeric_attribute needs min_value, max_value or both"),
    ("numeric without key", {"policies": [{"name": "x", "type": "numeric_attribute", "numeric_attribute": {"min_value": 1}}]},
     f"{P}.policies[0].numeric_attribute.key: this option is required"),
    ("bad regex", {"policies": [{"name": "x", "type": "string_attribute", "string_attribute": {
        "key": "k", "values": ["(unclosed"], "enabled_regex_matching": True}}]},
     f"{P}.policies[0].string_attribute: value '(unclosed' is not a valid regular expression"),
    ("string without values", {"policies": [{"name": "x", "type": "string_attribute",
                                             "string_attribute": {"key": "k", "values": []}}]},
     f"{P}.policies[0].string_attribute: string_attribute needs at least one value"),
    ("string empty key", {"policies": [{"name": "x", "type": "string_attribute",
                                        "string_attribute": {"key": "", "values": ["v"]}}]},
     f"{P}.policies[0].string_attribute: string_attribute needs a key"),
    ("boolean empty key", {"policies": [{"name": "x", "type": "boolean_attribute", "boolean_attribute": {"key": ""}}]},
     f"{P}.policies[0].boolean_attribute: boolean_attribute needs a key"),
    ("unknown status code", {"policies": [{"name": "x", "type": "status_code", "status_code": {"status_codes": ["FAILED"]}}]},
     f"{P}.policies[0].status_code: unknown status code 'FAILED'"),
    ("no status codes", {"policies": [{"name": "x", "type": "status_code", "status_code": {"status_codes": []}}]},
     f"{P}.policies[0].status_code: status_codes must name at least one"),
    ("percentage above 100", {"policies": [{"name": "x", "type": "probabilistic",
                                            "probabilistic": {"sampling_percentage": 101}}]},
     f"{P}.policies[0].probabilistic: sampling_percentage must be between 0 and 100, got 101"),
    ("negative percentage", {"policies": [{"name": "x", "type": "probabilistic",
                                           "probabilistic": {"sampling_percentage": -1}}]},
     f"{P}.policies[0].probabilistic: sampling_percentage must be between 0 and 100, got -1"),
    ("rate 0", {"policies": [{"name": "x", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 0}}]},
     f"{P}.policies[0].rate_limiting.spans_per_second: "),
    ("bytes rate 0", {"policies": [{"name": "x", "type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": 0}}]},
     f"{P}.policies[0].bytes_limiting.bytes_per_second: "),
    ("span_count max < min", {"policies": [{"name": "x", "type": "span_count",
                                            "span_count": {"min_spans": 5, "max_spans": 2}}]},
     f"{P}.policies[0].span_count: max_spans (2) is below min_spans (5)"),
    ("span_count empty", {"policies": [{"name": "x", "type": "span_count", "span_count": {}}]},
     f"{P}.policies[0].span_count: span_count needs min_spans or max_spans"),
    ("trace_state without values", {"policies": [{"name": "x", "type": "trace_state",
                                                  "trace_state": {"key": "k", "values": []}}]},
     f"{P}.policies[0].trace_state: trace_state needs at least one value"),
    ("empty and", {"policies": [{"name": "x", "type": "and", "and": {"and_sub_policy": []}}]},
     f"{P}.policies[0].and: and_sub_policy needs at least one policy"),
    ("and inside and", {"policies": [{"name": "x", "type": "and", "and": {"and_sub_policy": [
        {"name": "y", "type": "and"}]}}]},
     f"{P}.policies[0].and.and_sub_policy[0]: policy type 'and' is not allowed inside an and or drop policy"),
    ("and section inside and", {"policies": [{"name": "x", "type": "and", "and": {"and_sub_policy": [
        {"name": "y", "type": "always_sample", "and": {"and_sub_policy": [ALWAYS]}}]}}]},
     f"{P}.policies[0].and.and_sub_policy[0].and: unknown option"),
    ("composite inside drop", {"policies": [{"name": "x", "type": "drop", "drop": {"drop_sub_policy": [
        {"name": "y", "type": "composite"}]}}]},
     f"{P}.policies[0].drop.drop_sub_policy[0]: policy type 'composite' is not allowed inside an and or drop policy"),
    ("empty drop", {"policies": [{"name": "x", "type": "drop", "drop": {"drop_sub_policy": []}}]},
     f"{P}.policies[0].drop: drop_sub_policy needs at least one policy"),
    ("composite inside composite", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": [{"name": "y", "type": "composite"}]}}]},
     f"{P}.policies[0].composite.composite_sub_policy[0]: policy type 'composite' is not allowed inside a composite"),
    ("and of and inside composite", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": [{"name": "y", "type": "and", "and": {
            "and_sub_policy": [{"name": "z", "type": "and"}]}}]}}]},
     f"{P}.policies[0].composite.composite_sub_policy[0].and.and_sub_policy[0]: policy type 'and' is not allowed"),
    ("rate_allocation names a missing policy", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": [ALWAYS],
        "rate_allocation": [{"policy": "nope", "percent": 50}]}}]},
     f"{P}.policies[0].composite: rate_allocation names 'nope', which is not a composite_sub_policy"),
    ("policy_order names a missing policy", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": [ALWAYS], "policy_order": ["nope"]}}]},
     f"{P}.policies[0].composite: policy_order names 'nope', which is not a composite_sub_policy"),
    ("rate_allocation percent out of range", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": [ALWAYS],
        "rate_allocation": [{"policy": "all", "percent": 150}]}}]},
     f"{P}.policies[0].composite.rate_allocation[0]: percent must be between 0 and 100, got 150"),
    ("rate_allocation above 100 in all", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10,
        "composite_sub_policy": [ALWAYS, {"name": "b", "type": "always_sample"}],
        "rate_allocation": [{"policy": "all", "percent": 60}, {"policy": "b", "percent": 60}]}}]},
     f"{P}.policies[0].composite: rate_allocation percents add up to 120, more than 100"),
    ("composite without sub-policies", {"policies": [{"name": "x", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": []}}]},
     f"{P}.policies[0].composite: composite_sub_policy needs at least one policy"),
    ("composite without a total", {"policies": [{"name": "x", "type": "composite", "composite": {
        "composite_sub_policy": [ALWAYS]}}]},
     f"{P}.policies[0].composite.max_total_spans_per_second: this option is required"),
    ("decision_wait 0", {"decision_wait": "0s", "policies": [ALWAYS]}, f"{P}: decision_wait must be above 0"),
    ("num_traces 0", {"num_traces": 0, "policies": [ALWAYS]}, f"{P}.num_traces: "),
    ("bad size", {"max_buffered_bytes": "lots", "policies": [ALWAYS]}, f"{P}.max_buffered_bytes: "),
    ("negative cache size", {"decision_cache": {"sampled_cache_size": -1}, "policies": [ALWAYS]},
     f"{P}.decision_cache.sampled_cache_size: "),
    ("upstream option", {"block_on_overflow": True, "policies": [ALWAYS]},
     f"{P}.block_on_overflow: the Collector's option \"block_on_overflow\" is not supported by Flowglass"),
]


@pytest.mark.parametrize(("raw", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_config_is_a_problem_with_its_path(raw: dict[str, Any], expected: str) -> None:
    assert problem(raw).startswith(expected), problem(raw)


def test_problems_come_through_the_config_loader() -> None:
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}
processors:
  tail_sampling:
    policies:
      - {name: a, type: latency}
exporters: {debug: {}}
service: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling], exporters: [debug]}}}
"""
    with pytest.raises(ConfigError) as info:
        load_text(text, registry=default_registry(), environ={})
    assert "processors.tail_sampling.policies[0]: policy 'a' of type latency needs a latency section" in str(info.value)


def test_tail_sampling_takes_traces_only() -> None:
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}
processors: {tail_sampling: {policies: [{name: a, type: always_sample}]}}
exporters: {debug: {}}
service: {pipelines: {logs: {receivers: [otlp], processors: [tail_sampling], exporters: [debug]}}}
"""
    with pytest.raises(ConfigError, match="does not support logs"):
        load_text(text, registry=default_registry(), environ={})
