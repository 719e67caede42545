"""TLS settings with the Collector's option names (`configtls`), and SSL contexts from them.

Server side (`protocols.grpc.tls`, `protocols.http.tls`): `cert_file`, `key_file`,
`ca_file`, `client_ca_file` (mTLS: clients must present a certificate signed by it),
`min_version`, `max_version`. Client side (exporters' `tls`): `insecure`,
`insecure_skip_verify`, `ca_file`, `cert_file`, `key_file`, `server_name_override`,
`min_version`, `max_version`. `*_pem` inline variants are accepted too.
"""

from __future__ import annotations

import ssl
from typing import Literal

import msgspec

TLSVersion = Literal["1.0", "1.1", "1.2", "1.3"]
_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class TLSServerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    cert_file: str = ""
    key_file: str = ""
    cert_pem: str = ""
    key_pem: str = ""
    ca_file: str = ""
    client_ca_file: str = ""
    min_version: TLSVersion = "1.2"
    max_version: TLSVersion | Literal[""] = ""

    def __post_init__(self) -> None:
        if bool(self.cert_file or self.cert_pem) != bool(self.key_file or self.key_pem):
            raise ValueError("cert_file and key_file must be given together")
        if not (self.cert_file or self.cert_pem):
            raise ValueError("a server TLS section needs cert_file and key_file")

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain PEM, private key PEM, client CA PEM or None); raises OSError."""
        cert = self.cert_pem.encode() if self.cert_pem else _read(self.cert_file)
        key = self.key_pem.encode() if self.key_pem else _read(self.key_file)
        ca = _read(self.client_ca_file) if self.client_ca_file else None
        return cert, key, ca

    def ssl_context(self) -> ssl.SSLContext:
        """A server context; with `client_ca_file`, client certificates are required."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _VERSIONS[self.max_version]
        if self.cert_pem or self.key_pem:
            raise ValueError("inline cert_pem/key_pem are supported for gRPC only")
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


class TLSClientConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_file: str = ""
    ca_pem: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name_override: str = ""
    min_version: TLSVersion = "1.2"
    max_version: TLSVersion | Literal[""] = ""

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file must be given together")

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA PEM or None for the system roots, client cert PEM, client key PEM)."""
        ca = self.ca_pem.encode() if self.ca_pem else (_read(self.ca_file) if self.ca_file else None)
        cert = _read(self.cert_file) if self.cert_file else None
        key = _read(self.key_file) if self.key_file else None
        return ca, cert, key

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.minimum_version = _VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _VERSIONS[self.max_version]
        if self.ca_file:
            ctx.load_verify_locations(self.ca_file)
        if self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
