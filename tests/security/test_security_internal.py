"""The "direct internal calls" rows of the matrix: a real memory service behind mutual TLS (wikimem_common.tls, a
dev PKI generated here) holding a restricted page. Without a certificate from the internal CA — plaintext, TLS
without a client certificate, a certificate from another CA — every Memory method is refused in the handshake
(UNAVAILABLE) and nothing is read, deleted or counted; with one, the call goes through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from security_stack import Stack, code_of, environment

from wikimem_common import tls
from wikimem_common.server import ServerHandle, start
from wikimem_contract.v1 import common_pb2, memory_pb2, memory_pb2_grpc

SECRET = "hr/internal.md"


@pytest.fixture(scope="module")
def internal_memory(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerHandle, tls.DevPki]]:
    from wikimem_memory.server import build

    folder = tmp_path_factory.mktemp("internal-memory")
    pki = tls.generate_dev_pki(folder / "pki")
    env = {"WIKIMEM_DATA": str(folder / "data"), "WIKIMEM_MEMORY_BACKEND": "edge", "QDRANT_URL": "", "REDIS_URL": "",
           "WIKIMEM_EMBEDDER_ADDR": stack.system.handles["embedder"].address}
    with environment(env):
        register, close = build()
    handle = start(register, "127.0.0.1:0", credentials=tls.server_credentials("memory", pki.config("memory")))
    handle.on_stop.append(close)
    try:
        yield handle, pki
    finally:
        handle.stop(grace=0)


def stub_for(
    address: str, credentials: grpc.ChannelCredentials | None
) -> tuple[grpc.Channel, memory_pb2_grpc.MemoryStub]:
    channel = grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
    return channel, memory_pb2_grpc.MemoryStub(channel)


def callers(pki: tls.DevPki, other: tls.DevPki) -> dict[str, grpc.ChannelCredentials | None]:
    trusted = tls.channel_credentials(pki.config("orchestrator"))
    return {
        "plaintext": None,
        "tls-without-client-cert": grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes()),
        "cert-from-another-ca": grpc.ssl_channel_credentials(
            root_certificates=pki.ca.read_bytes(),
            private_key=other.pairs["orchestrator"].key.read_bytes(),
            certificate_chain=other.pairs["orchestrator"].cert.read_bytes(),
        ),
        "internal-cert": trusted,
    }


CALLS: dict[str, Callable[[memory_pb2_grpc.MemoryStub], object]] = {
    "Get": lambda m: m.Get(memory_pb2.GetRequest(doc_id=SECRET, groups=["hr"], include_text=True), timeout=30),
    "GetChunks": lambda m: m.GetChunks(memory_pb2.GetChunksRequest(doc_id=SECRET, groups=["hr"]), timeout=30),
    "List": lambda m: m.List(memory_pb2.ListRequest(filter=common_pb2.Filter(groups=["hr"])), timeout=30),
    "Stats": lambda m: m.Stats(memory_pb2.StatsRequest(), timeout=30),
    "Delete": lambda m: m.Delete(memory_pb2.DeleteRequest(doc_id=SECRET, if_revision=999), timeout=30),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("who", ["plaintext", "tls-without-client-cert", "cert-from-another-ca", "internal-cert"])
def test_direct_internal_calls(
    internal_memory: tuple[ServerHandle, tls.DevPki], tmp_path: Path, who: str, call: str
) -> None:
    handle, pki = internal_memory
    other = tls.generate_dev_pki(tmp_path / "other-pki", names=("orchestrator",))
    trusted_channel, trusted = stub_for(handle.address, tls.channel_credentials(pki.config("orchestrator")))
    with trusted_channel:
        trusted.Upsert(memory_pb2.UpsertRequest(doc_id=SECRET, text="Internal secret INTERNAL-CANARY-3.",
                                                acl=["hr"]), timeout=60)
        channel, memory = stub_for(handle.address, callers(pki, other)[who])
        with channel:
            code, details = code_of(lambda: CALLS[call](memory))
        if who == "internal-cert":
            # Delete with a wrong if_revision: the call got through and was refused on its merits
            assert code == (grpc.StatusCode.ABORTED if call == "Delete" else grpc.StatusCode.OK), (code, details)
        else:
            assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
            assert "INTERNAL-CANARY" not in details
        still = trusted.Get(memory_pb2.GetRequest(doc_id=SECRET, groups=["hr"], include_text=True), timeout=30)
        assert "INTERNAL-CANARY-3" in still.text
