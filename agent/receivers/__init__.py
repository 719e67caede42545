"""Receivers: take telemetry from outside the agent and hand it to pipelines.

Each receiver is one module or package named after its YAML type (`otlp/`, ...). A receiver
is created with one consumer per signal some pipeline uses it for, serves only those signals,
and translates the consumers' errors into its protocol's answers (DESIGN §4).
"""
