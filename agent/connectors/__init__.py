"""Connectors: components that are an exporter in one pipeline and a receiver in another.

Each module (or package) is named after its YAML type and exposes `FACTORY`; the registry in
`agent.components` lists them. The graph creates one instance per (connector id, input
signal) and hands it a consumer per output signal that some pipeline receives it on.
"""
