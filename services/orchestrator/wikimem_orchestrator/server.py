"""Wiring: config -> peers, cache, pipeline, documents -> Rag servicer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

from .cache import CacheStore, GenerationTracker, LocalStore, QueryCache, RedisStore
from .config import OrchestratorConfig
from .documents import Documents
from .peers import GrpcBackends
from .pipeline import Pipeline
from .qa_memory import LocalQAStore, QAMemory, QAMemorySettings, RedisQAStore
from .servicer import RagServicer


def make_store(config: OrchestratorConfig) -> CacheStore | None:
    if not config.cache:
        return None
    if config.redis_url:
        return RedisStore(config.redis_url, config.cache_prefix, config.redis_timeout_s, config.redis_retry_s)
    return LocalStore(config.local_cache_entries)


def make_qa_memory(config: OrchestratorConfig, store: CacheStore | None) -> QAMemory | None:
    """The QA memory on the cache's store (Redis or in-process); None when it or the cache is off."""
    if not config.qa_memory or store is None:
        return None
    settings = QAMemorySettings(
        threshold=config.qa_memory_threshold,
        max_entries=config.qa_memory_entries,
        ttl_s=config.qa_memory_ttl_s,
        check=config.qa_memory_check,
        guard=config.qa_memory_guard,
    )
    qa_store = RedisQAStore(store) if isinstance(store, RedisStore) else LocalQAStore()
    return QAMemory(qa_store, settings, revisions=store.get_revisions)


def build(
    config: OrchestratorConfig | None = None,
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    cfg = config or OrchestratorConfig.from_env()
    cfg.validate()
    backends = GrpcBackends(cfg)
    store = make_store(cfg)
    cache = QueryCache(store, cfg.answer_ttl_s, cfg.embedding_ttl_s)
    tracker = GenerationTracker(lambda: backends.generation(cfg.peer_timeout_s), cfg.generation_max_age_s)
    pipeline = Pipeline(cfg, backends, cache, tracker, make_qa_memory(cfg, store))
    servicer = RagServicer(pipeline, Documents(cfg, backends, cache, tracker))

    def register(server: grpc.Server) -> list[str]:
        rag_pb2_grpc.add_RagServicer_to_server(servicer, server)
        return [rag_pb2.DESCRIPTOR.services_by_name["Rag"].full_name]

    def close() -> None:
        backends.close()
        cache.close()

    return register, close
