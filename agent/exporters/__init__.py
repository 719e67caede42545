"""Exporters: send batches out of the agent.

Every exporter is one module named after its YAML type (`otlp_grpc`, `otlp_http`, `debug`,
`file`, ...) and builds on `agent.exporters.sending`, which gives it the Collector's
`sending_queue`, `retry_on_failure` and `timeout` options with their counters.
"""
