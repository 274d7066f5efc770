"""gRPC clients for the embedder, memory, reranker and reader, with peer errors mapped to domain errors.

A peer that is down becomes UNAVAILABLE, one that does not answer within the deadline (the caller's, passed on,
or the configured peer timeout) DEADLINE_EXCEEDED, each with a message naming the peer and its address; an
overloaded peer's RESOURCE_EXHAUSTED keeps its retry hint (trailing `retry-after-ms`); the codes a caller can act on
(INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ABORTED, RESOURCE_EXHAUSTED, PERMISSION_DENIED) pass through
with the peer's message. Channels reconnect quickly (100 ms to 2 s backoff), so a
restarted peer is used again within about two seconds. With WIKIMEM_INTERNAL_* set, the channels speak mutual TLS
(wikimem_common.tls).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc

from wikimem_common import errors
from wikimem_common import server as wserver
from wikimem_common.server import GRPC_OPTIONS
from wikimem_common.tls import TlsConfig
from wikimem_contract import metadata
from wikimem_contract.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    reader_pb2,
    reader_pb2_grpc,
    reranker_pb2,
    reranker_pb2_grpc,
)

from .config import OrchestratorConfig

T = TypeVar("T")

CHANNEL_OPTIONS = [
    *GRPC_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

_PASS_THROUGH: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}

#: How long the embedder's Info (its model id: part of the embedding cache key) is trusted before asking again.
MODEL_ID_TTL_S = 60.0


def retry_after(exc: grpc.RpcError) -> float | None:
    """The peer's retry hint (trailing `retry-after-ms`) of a RESOURCE_EXHAUSTED answer, in seconds."""
    if not isinstance(exc, grpc.Call):
        return None
    for key, value in exc.trailing_metadata() or ():
        if key == metadata.RETRY_AFTER_MS:
            try:
                return max(0.0, float(value) / 1000.0)
            except (TypeError, ValueError):
                return None
    return None


class Peer:
    """One peer service: a channel, its name and address, and error mapping for calls through it."""

    def __init__(self, name: str, address: str, tls_config: TlsConfig | None = None) -> None:
        self.name = name
        self.address = address
        # mutual TLS when WIKIMEM_INTERNAL_* are set (the peer refuses a caller without a certificate it trusts)
        self.channel = wserver.channel(address, options=CHANNEL_OPTIONS, tls_config=tls_config)

    def error(self, exc: grpc.RpcError, timeout: float) -> errors.ServiceError:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # overloaded: its retry hint goes on to our caller
            return errors.ResourceExhausted(details, retry_after(exc))
        passed = _PASS_THROUGH.get(code)
        if passed is not None:
            return passed(details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            # the caller's deadline (passed on to every peer call) or this call's own limit ran out: the peer is
            # too slow or too busy; DEADLINE_EXCEEDED, not UNAVAILABLE, so that a caller can tell the two apart
            return errors.DeadlineExceeded(
                f"{self.name} service at {self.address} did not answer within {timeout:.2f}s: {details}"
            )
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return errors.Unavailable(f"{self.name} service at {self.address} is unavailable: {details}")
        return errors.ServiceError(f"{self.name} service at {self.address} failed ({code.name}): {details}")

    def call(self, fn: Callable[..., T], request: object, timeout: float) -> T:
        try:
            return fn(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise self.error(exc, timeout) from None

    def stream(self, fn: Callable[..., Iterator[T]], request: object, timeout: float) -> Iterator[T]:
        try:
            yield from fn(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise self.error(exc, timeout) from None

    def close(self) -> None:
        self.channel.close()


class GrpcBackends:
    """The orchestrator's view of its peers (implements pipeline.Backends and documents.MemoryBackend)."""

    def __init__(self, config: OrchestratorConfig, tls_config: TlsConfig | None = None) -> None:
        tls = tls_config if tls_config is not None else TlsConfig.from_env()
        self.embedder = Peer("embedder", config.embedder_addr, tls)
        self.memory = Peer("memory", config.memory_addr, tls)
        self.reranker = Peer("reranker", config.reranker_addr, tls)
        self.reader = Peer("reader", config.reader_addr, tls)
        self._embedder = embedder_pb2_grpc.EmbedderStub(self.embedder.channel)
        self._memory = memory_pb2_grpc.MemoryStub(self.memory.channel)
        self._reranker = reranker_pb2_grpc.RerankerStub(self.reranker.channel)
        self._reader = reader_pb2_grpc.ReaderStub(self.reader.channel)
        self._info_lock = threading.Lock()
        self._info: tuple[embedder_pb2.InfoResponse, float] | None = None

    # embedder
    def embedder_info(self, timeout: float) -> embedder_pb2.InfoResponse:
        with self._info_lock:
            if self._info is not None and time.monotonic() - self._info[1] < MODEL_ID_TTL_S:
                return self._info[0]
        info = self.embedder.call(self._embedder.Info, embedder_pb2.InfoRequest(), timeout)
        with self._info_lock:
            self._info = (info, time.monotonic())
        return info

    def embed(self, text: str, timeout: float) -> embedder_pb2.EmbedResponse:
        return self.embedder.call(self._embedder.Embed, embedder_pb2.EmbedRequest(texts=[text]), timeout)

    def embed_texts(self, texts: Sequence[str], timeout: float) -> common_pb2.Vectors:
        response = self.embedder.call(self._embedder.Embed, embedder_pb2.EmbedRequest(texts=list(texts)), timeout)
        return response.vectors

    # memory
    def search(self, request: memory_pb2.SearchRequest, timeout: float) -> memory_pb2.SearchResponse:
        return self.memory.call(self._memory.Search, request, timeout)

    def generation(self, timeout: float) -> int:
        return int(self.memory.call(self._memory.Stats, memory_pb2.StatsRequest(), timeout).generation)

    def upsert(self, request: memory_pb2.UpsertRequest, timeout: float) -> memory_pb2.UpsertResponse:
        return self.memory.call(self._memory.Upsert, request, timeout)

    def delete(self, request: memory_pb2.DeleteRequest, timeout: float) -> memory_pb2.DeleteResponse:
        return self.memory.call(self._memory.Delete, request, timeout)

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse:
        return self.memory.call(self._memory.Get, request, timeout)

    def list(self, request: memory_pb2.ListRequest, timeout: float) -> memory_pb2.ListResponse:
        return self.memory.call(self._memory.List, request, timeout)

    # reranker, reader
    def rerank(self, request: reranker_pb2.RerankRequest, timeout: float) -> reranker_pb2.RerankResponse:
        return self.reranker.call(self._reranker.Rerank, request, timeout)

    def read(self, request: reader_pb2.ReadRequest, timeout: float) -> reader_pb2.ReadResponse:
        return self.reader.call(self._reader.Read, request, timeout)

    def read_stream(
        self, request: reader_pb2.ReadStreamRequest, timeout: float
    ) -> Iterator[reader_pb2.ReadStreamResponse]:
        return self.reader.stream(self._reader.ReadStream, request, timeout)

    def close(self) -> None:
        for peer in (self.embedder, self.memory, self.reranker, self.reader):
            peer.close()
