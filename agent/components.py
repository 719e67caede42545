"""The explicit registry: every component type Flowglass knows, in one readable list.

Adding a component is one line in `_factories()` and one row in the README's component
table. A duplicate type (or alias) within one kind fails at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agent.component import Factory, Kind


def _factories() -> list[Factory]:
    # Imported here so that importing the registry does not import every component.
    from agent.connectors import spanmetrics
    from agent.exporters import (
        debug,
        elasticsearch,
        file,
        jaeger,
        otlp_grpc,
        otlp_http,
        prometheus,
        prometheusremotewrite,
    )
    from agent.exporters import kafka as kafka_exporter
    from agent.processors import (
        attributes,
        batch,
        filter,
        k8sattributes,
        memory_limiter,
        probabilistic_sampler,
        redaction,
        resource,
        resourcedetection,
        tail_sampling,
    )
    from agent.receivers import kafka as kafka_receiver
    from agent.receivers import otlp, syslog

    return [
        # receivers
        otlp.FACTORY,
        kafka_receiver.FACTORY,
        syslog.FACTORY,
        # processors
        memory_limiter.FACTORY,
        batch.FACTORY,
        attributes.FACTORY,
        resource.FACTORY,
        filter.FACTORY,
        redaction.FACTORY,
        resourcedetection.FACTORY,
        k8sattributes.FACTORY,
        probabilistic_sampler.FACTORY,
        tail_sampling.FACTORY,
        # exporters
        otlp_grpc.FACTORY,
        otlp_http.FACTORY,
        debug.FACTORY,
        file.FACTORY,
        kafka_exporter.FACTORY,
        prometheusremotewrite.FACTORY,
        prometheus.FACTORY,
        jaeger.FACTORY,
        elasticsearch.FACTORY,
        # connectors
        spanmetrics.FACTORY,
    ]


class Registry:
    """Factories by kind and type name (aliases included)."""

    def __init__(self, factories: Iterable[Factory]) -> None:
        self._factories: list[Factory] = []
        self._by_name: dict[tuple[Kind, str], Factory] = {}
        for factory in factories:
            for name in (factory.type, *factory.aliases):
                key = (factory.kind, name)
                if key in self._by_name:
                    raise ValueError(f"duplicate {factory.kind.value} type {name!r} in the registry")
                self._by_name[key] = factory
            self._factories.append(factory)

    def get(self, kind: Kind, type_name: str) -> Factory | None:
        return self._by_name.get((kind, type_name))

    def names(self, kind: Kind) -> list[str]:
        """Every type name (aliases included) of a kind, sorted."""
        return sorted(name for k, name in self._by_name if k is kind)

    def __iter__(self) -> Iterator[Factory]:
        return iter(self._factories)


_default: Registry | None = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry(_factories())
    return _default
