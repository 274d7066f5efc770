"""Memory settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_int, env_str
from wikimem_common.redis_target import RedisTarget
from wikimem_common.server import peer_address

from .fusion import FUSIONS

BACKENDS = ("edge", "qdrant")
COORDINATIONS = ("local", "redis")

#: How a search ranks chunks: embeddings, BM25 over the chunk text, or both fused by reciprocal rank.
RETRIEVAL_MODES = ("dense", "bm25", "hybrid")


@dataclass(frozen=True)
class MemoryConfig:
    #: The memory's own directory: `$WIKIMEM_DATA/memory` (Qdrant Edge shard + sqlite registry).
    data_dir: Path
    backend: str = "edge"
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    #: Qdrant collection names: `<prefix>_chunks` and `<prefix>_documents`.
    qdrant_prefix: str = "wikimem"
    embedder_addr: str = "127.0.0.1:50052"
    embed_timeout_s: float = 120.0
    #: Texts per Embed call.
    embed_batch: int = 128
    #: Embedding size (all-MiniLM-L6-v2: 384); vectors of another size are rejected.
    dim: int = 384
    max_doc_bytes: int = 5 * 1024 * 1024
    max_doc_id_chars: int = 512
    max_top_k: int = 1000
    default_top_k: int = 10
    default_page_size: int = 100
    max_page_size: int = 1000
    chunk_target_words: int = 200
    chunk_max_words: int = 250
    chunk_overlap_words: int = 40
    #: Background HNSW build (edge): check every interval, run once this many points changed and writes paused.
    optimize_interval_s: float = 30.0
    optimize_min_changes: int = 1000
    #: Mode of searches that do not name one (the orchestrator names one on every Ask).
    retrieval_mode: str = "hybrid"
    #: How hybrid fuses the dense and BM25 lists: "convex" (min-max normalised scores, weighted) or "rrf".
    hybrid_fusion: str = "convex"
    #: Convex fusion: weight of the dense score (BM25 gets 1 - it); chosen on the wiki-qa dev split (fusion.py).
    hybrid_dense_weight: float = 0.5
    #: Reciprocal-rank fusion: score = sum over the dense and BM25 lists of 1 / (rrf_k + rank).
    rrf_k: int = 60
    #: Hybrid: candidates taken from each list before fusing (at least top_k).
    hybrid_candidates: int = 100
    #: Write coordination (coordination.py): "local" (one memory process per store; the Edge default) or "redis"
    #: (several replicas on one Qdrant store: leases, revisions and compare-and-set commits through Redis).
    coordination: str = "local"
    #: REDIS_URL, or WIKIMEM_REDIS_SENTINELS + WIKIMEM_REDIS_MASTER (+ WIKIMEM_REDIS_PASSWORD).
    redis: RedisTarget | None = None
    lease_ms: int = 15_000
    #: A new Qdrant server collection's layout (Helm: distributed Qdrant): shards, copies of each shard, and how
    #: many copies must acknowledge a write. Ignored by the embedded Edge store and by existing collections.
    qdrant_shards: int = 1
    qdrant_replication: int = 1
    qdrant_write_consistency: int = 1

    @classmethod
    def from_env(cls) -> MemoryConfig:
        backend = env_str("WIKIMEM_MEMORY_BACKEND", "edge").strip().lower()
        if backend not in BACKENDS:
            raise ConfigError(f"WIKIMEM_MEMORY_BACKEND={backend!r} must be one of {', '.join(BACKENDS)}")
        qdrant_url = os.environ.get("QDRANT_URL") or None
        if backend == "qdrant" and not qdrant_url:
            raise ConfigError("WIKIMEM_MEMORY_BACKEND=qdrant needs QDRANT_URL (http(s)://host:6333, or :memory:)")
        config = cls(
            data_dir=Path(env_str("WIKIMEM_DATA", "./.wikimem")) / "memory",
            backend=backend,
            qdrant_url=qdrant_url,
            qdrant_api_key=os.environ.get("QDRANT_API_KEY") or None,
            qdrant_prefix=env_str("WIKIMEM_QDRANT_PREFIX", "wikimem"),
            embedder_addr=peer_address("embedder"),
            embed_timeout_s=env_float("WIKIMEM_EMBED_TIMEOUT_S", 120.0),
            dim=env_int("WIKIMEM_MEMORY_DIM", 384),
            max_doc_bytes=env_int("WIKIMEM_MAX_DOC_BYTES", 5 * 1024 * 1024),
            max_top_k=env_int("WIKIMEM_MAX_TOP_K", 1000),
            chunk_target_words=env_int("WIKIMEM_CHUNK_WORDS", 200),
            chunk_max_words=env_int("WIKIMEM_CHUNK_MAX_WORDS", 250),
            chunk_overlap_words=env_int("WIKIMEM_CHUNK_OVERLAP_WORDS", 40),
            optimize_interval_s=env_float("WIKIMEM_OPTIMIZE_INTERVAL_S", 30.0),
            optimize_min_changes=env_int("WIKIMEM_OPTIMIZE_MIN_CHANGES", 1000),
            retrieval_mode=env_str("WIKIMEM_RETRIEVAL_MODE", "hybrid").strip().lower(),
            hybrid_fusion=env_str("WIKIMEM_HYBRID_FUSION", "convex").strip().lower(),
            hybrid_dense_weight=env_float("WIKIMEM_HYBRID_DENSE_WEIGHT", cls.hybrid_dense_weight),
            rrf_k=env_int("WIKIMEM_RRF_K", 60),
            hybrid_candidates=env_int("WIKIMEM_HYBRID_CANDIDATES", 100),
            coordination=env_str("WIKIMEM_MEMORY_COORDINATION", "local").strip().lower(),
            redis=RedisTarget.from_env(),
            lease_ms=env_int("WIKIMEM_MEMORY_LEASE_MS", 15_000),
            qdrant_shards=env_int("WIKIMEM_QDRANT_SHARDS", 1),
            qdrant_replication=env_int("WIKIMEM_QDRANT_REPLICATION", 1),
            qdrant_write_consistency=env_int("WIKIMEM_QDRANT_WRITE_CONSISTENCY", 1),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if self.coordination not in COORDINATIONS:
            raise ConfigError(
                f"WIKIMEM_MEMORY_COORDINATION={self.coordination!r} must be one of {', '.join(COORDINATIONS)}"
            )
        if self.coordination == "redis":
            if self.backend != "qdrant":
                raise ConfigError(
                    "WIKIMEM_MEMORY_COORDINATION=redis is for several replicas on one Qdrant server "
                    "(WIKIMEM_MEMORY_BACKEND=qdrant); the embedded Edge store has exactly one writer process"
                )
            if self.redis is None:
                raise ConfigError(
                    "WIKIMEM_MEMORY_COORDINATION=redis needs REDIS_URL (redis://host:6379/0) or "
                    "WIKIMEM_REDIS_SENTINELS (host:port,...) with WIKIMEM_REDIS_MASTER"
                )
        if min(self.qdrant_shards, self.qdrant_replication, self.qdrant_write_consistency) < 1:
            raise ConfigError(
                "WIKIMEM_QDRANT_SHARDS, WIKIMEM_QDRANT_REPLICATION and WIKIMEM_QDRANT_WRITE_CONSISTENCY must be >= 1"
            )
        if self.qdrant_write_consistency > self.qdrant_replication:
            raise ConfigError(
                f"WIKIMEM_QDRANT_WRITE_CONSISTENCY={self.qdrant_write_consistency} cannot exceed "
                f"WIKIMEM_QDRANT_REPLICATION={self.qdrant_replication} (copies that can acknowledge a write)"
            )
        if self.lease_ms < 1000:
            raise ConfigError(f"WIKIMEM_MEMORY_LEASE_MS={self.lease_ms} must be at least 1000")
        if self.dim < 1:
            raise ConfigError(f"WIKIMEM_MEMORY_DIM={self.dim} must be positive")
        if self.max_doc_bytes < 1:
            raise ConfigError(f"WIKIMEM_MAX_DOC_BYTES={self.max_doc_bytes} must be positive")
        if not 1 <= self.max_top_k <= 10_000:
            raise ConfigError(f"WIKIMEM_MAX_TOP_K={self.max_top_k} must be in 1..10000")
        if not 0 < self.chunk_target_words <= self.chunk_max_words:
            raise ConfigError(
                f"WIKIMEM_CHUNK_WORDS={self.chunk_target_words} must be positive and at most "
                f"WIKIMEM_CHUNK_MAX_WORDS={self.chunk_max_words}"
            )
        if self.retrieval_mode not in RETRIEVAL_MODES:
            raise ConfigError(
                f"WIKIMEM_RETRIEVAL_MODE={self.retrieval_mode!r} must be one of {', '.join(RETRIEVAL_MODES)}"
            )
        if self.hybrid_fusion not in FUSIONS:
            raise ConfigError(f"WIKIMEM_HYBRID_FUSION={self.hybrid_fusion!r} must be one of {', '.join(FUSIONS)}")
        if not 0.0 <= self.hybrid_dense_weight <= 1.0:
            raise ConfigError(f"WIKIMEM_HYBRID_DENSE_WEIGHT={self.hybrid_dense_weight} must be in [0, 1]")
        if self.rrf_k < 1:
            raise ConfigError(f"WIKIMEM_RRF_K={self.rrf_k} must be positive")
        if not 1 <= self.hybrid_candidates <= 10_000:
            raise ConfigError(f"WIKIMEM_HYBRID_CANDIDATES={self.hybrid_candidates} must be in 1..10000")
        if not 0 <= self.chunk_overlap_words < self.chunk_target_words:
            raise ConfigError(f"WIKIMEM_CHUNK_OVERLAP_WORDS={self.chunk_overlap_words} must be below the chunk size")
