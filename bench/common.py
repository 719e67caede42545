"""What several benchmarks share: the machine description and a do-nothing HTTP sink."""

from __future__ import annotations

import asyncio
import os
import platform


def machine() -> str:
    """CPU model, cores, memory, kernel and Python, for the figures' header."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"


async def serve_null_http(port: int, response: bytes, stats: dict[str, int] | None = None) -> asyncio.Server:
    """An HTTP/1.1 server on 127.0.0.1:`port` that reads every request whole and writes
    `response` (a complete answer: status line, headers, body); counts requests and body
    bytes in `stats` when given."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if stats is not None:
                    stats["requests"] += 1
                    stats["bytes"] += length
                writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)
