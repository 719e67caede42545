"""Helpers over OTLP protobuf batches (DESIGN §3).

Data in flight is the OTLP export request message itself. `Batch` wraps one request with
its signal, its item count, the serialized bytes when they are known to match the message,
and the client information a receiver recorded. Processors touch only the fields they need
through the helpers in `agent.model.otlp`; nothing here copies spans into Python objects.
"""

from __future__ import annotations

from agent.model.batch import Batch, ClientInfo, Signal, count_items, new_request

__all__ = ["Batch", "ClientInfo", "Signal", "count_items", "new_request"]
