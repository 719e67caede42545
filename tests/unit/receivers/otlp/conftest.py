from __future__ import annotations

import pytest

from tests.unit.receivers.otlp.kit import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    return make_certs(tmp_path_factory.mktemp("certs"))
