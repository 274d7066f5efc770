"""Orchestrator settings from the environment (see docs/architecture.md, 'Configuration')."""

from __future__ import annotations

from dataclasses import dataclass

from wikimem_common.config import ConfigError, env_bool, env_float, env_int, env_str
from wikimem_common.server import peer_address


@dataclass(frozen=True)
class OrchestratorConfig:
    embedder_addr: str
    memory_addr: str
    reranker_addr: str
    reader_addr: str
    #: Deadline of query-path peer calls (embed, search, read, stats, get, list).
    peer_timeout_s: float = 10.0
    #: Deadline of the reranker call; past it the answer degrades to vector order.
    rerank_timeout_s: float = 10.0
    #: Deadline of memory writes (a long document is chunked and embedded inside the call).
    write_timeout_s: float = 300.0
    retrieve_k: int = 20
    read_k: int = 5
    max_retrieve_k: int = 200
    max_question_chars: int = 2000
    #: Prefix reranked passages with "title > heading." so the cross-encoder sees where the chunk sits.
    rerank_context: bool = True
    #: Answer and embedding caches on/off (off: every Ask is computed).
    cache: bool = True
    redis_url: str | None = None
    cache_prefix: str = "wikimem:"
    answer_ttl_s: float = 3600.0
    embedding_ttl_s: float = 7 * 86400.0
    #: Entries of the in-process LRU (used when REDIS_URL is not set).
    local_cache_entries: int = 10_000
    redis_timeout_s: float = 0.25
    #: After a Redis error, skip Redis for this long before trying again (answers stay uncached meanwhile).
    redis_retry_s: float = 1.0
    #: 0: ask memory for its generation on every cached Ask (strict). >0: reuse the last generation for this
    #: long; only writes that go through this orchestrator (or the revision map) are then seen at once.
    generation_max_age_s: float = 0.0
    context_chars: int = 300
    max_context_chars: int = 20_000
    list_page_size: int = 100

    @classmethod
    def from_env(cls) -> OrchestratorConfig:
        peer_timeout = env_float("WIKIMEM_PEER_TIMEOUT_S", 10.0)
        redis_url = env_str("REDIS_URL", "") or None
        config = cls(
            embedder_addr=peer_address("embedder"),
            memory_addr=peer_address("memory"),
            reranker_addr=peer_address("reranker"),
            reader_addr=peer_address("reader"),
            peer_timeout_s=peer_timeout,
            rerank_timeout_s=env_float("WIKIMEM_RERANK_TIMEOUT_S", peer_timeout),
            write_timeout_s=env_float("WIKIMEM_WRITE_TIMEOUT_S", 300.0),
            retrieve_k=env_int("WIKIMEM_RETRIEVE_K", 20),
            read_k=env_int("WIKIMEM_READ_K", 5),
            max_retrieve_k=env_int("WIKIMEM_MAX_RETRIEVE_K", 200),
            max_question_chars=env_int("WIKIMEM_MAX_QUESTION_CHARS", 2000),
            rerank_context=env_bool("WIKIMEM_RERANK_CONTEXT", True),
            cache=env_bool("WIKIMEM_CACHE", True),
            redis_url=redis_url,
            cache_prefix=env_str("WIKIMEM_CACHE_PREFIX", "wikimem:"),
            answer_ttl_s=env_float("WIKIMEM_ANSWER_TTL_S", 3600.0),
            embedding_ttl_s=env_float("WIKIMEM_EMBEDDING_TTL_S", 7 * 86400.0),
            local_cache_entries=env_int("WIKIMEM_CACHE_ENTRIES", 10_000),
            redis_timeout_s=env_float("WIKIMEM_REDIS_TIMEOUT_S", 0.25),
            redis_retry_s=env_float("WIKIMEM_REDIS_RETRY_S", 1.0),
            generation_max_age_s=env_float("WIKIMEM_GENERATION_MAX_AGE_S", 0.0),
            context_chars=env_int("WIKIMEM_CONTEXT_CHARS", 300),
        )
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("peer_timeout_s", "rerank_timeout_s", "write_timeout_s", "redis_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("retrieve_k", "read_k", "max_retrieve_k", "max_question_chars", "local_cache_entries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.read_k > self.retrieve_k:
            raise ConfigError(f"WIKIMEM_READ_K ({self.read_k}) must not exceed WIKIMEM_RETRIEVE_K ({self.retrieve_k})")
        if self.retrieve_k > self.max_retrieve_k:
            raise ConfigError(
                f"WIKIMEM_RETRIEVE_K ({self.retrieve_k}) must not exceed WIKIMEM_MAX_RETRIEVE_K ({self.max_retrieve_k})"
            )
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL={self.redis_url!r} must start with redis://, rediss:// or unix://")
