"""Wiring of the memory service: `build(config) -> (register, close)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

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
    if config.coordination == "redis":
        settings = RedisSettings(
            url=config.redis_url,
            sentinels=config.redis_sentinels,
            master=config.redis_master,
            prefix=f"wikimem:memory:{config.qdrant_prefix}",
            lease_ms=config.lease_ms,
        )
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
    return registrar(core), core.close
