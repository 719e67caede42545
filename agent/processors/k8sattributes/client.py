"""Talking to the Kubernetes API: where it is, how to authenticate, list and watch.

`ApiConfig.load(auth_type)` finds the API server as a Kubernetes client does:

- `serviceAccount` (in a pod): `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
  the CA and bearer token mounted at `/var/run/secrets/kubernetes.io/serviceaccount/`. The
  token file is re-read every minute, because projected tokens are rotated by the kubelet.
- `kubeConfig`: `$KUBECONFIG` (first file) or `~/.kube/config`, its current context: the
  cluster's `server`, `certificate-authority(-data)`, `insecure-skip-tls-verify`, and the
  user's `token` / `tokenFile` or client certificate (`client-certificate(-data)`,
  `client-key(-data)`).
- `none`: the server from `$KUBERNETES_SERVICE_HOST`/`PORT` without credentials (a proxy
  such as `kubectl proxy` in front of the API).

`KubeApi.list()` returns a list response (`items` and `metadata.resourceVersion`);
`KubeApi.watch()` yields watch events (`{"type": ..., "object": ...}`), one JSON document
per line, until the server ends the stream. A `410 Gone` — as an HTTP status or as an
`ERROR` event whose Status has code 410 — raises `ResourceExpired`: the informer lists again.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import aiohttp

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TOKEN_REREAD_SECONDS = 60.0
#: Longest watch line accepted (one object); a pod is a few KiB, a huge one tens of KiB.
MAX_EVENT_BYTES = 4 << 20


class KubeApiError(Exception):
    """The API answered with an error (status and reason in the message)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ResourceExpired(KubeApiError):
    """410 Gone: the resourceVersion to watch from is too old; list again."""


@dataclass
class ApiConfig:
    """Where the API server is and how to talk to it."""

    server: str
    ssl: ssl.SSLContext | None = None
    token: str = ""
    token_file: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    _token_read_at: float = 0.0

    def auth_headers(self, clock: float | None = None) -> dict[str, str]:
        now = time.monotonic() if clock is None else clock
        if self.token_file and (not self.token or now - self._token_read_at > _TOKEN_REREAD_SECONDS):
            self.token = Path(self.token_file).read_text(encoding="utf-8").strip()
            self._token_read_at = now
        out = dict(self.headers)
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    @classmethod
    def load(cls, auth_type: str, environ: Mapping[str, str] | None = None,
             service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiConfig:
        env = os.environ if environ is None else environ
        if auth_type == "kubeConfig":
            return from_kubeconfig(env)
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeApiError("KUBERNETES_SERVICE_HOST is not set: the agent is not running in a pod "
                               "(use auth_type: kubeConfig outside a cluster)")
        server_host = f"[{host}]" if ":" in host else host
        if auth_type == "none":
            return cls(server=f"http://{server_host}:{port}")
        ca = service_account_dir / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca)) if ca.exists() else ssl.create_default_context()
        token_file = service_account_dir / "token"
        if not token_file.exists():
            raise KubeApiError(f"no service-account token at {token_file}; is automountServiceAccountToken off?")
        return cls(server=f"https://{server_host}:{port}", ssl=context, token_file=str(token_file))


def _pem(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """The PEM bytes of `key-data` (inline base64) or of the file `key` (relative to the kubeconfig)."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key])
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl loads a certificate chain only from files: write both to a private temporary
    # directory for the call and remove them at once.
    with tempfile.TemporaryDirectory(prefix="flowglass-kube-") as tmp:
        cert_path, key_path = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def from_kubeconfig(env: Mapping[str, str]) -> ApiConfig:
    """The current context of `$KUBECONFIG` (first file) or `~/.kube/config`."""
    name = env.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path(env.get("HOME", "~")).expanduser() / ".kube" / "config")
    path = Path(name)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise KubeApiError(f"cannot read the kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise KubeApiError(f"the kubeconfig {path} is not valid YAML: {exc}") from None

    def named(section: str, wanted: str) -> dict[str, Any]:
        for item in doc.get(section) or []:
            if item.get("name") == wanted:
                return dict(item.get(section[:-1]) or {})
        raise KubeApiError(f"the kubeconfig {path} has no {section[:-1]} named {wanted!r}")

    current = doc.get("current-context")
    if not current:
        raise KubeApiError(f"the kubeconfig {path} has no current-context")
    context = named("contexts", current)
    cluster = named("clusters", context.get("cluster", ""))
    user = named("users", context["user"]) if context.get("user") else {}
    server = str(cluster.get("server", "")).rstrip("/")
    if not server:
        raise KubeApiError(f"the cluster of context {current!r} in {path} has no server")
    config = ApiConfig(server=server)
    if server.startswith("https://"):
        try:
            ca = _pem(cluster, "certificate-authority", path.parent)
            ctx = ssl.create_default_context(cadata=ca.decode()) if ca else ssl.create_default_context()
            if cluster.get("insecure-skip-tls-verify"):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            cert = _pem(user, "client-certificate", path.parent)
            key = _pem(user, "client-key", path.parent)
            if cert and key:
                _load_client_cert(ctx, cert, key)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise KubeApiError(f"the TLS settings of context {current!r} in {path} do not load: {exc}") from None
        config.ssl = ctx
    if user.get("token"):
        config.token = str(user["token"])
    elif user.get("tokenFile"):
        config.token_file = str(user["tokenFile"])
    return config


class KubeApi:
    """List and watch one kind of object over one aiohttp session."""

    def __init__(self, config: ApiConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self._session = session

    async def list(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        async with self._session.get(
            self.config.server + path, params=dict(params), headers=self.config.auth_headers(), ssl=self._ssl()
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise _error(resp.status, body, path)
            doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("items", []), list):
            raise KubeApiError(f"GET {path} did not return a list")
        return doc

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        query = {**params, "watch": "1", "allowWatchBookmarks": "true"}
        async with self._session.get(
            self.config.server + path, params=query, headers=self.config.auth_headers(), ssl=self._ssl(),
            timeout=_watch_timeout(),
        ) as resp:
            if resp.status != 200:
                raise _error(resp.status, await resp.read(), path)
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                if len(buffer) > MAX_EVENT_BYTES:
                    raise KubeApiError(f"a watch event from {path} is larger than {MAX_EVENT_BYTES} bytes")
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield _event(line, path)
            if buffer.strip():
                yield _event(buffer, path)

    def _ssl(self) -> ssl.SSLContext | bool:
        return self.config.ssl if self.config.ssl is not None else True


def _watch_timeout() -> Any:
    import aiohttp

    # A watch stays open for minutes; only connecting and the gaps between bytes are bounded
    # (the server sends bookmarks), so a silently dead connection is noticed.
    return aiohttp.ClientTimeout(total=None, connect=10, sock_read=330)


def _event(line: bytes, path: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        raise KubeApiError(f"the watch of {path} sent a line that is not JSON") from None
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        code = int(status.get("code") or 0)
        message = f"the watch of {path} failed: {status.get('reason', '')} {status.get('message', '')}".strip()
        if code == 410:
            raise ResourceExpired(message, 410)
        raise KubeApiError(message, code)
    return dict(event)


def _error(status: int, body: bytes, path: str) -> KubeApiError:
    try:
        doc = json.loads(body)
        detail = f"{doc.get('reason', '')}: {doc.get('message', '')}"
    except ValueError:
        detail = body[:200].decode("utf-8", "replace")
    message = f"GET {path} answered {status} ({detail})"
    if status == 410:
        return ResourceExpired(message, status)
    return KubeApiError(message, status)
