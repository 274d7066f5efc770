"""pytest fixtures for real TLS on loopback; import them where needed:

    from tests.common.pki_fixtures import dev_pki, public_cert  # noqa: F401

- `dev_pki`: a fresh internal CA and a certificate per service and for the launcher (`wikimem_common.tls.DevPki`);
  `dev_pki.env("orchestrator")` are the WIKIMEM_INTERNAL_* variables of a caller holding a trusted certificate,
  `dev_pki.config(name)` the same as a TlsConfig. A direct internal call without them is refused (UNAVAILABLE).
- `public_cert`: (KeyPair, CA file) for the public port on 127.0.0.1/localhost: set WIKIMEM_TLS_CERT/KEY to the pair,
  and give clients the CA file (`WikimemClient(..., ca_file=...)`, `--ca-file`, WIKIMEM_CA_FILE).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wikimem_common import tls


@pytest.fixture()
def dev_pki(tmp_path: Path) -> tls.DevPki:
    return tls.generate_dev_pki(tmp_path / "internal-pki")


@pytest.fixture()
def public_cert(tmp_path: Path) -> tuple[tls.KeyPair, Path]:
    pki = tls.generate_dev_pki(tmp_path / "public-pki", names=("public",))
    return pki.pairs["public"], pki.ca
