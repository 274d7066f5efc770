"""Wiring of the memory service: `build(config) -> (register, close)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from wikimem_common import metrics
from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc

from .config import MemoryConfig
from .coordination import Coordinator, LocalCoordinator, RedisCoordinator, RedisSettings
from .embedding import EmbedderClient
from .service import MemoryService
from .servicer import MemoryServicer
from .store import open_backend

SERVICE_NAME = memory_pb2.DESCRIPTOR.services_by_name["Memory"].full_name


def registrar(core: MemoryService) -> Callable[[grpc.Server], Sequence[str]]:
    def register(server: grpc.Server) -> Sequence[str]:
        memory_pb2_grpc.add_MemoryServicer_to_server(MemoryServicer(core), server)
        return [SERVICE_NAME]

    return register


def open_coordinator(config: MemoryConfig) -> Coordinator:
    if config.coordination == "redis" and config.redis is not None:
        prefix = f"wikimem:memory:{config.qdrant_prefix}"
        settings = RedisSettings(config.redis, prefix=prefix, lease_ms=config.lease_ms)
        return RedisCoordinator(settings)
    return LocalCoordinator()


def open_service(config: MemoryConfig, optimize_in_background: bool = True) -> MemoryService:
    backend = open_backend(config, optimize_in_background=optimize_in_background)
    embedder = EmbedderClient(config.embedder_addr, config.embed_batch, config.embed_timeout_s)
    core = MemoryService(config, backend, embedder, open_coordinator(config))
    if config.backend == "edge":
        core.collect_orphans()
    return core


def build(
    config: MemoryConfig | None = None,
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    core = open_service(config or MemoryConfig.from_env())
    gauges = size_gauges(core).register()

    def close() -> None:
        gauges.unregister()
        core.close()

    return registrar(core), close


def size_gauges(core: MemoryService) -> metrics.Gauges:
    """The memory's size, read from its stats on each metrics scrape."""

    def read() -> dict[str, object]:
        stats = core.stats()
        return {
            "wikimem_memory_documents": stats["documents_per_collection"],
            "wikimem_memory_chunks": stats["chunks"],
            "wikimem_memory_generation": stats["generation"],
        }

    docs = {
        "wikimem_memory_documents": "Documents stored, by collection",
        "wikimem_memory_chunks": "Chunks (points) stored, all collections",
        "wikimem_memory_generation": "The memory's write generation (increases with every write)",
    }
    return metrics.Gauges(read, docs, label="collection")
