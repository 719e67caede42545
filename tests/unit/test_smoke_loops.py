from __future__ import annotations

import asyncio

from agent.testing import Sink, make_traces


async def test_sink_receives_on_each_loop() -> None:
    sink = Sink()
    await sink.consume(make_traces(3))
    assert sink.items == 3
    assert asyncio.get_running_loop() is not None
