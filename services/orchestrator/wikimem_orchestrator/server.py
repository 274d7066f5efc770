"""Wiring: config -> peers, cache, pipeline, sentence warming, documents, authentication, audit -> Rag servicer."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import grpc

from wikimem_common.config import ConfigError
from wikimem_common.redis_target import RedisTarget
from wikimem_common.server import listen_address
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

from .audit import AuditLog
from .auth import Authenticator
from .auth.settings import loopback
from .cache import CacheStore, GenerationTracker, LocalStore, QueryCache, RedisStore
from .config import OrchestratorConfig
from .documents import Documents
from .peers import GrpcBackends
from .pipeline import Pipeline
from .qa_memory import LocalQAStore, QAMemory, QAMemorySettings, RedisQAStore
from .sentence_warming import Foreground, SentenceWarmer, warm_peers
from .sentences import VectorCache
from .servicer import RagServicer

log = logging.getLogger("wikimem.orchestrator")


def make_store(config: OrchestratorConfig) -> CacheStore | None:
    if not config.cache:
        return None
    target = config.redis or (RedisTarget(url=config.redis_url) if config.redis_url else None)
    if target is not None:
        return RedisStore(target, config.cache_prefix, config.redis_timeout_s, config.redis_retry_s)
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


def make_sentence_vectors(config: OrchestratorConfig, store: CacheStore | None) -> VectorCache:
    """The sentence vector cache: in process, and in Redis too when the cache lives there."""
    shared = store if isinstance(store, RedisStore) and config.sentence_vectors_ttl_s > 0 else None
    return VectorCache(config.sentence_vector_chunks, shared, config.sentence_vectors_ttl_s)


def make_sentence_warmer(
    config: OrchestratorConfig, backends: GrpcBackends, pipeline: Pipeline, foreground: Foreground
) -> SentenceWarmer | None:
    """Sentence vectors computed at writes; None when Asks do not use them (sentence first off) or the queue is 0."""
    policy = pipeline.answer_policy
    peers = warm_peers(backends)
    if config.sentence_warm_queue <= 0 or not (policy.enabled and policy.sentences) or peers is None:
        return None
    return SentenceWarmer(
        peers, pipeline.sentence_vectors, foreground, config.sentence_warm_queue, config.peer_timeout_s,
        info_model_fallback=pipeline.cache.enabled,
    )


def make_authenticator(config: OrchestratorConfig, listen: str) -> Authenticator:
    """The authenticator (keys and key files read now: a bad one stops the start); warns when nothing is
    authenticated on an address other hosts can reach."""
    try:
        authenticator = Authenticator(config.auth)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"authentication cannot start: {exc}") from exc
    if not config.auth.enabled and not loopback(listen):
        log.warning(
            "authentication is OFF on a non-loopback address: any caller can read every group's documents by "
            "sending x-wikimem-groups, and write; set WIKIMEM_AUTH (docs/security.md)",
            extra={"address": listen},
        )
    elif config.auth.enabled and not loopback(listen) and not os.environ.get("WIKIMEM_TLS_CERT", "").strip():
        log.warning(
            "authentication is on but the public port is plaintext on a non-loopback address: bearer tokens and API "
            "keys travel in the clear; set WIKIMEM_TLS_CERT/WIKIMEM_TLS_KEY, or terminate TLS in front of it "
            "(ingress, service mesh) and keep this port unreachable from elsewhere (docs/security.md)",
            extra={"address": listen},
        )
    return authenticator


def build(
    config: OrchestratorConfig | None = None, listen: str | None = None
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    """`listen`: the address the server will bind (for the warning above; default: from the environment)."""
    cfg = config or OrchestratorConfig.from_env()
    cfg.validate()
    authenticator = make_authenticator(cfg, listen or listen_address("orchestrator"))
    audit = AuditLog(cfg.auth.audit_log)
    backends = GrpcBackends(cfg)
    store = make_store(cfg)
    cache = QueryCache(store, cfg.answer_ttl_s, cfg.embedding_ttl_s)
    tracker = GenerationTracker(lambda: backends.generation(cfg.peer_timeout_s), cfg.generation_max_age_s)
    pipeline = Pipeline(
        cfg, backends, cache, tracker, make_qa_memory(cfg, store), sentence_vectors=make_sentence_vectors(cfg, store)
    )
    foreground = Foreground()
    warmer = make_sentence_warmer(cfg, backends, pipeline, foreground)
    documents = Documents(cfg, backends, cache, tracker, warmer=warmer)
    servicer = RagServicer(pipeline, documents, authenticator, audit, foreground)

    def register(server: grpc.Server) -> list[str]:
        rag_pb2_grpc.add_RagServicer_to_server(servicer, server)
        return [rag_pb2.DESCRIPTOR.services_by_name["Rag"].full_name]

    def close() -> None:
        if warmer is not None:
            warmer.close()
        backends.close()
        cache.close()
        audit.close()

    return register, close
