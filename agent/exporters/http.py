"""What the HTTP exporters (otlp_http, prometheusremotewrite, elasticsearch) share: the URL
check of their config and the aiohttp session they open on start.

aiohttp is imported when a session is opened, so agents without an HTTP exporter never
load it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import yarl

from agent.config.tls import TLSClientConfig
from agent.errors import StartError

if TYPE_CHECKING:
    import aiohttp


def check_url(name: str, value: str) -> None:
    """Raises ValueError with a sentence unless `value` is an http(s) URL with a host."""
    try:
        url = yarl.URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} {value!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{name} {value!r} must be an http:// or https:// URL with a host")


def open_session(label: str, tls: TLSClientConfig, urls: Iterable[str | None], *, read_bufsize: int = 0,
                 **connector_options: Any) -> aiohttp.ClientSession:
    """A session with no connection limit and no overall timeout (the caller bounds each
    request), with `tls` applied when one of `urls` is https; StartError when it cannot load."""
    ssl_context: ssl.SSLContext | bool = True
    if any(url and url.startswith("https://") for url in urls):
        try:
            ssl_context = tls.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise StartError(f"exporter {label}: cannot load TLS settings: {exc}") from exc
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context, limit=0, **connector_options),
        timeout=aiohttp.ClientTimeout(total=None),
        read_bufsize=read_bufsize or 2**16,
    )
