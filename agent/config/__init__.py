"""The config layer: the Collector's YAML → a validated `AgentConfig` (DESIGN §2).

`load(paths, registry)` reads YAML files and deep-merges them in order, expands
`${env:NAME}` / `${env:NAME:-default}` / `${NAME}` (`$$` is a literal `$`), checks the shape,
converts each component's options into its factory's Config Struct, converts the service
section and cross-checks the pipelines. Every problem is reported at once, each starting
with its path (`exporters.kafka/edge.brokers: expected array, got str`), in a `ConfigError`.

Modules, in the order data flows through them: `document` (YAML with positions, merge),
`env` (expansion), `validate` (sections, components, service), `convert` (msgspec errors →
problems), `pipelines` (cross-checks), `problems` (paths and ordering), `load` (public entry
points). `model` is the result; `types` and `tls` are value types Config Structs use.
"""

from __future__ import annotations

from agent.config.load import load, load_dict, load_text
from agent.errors import ConfigError

__all__ = ["ConfigError", "load", "load_dict", "load_text"]
