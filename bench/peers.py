"""`running_system` plus stubs of the services inside it: the quality suites call Rag (ingest, Ask) and also the
Embedder, Memory and Reranker directly (a search in each retrieval mode, reranking a candidate list), so every
figure comes from the running services. Their ports are chosen here and handed to the stack through the
`WIKIMEM_<NAME>_ADDR` variables `wikimem serve` honours."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import numpy as np

from bench.common import Context, progress, running_system
from wikimem_contract.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    rag_pb2,
    rag_pb2_grpc,
    reranker_pb2,
    reranker_pb2_grpc,
)

T = TypeVar("T")
R = TypeVar("R")

MODES: dict[str, common_pb2.RetrievalMode.ValueType] = {
    "bm25": common_pb2.RETRIEVAL_MODE_BM25,
    "dense": common_pb2.RETRIEVAL_MODE_DENSE,
    "hybrid": common_pb2.RETRIEVAL_MODE_HYBRID,
}
#: gRPC messages of a few MB (a search returning hundreds of chunks).
_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", 64 * 1024 * 1024)]


def free_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Peers:
    """Stubs of one running system (orchestrator = `rag`)."""

    address: str
    addresses: dict[str, str]
    _channels: list[grpc.Channel] = field(default_factory=list)

    def _channel(self, address: str) -> grpc.Channel:
        channel = grpc.insecure_channel(address, options=_OPTIONS)
        self._channels.append(channel)
        return channel

    def __post_init__(self) -> None:
        self.rag = rag_pb2_grpc.RagStub(self._channel(self.address))
        self.memory = memory_pb2_grpc.MemoryStub(self._channel(self.addresses["memory"]))
        self.embedder = embedder_pb2_grpc.EmbedderStub(self._channel(self.addresses["embedder"]))
        self.reranker = reranker_pb2_grpc.RerankerStub(self._channel(self.addresses["reranker"]))

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def embed(self, texts: Sequence[str], batch: int = 32) -> list[common_pb2.Vectors]:
        """One [1, dim] Vectors message per text (the form Memory.Search takes), embedded in batches."""
        out: list[common_pb2.Vectors] = []
        for i in range(0, len(texts), batch):
            got = self.embedder.Embed(embedder_pb2.EmbedRequest(texts=list(texts[i : i + batch])), timeout=300)
            matrix = np.frombuffer(got.vectors.data, dtype="<f4").reshape(tuple(got.vectors.shape))
            out += [common_pb2.Vectors(data=row.tobytes(), shape=[1, matrix.shape[1]]) for row in matrix]
        return out

    def search(
        self, mode: str, text: str, vector: common_pb2.Vectors | None, top_k: int, collection: str = ""
    ) -> memory_pb2.SearchResponse:
        request = memory_pb2.SearchRequest(
            query=vector if mode != "bm25" else None,
            query_text=text,
            mode=MODES[mode],
            top_k=top_k,
            filter=common_pb2.Filter(collection=collection),
        )
        return self.memory.Search(request, timeout=120)

    def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        got = self.reranker.Rerank(reranker_pb2.RerankRequest(query=query, passages=list(passages)), timeout=600)
        return list(got.scores)

    def put(self, doc_id: str, text: str, title: str = "", collection: str = "") -> rag_pb2.PutDocumentResponse:
        request = rag_pb2.PutDocumentRequest(doc_id=doc_id, text=text, title=title, collection=collection)
        return self.rag.PutDocument(request, timeout=600)


@contextlib.contextmanager
def system_with_peers(ctx: Context, name: str, env: Mapping[str, str] | None = None) -> Iterator[Peers]:
    """A fresh `running_system` (five service processes) and stubs of its services."""
    addresses = {peer: free_address() for peer in ("embedder", "memory", "reranker")}
    full_env = {f"WIKIMEM_{peer.upper()}_ADDR": addr for peer, addr in addresses.items()}
    full_env.update(env or {})
    with running_system(ctx, name, env=full_env) as address:
        peers = Peers(address, addresses)
        try:
            yield peers
        finally:
            peers.close()


def parallel_map(fn: Callable[[T], R], items: Iterable[T], desc: str, total: int, workers: int = 4) -> list[R]:
    """`fn` over items on a few threads (the services batch concurrent requests), in order, with progress."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in progress(futures, desc, total=total)]
