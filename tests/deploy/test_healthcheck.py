"""deploy/docker/healthcheck.py (the images' HEALTHCHECK and the Helm chart's probe on TLS ports) against real gRPC
servers: plaintext, mutual TLS on an internal service, TLS on the orchestrator's public port, NOT_SERVING, down.
No container engine needed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from wikimem_common import server, tls

from .compose_support import DOCKER_DIR

SCRIPT = DOCKER_DIR / "healthcheck.py"
#: Variables of the environment that would change what the script does.
CLEARED = (
    "WIKIMEM_SERVICE",
    "WIKIMEM_LISTEN",
    "WIKIMEM_TLS_CERT",
    "WIKIMEM_TLS_KEY",
    "WIKIMEM_INTERNAL_CA",
    "WIKIMEM_INTERNAL_CERT",
    "WIKIMEM_INTERNAL_KEY",
    "WIKIMEM_INTERNAL_SERVER_NAME",
    "WIKIMEM_HEALTHCHECK_CA",
)


def healthcheck(env: dict[str, str]) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def no_services(_server: grpc.Server) -> list[str]:
    return []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tls.DevPki:
    return tls.generate_dev_pki(tmp_path_factory.mktemp("pki"), names=("embedder", "orchestrator", "launcher"))


@pytest.fixture()
def plaintext() -> Iterator[server.ServerHandle]:
    handle = server.start(no_services, "127.0.0.1:0")
    yield handle
    handle.stop(grace=0)


def test_plaintext_serving_then_not_serving_then_down(plaintext: server.ServerHandle) -> None:
    env = {"WIKIMEM_SERVICE": "embedder", "WIKIMEM_LISTEN": plaintext.address}
    assert healthcheck(env) == (0, "SERVING")
    plaintext.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck(env) == (1, "NOT_SERVING")
    plaintext.stop(grace=0)
    code, out = healthcheck(env)
    assert code == 1 and out.startswith("unhealthy: UNAVAILABLE"), out


def test_wildcard_listen_address_is_probed_on_loopback(plaintext: server.ServerHandle) -> None:
    port = plaintext.address.rsplit(":", 1)[1]
    assert healthcheck({"WIKIMEM_LISTEN": f"0.0.0.0:{port}"}) == (0, "SERVING")


def test_without_listen_address_it_says_what_is_missing() -> None:
    code, out = healthcheck({})
    assert code == 1 and "WIKIMEM_LISTEN is not set" in out


def test_internal_service_with_mutual_tls(pki: tls.DevPki) -> None:
    handle = server.start(
        no_services, "127.0.0.1:0", credentials=tls.server_credentials("embedder", pki.config("embedder"))
    )
    try:
        env = {"WIKIMEM_SERVICE": "embedder", "WIKIMEM_LISTEN": handle.address}
        assert healthcheck({**env, **pki.env("embedder")}) == (0, "SERVING")
        # Plaintext against a TLS port: the probe must fail, not pass by accident.
        code, out = healthcheck(env)
        assert code == 1 and out.startswith("unhealthy: UNAVAILABLE"), out
        # A certificate the internal CA did not sign is refused.
        other = tls.generate_dev_pki(Path(pki.directory).parent / "other-pki", names=("embedder",))
        code, out = healthcheck({**env, **other.env("embedder")})
        assert code == 1 and out.startswith("unhealthy"), out
    finally:
        handle.stop(grace=0)


def test_orchestrator_public_tls(pki: tls.DevPki) -> None:
    config = tls.TlsConfig(public=pki.pairs["orchestrator"])
    handle = server.start(no_services, "127.0.0.1:0", credentials=tls.server_credentials("orchestrator", config))
    try:
        pair = pki.pairs["orchestrator"]
        env = {
            "WIKIMEM_SERVICE": "orchestrator",
            "WIKIMEM_LISTEN": handle.address,
            "WIKIMEM_TLS_CERT": str(pair.cert),
            "WIKIMEM_TLS_KEY": str(pair.key),
        }
        assert healthcheck({**env, "WIKIMEM_HEALTHCHECK_CA": str(pki.ca)}) == (0, "SERVING")
        # Without the CA that signed it, the server's certificate is not trusted (system roots only).
        code, out = healthcheck(env)
        assert code == 1 and out.startswith("unhealthy"), out
    finally:
        handle.stop(grace=0)


def test_unreadable_certificate_is_reported(tmp_path: Path) -> None:
    env = {
        "WIKIMEM_SERVICE": "memory",
        "WIKIMEM_LISTEN": "127.0.0.1:1",
        "WIKIMEM_INTERNAL_CA": str(tmp_path / "missing-ca.pem"),
        "WIKIMEM_INTERNAL_CERT": str(tmp_path / "missing.pem"),
        "WIKIMEM_INTERNAL_KEY": str(tmp_path / "missing.key"),
    }
    code, out = healthcheck(env)
    assert code == 1 and "missing-ca.pem" in out, out
