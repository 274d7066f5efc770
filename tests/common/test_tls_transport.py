"""Real TLS on loopback: mutual TLS refuses callers without a certificate from the internal CA; the public port's
certificate is reloaded from its files without a restart; bad settings fail at start with a precise message."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.common.pki_fixtures import dev_pki, public_cert  # noqa: F401  (fixtures)
from wikimem_common import server as wserver
from wikimem_common import tls
from wikimem_common.config import ConfigError
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc, reranker_pb2, reranker_pb2_grpc


class _Lengths(reranker_pb2_grpc.RerankerServicer):
    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        return reranker_pb2.RerankResponse(scores=[float(len(p)) for p in request.passages])


def _register(server: grpc.Server) -> list[str]:
    reranker_pb2_grpc.add_RerankerServicer_to_server(_Lengths(), server)
    return ["wikimem.v1.Reranker"]


def _rerank(channel: grpc.Channel) -> list[float]:
    with channel:
        request = reranker_pb2.RerankRequest(query="q", passages=["abc"])
        return list(reranker_pb2_grpc.RerankerStub(channel).Rerank(request, timeout=5).scores)


def _refused(channel: grpc.Channel) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        _rerank(channel)
    return err.value


@pytest.fixture()
def pki(dev_pki: tls.DevPki) -> tls.DevPki:  # noqa: F811
    return dev_pki


@pytest.fixture()
def internal_server(pki: tls.DevPki) -> Iterator[wserver.ServerHandle]:
    """An internal service (the reranker's contract) that requires client certificates from `pki`'s CA."""
    handle = wserver.start(
        _register, "127.0.0.1:0", credentials=tls.server_credentials("reranker", pki.config("reranker"))
    )
    yield handle
    handle.stop(grace=0)


def test_dev_pki_files_are_private_and_the_ca_key_is_not_kept(pki: tls.DevPki) -> None:
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in pki.directory.iterdir())
    assert files == sorted(["ca.pem", *(f"{n}.{ext}" for n in tls.DEV_PKI_NAMES for ext in ("pem", "key"))])
    for path in pki.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    memory = x509.load_pem_x509_certificate(pki.pairs["memory"].cert.read_bytes())
    assert memory.issuer == ca.subject
    san = memory.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "memory"} <= set(san.get_values_for_type(x509.DNSName))


def test_internal_service_accepts_a_client_certificate_from_its_ca(
    pki: tls.DevPki, internal_server: wserver.ServerHandle
) -> None:
    channel = wserver.channel(internal_server.address, tls_config=pki.config("orchestrator"))
    assert _rerank(channel) == [3.0]


def test_internal_service_refuses_callers_without_a_trusted_certificate(
    pki: tls.DevPki, internal_server: wserver.ServerHandle, tmp_path: Path
) -> None:
    address = internal_server.address
    # plaintext
    assert _refused(grpc.insecure_channel(address)).code() == grpc.StatusCode.UNAVAILABLE
    # TLS that trusts the server, but no client certificate
    no_cert = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    assert _refused(grpc.secure_channel(address, no_cert)).code() == grpc.StatusCode.UNAVAILABLE
    # a client certificate from another CA (the caller trusts the server's CA)
    other = tls.generate_dev_pki(tmp_path / "other")
    key, chain = tls.load_pair(other.pairs["orchestrator"], "other")
    foreign = grpc.ssl_channel_credentials(pki.ca.read_bytes(), private_key=key, certificate_chain=chain)
    assert _refused(grpc.secure_channel(address, foreign)).code() == grpc.StatusCode.UNAVAILABLE
    # and the server is not trusted by a caller of another internal CA either
    assert _refused(wserver.channel(address, tls_config=other.config("orchestrator"))).code() == (
        grpc.StatusCode.UNAVAILABLE
    )


def test_channel_reads_the_internal_settings_from_the_environment(
    pki: tls.DevPki, internal_server: wserver.ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in pki.env("memory").items():
        monkeypatch.setenv(name, value)
    assert _rerank(wserver.channel(internal_server.address)) == [3.0]
    for name in pki.env("memory"):
        monkeypatch.delenv(name)
    assert _refused(wserver.channel(internal_server.address)).code() == grpc.StatusCode.UNAVAILABLE


def _served_fingerprint(address: str) -> str:
    """SHA-256 of the certificate the server presents to a new connection (no verification: we only look)."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _fingerprint(cert: Path) -> str:
    return hashlib.sha256(
        x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    ).hexdigest()


def _tls_channel(address: str, ca: Path) -> grpc.Channel:
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca.read_bytes()))


def test_public_certificate_is_reloaded_when_its_files_change(tmp_path: Path) -> None:
    first = tls.generate_dev_pki(tmp_path / "first", names=("public",))
    second = tls.generate_dev_pki(tmp_path / "second", names=("public",))
    live = tls.KeyPair(tmp_path / "live.pem", tmp_path / "live.key")
    live.cert.write_bytes(first.pairs["public"].cert.read_bytes())
    live.key.write_bytes(first.pairs["public"].key.read_bytes())
    credentials = tls.server_credentials("orchestrator", tls.TlsConfig(public=live))
    handle = wserver.start(_register, "127.0.0.1:0", credentials=credentials)
    try:
        address = handle.address
        assert _rerank(_tls_channel(address, first.ca)) == [3.0]
        assert _served_fingerprint(address) == _fingerprint(first.pairs["public"].cert)
        # the public port does not ask for a client certificate, but does not speak plaintext
        assert _refused(grpc.insecure_channel(address)).code() == grpc.StatusCode.UNAVAILABLE

        # half a rotation (the new key, the old certificate): not usable, the old pair keeps being served
        live.key.write_bytes(second.pairs["public"].key.read_bytes())
        assert _served_fingerprint(address) == _fingerprint(first.pairs["public"].cert)
        assert _rerank(_tls_channel(address, first.ca)) == [3.0]

        # the rotation completes: new connections get the new certificate, without a restart
        live.cert.write_bytes(second.pairs["public"].cert.read_bytes())
        os.utime(live.cert, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        assert _served_fingerprint(address) == _fingerprint(second.pairs["public"].cert)
        assert _rerank(_tls_channel(address, second.ca)) == [3.0]
        assert _refused(_tls_channel(address, first.ca)).code() == grpc.StatusCode.UNAVAILABLE
    finally:
        handle.stop(grace=0)


def test_client_library_speaks_tls_with_a_ca_file(public_cert: tuple[tls.KeyPair, Path]) -> None:  # noqa: F811
    from wikimem import WikimemClient
    from wikimem.aio import AsyncWikimemClient
    from wikimem.errors import UnavailableError

    pair, ca = public_cert
    handle = wserver.start(
        _register, "127.0.0.1:0", credentials=tls.server_credentials("orchestrator", tls.TlsConfig(public=pair))
    )
    try:
        with WikimemClient(handle.address, ca_file=str(ca)) as client:
            assert client.health() == "SERVING"
        with WikimemClient(handle.address, tls=False) as client, pytest.raises(UnavailableError):
            client.health(timeout=3)

        async def aio_health() -> str:
            async with AsyncWikimemClient(handle.address, ca_file=str(ca)) as client:
                return await client.health()

        assert asyncio.run(aio_health()) == "SERVING"
    finally:
        handle.stop(grace=0)


def test_settings_fail_fast_with_what_to_set(pki: tls.DevPki, tmp_path: Path) -> None:
    env = pki.env("memory")
    with pytest.raises(ConfigError, match="WIKIMEM_INTERNAL_KEY is not set"):
        tls.TlsConfig.from_env({k: v for k, v in env.items() if k != "WIKIMEM_INTERNAL_KEY"})
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        tls.TlsConfig.from_env(dict(env, WIKIMEM_INTERNAL_KEY=str(pki.pairs["reader"].key)))
    with pytest.raises(ConfigError, match="WIKIMEM_TLS_KEY is not set"):
        tls.TlsConfig.from_env({"WIKIMEM_TLS_CERT": str(pki.pairs["memory"].cert)})
    with pytest.raises(ConfigError, match="no such readable file"):
        tls.TlsConfig.from_env({"WIKIMEM_TLS_CERT": str(tmp_path / "nope.pem"), "WIKIMEM_TLS_KEY": str(tmp_path)})
    config = tls.TlsConfig.from_env(env)
    assert config.mutual and tls.TlsConfig.from_env({}) == tls.TlsConfig()


class _EmptyRag(rag_pb2_grpc.RagServicer):
    def ListDocuments(
        self, request: rag_pb2.ListDocumentsRequest, context: grpc.ServicerContext
    ) -> rag_pb2.ListDocumentsResponse:
        return rag_pb2.ListDocumentsResponse()


def test_cli_tls_options(
    public_cert: tuple[tls.KeyPair, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wikimem.cli import main

    def register(server: grpc.Server) -> list[str]:
        rag_pb2_grpc.add_RagServicer_to_server(_EmptyRag(), server)  # type: ignore[abstract]
        return ["wikimem.v1.Rag"]

    pair, ca = public_cert
    credentials = tls.server_credentials("orchestrator", tls.TlsConfig(public=pair))
    handle = wserver.start(register, "127.0.0.1:0", credentials=credentials)
    monkeypatch.delenv("WIKIMEM_CA_FILE", raising=False)
    monkeypatch.delenv("WIKIMEM_TLS", raising=False)
    try:
        assert main(["docs", "--addr", handle.address, "--ca-file", str(ca)]) == 0
        assert "no documents" in capsys.readouterr().out
        assert main(["docs", "--addr", handle.address, "--timeout", "3"]) != 0  # plaintext to a TLS port
        capsys.readouterr()
        assert main(["docs", "--addr", handle.address, "--tls", "--timeout", "3"]) != 0  # system CAs: not trusted
        capsys.readouterr()
        monkeypatch.setenv("WIKIMEM_CA_FILE", str(ca))
        assert main(["docs", "--addr", handle.address]) == 0
    finally:
        handle.stop(grace=0)
