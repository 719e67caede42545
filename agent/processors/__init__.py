"""Processors: components that sit in one pipeline and pass (changed) batches on.

Each module (or package) is named after its YAML type and exposes `FACTORY`; the registry in
`agent.components` lists them.
"""
