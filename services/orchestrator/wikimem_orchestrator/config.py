"""Orchestrator settings from the environment (see docs/architecture.md, 'Configuration')."""

from __future__ import annotations

from dataclasses import dataclass, field

from wikimem_common.admission import parse_rate
from wikimem_common.config import ConfigError, env_bool, env_float, env_int, env_str
from wikimem_common.redis_target import RedisTarget
from wikimem_common.server import peer_address

from .auth.settings import AuthConfig
from .verify import VerifyConfig

#: Calibrated with the "same-words" guard on paraphrases, surface variants and 25k hard negatives: no false reuse
#: from 0.80 up; 0.90 keeps a margin (bench/qa_memory_calibration.py; figures in docs/architecture.md, "QA memory").
QA_MEMORY_THRESHOLD = 0.9
#: Upper bound of WIKIMEM_QA_MEMORY_ENTRIES: a lookup reads and scans every entry of its scope.
MAX_QA_MEMORY_ENTRIES = 4096


@dataclass(frozen=True)
class OrchestratorConfig:
    embedder_addr: str
    memory_addr: str
    reranker_addr: str
    reader_addr: str
    #: Deadline of query-path peer calls (embed, search, read, stats, get, list).
    peer_timeout_s: float = 10.0
    #: Deadline of the reranker call (and never past the caller's); past it, WIKIMEM_ON_RERANK_OVERLOAD applies.
    rerank_timeout_s: float = 10.0
    #: When the reranker is overloaded, too slow or down: "fail" (the Ask fails with the reranker's status:
    #: RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or UNAVAILABLE) or "degrade" (an answer from the vector order, marked
    #: `reranked=false` with a warning, not cached). Either way counted (wikimem_rerank_failures) and logged.
    on_rerank_overload: str = "fail"
    #: Generative reads (readers other than extractive) per caller: tokens per second (0: no limit) and burst.
    llm_rate_per_s: float = 10 / 60
    llm_burst: int = 3
    #: Deadline of memory writes (a long document is chunked and embedded inside the call).
    write_timeout_s: float = 300.0
    #: Retrieval mode of Asks that do not name one: "dense", "bm25" or "hybrid" (docs/architecture.md).
    retrieval_mode: str = "hybrid"
    retrieve_k: int = 20
    read_k: int = 5
    max_retrieve_k: int = 200
    #: Most passages one Ask may hand the reader: the reader's WIKIMEM_READER_MAX_PASSAGES (64).
    max_read_k: int = 64
    #: Most answer tokens an Ask may ask a generative reader for: the reader's limit (2048).
    max_answer_tokens: int = 2048
    #: Longest document id: memory's WIKIMEM_MAX_DOC_ID_CHARS (512).
    max_doc_id_chars: int = 512
    #: Largest ListDocuments page_size accepted (memory returns at most its WIKIMEM_MAX_PAGE_SIZE anyway).
    max_list_page_size: int = 1000
    max_question_chars: int = 2000
    #: Prefix reranked passages with "title > heading." so the cross-encoder sees where the chunk sits.
    rerank_context: bool = True
    #: Passages are ordered by reranker score + this x the question-chunk cosine (ranking.py; 0 = reranker alone).
    rerank_dense_weight: float = 30.0
    #: Answer and embedding caches on/off (off: every Ask is computed).
    cache: bool = True
    redis_url: str | None = None
    #: Sentinel mode (WIKIMEM_REDIS_SENTINELS + WIKIMEM_REDIS_MASTER + WIKIMEM_REDIS_PASSWORD), or REDIS_URL again.
    redis: RedisTarget | None = None
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
    #: QA memory: reuse the answer of an earlier question whose embedding is at least `qa_memory_threshold`
    #: similar, while its documents are unchanged (qa_memory.py). Needs the cache (WIKIMEM_CACHE=1).
    qa_memory: bool = True
    #: Cosine similarity at or above which a remembered question counts as a paraphrase (calibrated: see
    #: docs/architecture.md, "QA memory").
    qa_memory_threshold: float = QA_MEMORY_THRESHOLD
    #: Most recent questions remembered per scope (collection, groups, options); a lookup scans all of them.
    qa_memory_entries: int = 256
    qa_memory_ttl_s: float = 86400.0
    #: "retrieval": the remembered question still retrieves the same chunks; "cited": its cited documents are
    #: unchanged.
    qa_memory_check: str = "retrieval"
    #: "same-words": reuse only for the same content words in the same order (what the calibration needs for no
    #: false reuse); "none": cosine alone (reuses paraphrases, and some different questions: see the table).
    qa_memory_guard: str = "same-words"
    #: Deadline of reader calls: a generative reader on a CPU takes seconds to minutes.
    read_timeout_s: float = 300.0
    #: Generated answers: what happens to sentences no passage supports ("drop" or "flag"; verify.py).
    verify_unsupported: str = "drop"
    #: Support (0..1, lexical and embedding combined) a passage span needs to verify a sentence.
    verify_threshold: float = VerifyConfig.threshold
    #: Weight of lexical overlap against embedding similarity in that support.
    verify_lexical_weight: float = VerifyConfig.lexical_weight
    #: Use the embedder for semantic support (off: lexical overlap and key terms only).
    verify_embeddings: bool = True
    #: Chunks whose sentence vectors (sentence first answer decision, sentences.py) are kept in process, least
    #: recently used out first; about 15 KB each with the default embedder (0: none kept in process).
    sentence_vector_chunks: int = 4000
    #: With Redis: how long sentence vectors are kept there, shared by replicas and restarts (0: not kept there).
    sentence_vectors_ttl_s: float = 7 * 86400.0
    #: Documents written through this orchestrator that wait to have their sentence vectors computed in the
    #: background (sentence_warming.py); a write that finds the queue full is not warmed (0: no warming).
    sentence_warm_queue: int = 1000
    context_chars: int = 300
    max_context_chars: int = 20_000
    list_page_size: int = 100
    #: Authentication, authorisation and the audit log (auth/settings.py; off by default: local development).
    auth: AuthConfig = field(default_factory=AuthConfig)

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
            on_rerank_overload=env_str("WIKIMEM_ON_RERANK_OVERLOAD", "fail").strip().lower(),
            llm_rate_per_s=parse_rate(env_str("WIKIMEM_LLM_RATE", "10/min"), "WIKIMEM_LLM_RATE"),
            llm_burst=env_int("WIKIMEM_LLM_BURST", 3),
            write_timeout_s=env_float("WIKIMEM_WRITE_TIMEOUT_S", 300.0),
            retrieval_mode=env_str("WIKIMEM_RETRIEVAL_MODE", "hybrid").strip().lower(),
            retrieve_k=env_int("WIKIMEM_RETRIEVE_K", 20),
            read_k=env_int("WIKIMEM_READ_K", 5),
            max_retrieve_k=env_int("WIKIMEM_MAX_RETRIEVE_K", 200),
            max_read_k=env_int("WIKIMEM_MAX_READ_K", 64),
            max_answer_tokens=env_int("WIKIMEM_MAX_ANSWER_TOKENS", 2048),
            max_doc_id_chars=env_int("WIKIMEM_MAX_DOC_ID_CHARS", 512),
            max_question_chars=env_int("WIKIMEM_MAX_QUESTION_CHARS", 2000),
            rerank_context=env_bool("WIKIMEM_RERANK_CONTEXT", True),
            rerank_dense_weight=env_float("WIKIMEM_RERANK_DENSE_WEIGHT", cls.rerank_dense_weight),
            cache=env_bool("WIKIMEM_CACHE", True),
            redis_url=redis_url,
            redis=RedisTarget.from_env(),
            cache_prefix=env_str("WIKIMEM_CACHE_PREFIX", "wikimem:"),
            answer_ttl_s=env_float("WIKIMEM_ANSWER_TTL_S", 3600.0),
            embedding_ttl_s=env_float("WIKIMEM_EMBEDDING_TTL_S", 7 * 86400.0),
            local_cache_entries=env_int("WIKIMEM_CACHE_ENTRIES", 10_000),
            redis_timeout_s=env_float("WIKIMEM_REDIS_TIMEOUT_S", 0.25),
            redis_retry_s=env_float("WIKIMEM_REDIS_RETRY_S", 1.0),
            generation_max_age_s=env_float("WIKIMEM_GENERATION_MAX_AGE_S", 0.0),
            qa_memory=env_bool("WIKIMEM_QA_MEMORY", True),
            qa_memory_threshold=env_float("WIKIMEM_QA_MEMORY_THRESHOLD", QA_MEMORY_THRESHOLD),
            qa_memory_entries=env_int("WIKIMEM_QA_MEMORY_ENTRIES", 256),
            qa_memory_ttl_s=env_float("WIKIMEM_QA_MEMORY_TTL_S", 86400.0),
            qa_memory_check=env_str("WIKIMEM_QA_MEMORY_CHECK", "retrieval"),
            qa_memory_guard=env_str("WIKIMEM_QA_MEMORY_GUARD", "same-words"),
            sentence_vector_chunks=env_int("WIKIMEM_SENTENCE_VECTOR_CHUNKS", cls.sentence_vector_chunks),
            sentence_vectors_ttl_s=env_float("WIKIMEM_SENTENCE_VECTORS_TTL_S", cls.sentence_vectors_ttl_s),
            sentence_warm_queue=env_int("WIKIMEM_SENTENCE_WARM_QUEUE", cls.sentence_warm_queue),
            context_chars=env_int("WIKIMEM_CONTEXT_CHARS", 300),
            read_timeout_s=env_float("WIKIMEM_READ_TIMEOUT_S", 300.0),
            verify_unsupported=env_str("WIKIMEM_VERIFY_UNSUPPORTED", "drop"),
            verify_threshold=env_float("WIKIMEM_VERIFY_THRESHOLD", VerifyConfig.threshold),
            verify_lexical_weight=env_float("WIKIMEM_VERIFY_LEXICAL_WEIGHT", VerifyConfig.lexical_weight),
            verify_embeddings=env_bool("WIKIMEM_VERIFY_EMBEDDINGS", True),
            auth=AuthConfig.from_env(),
        )
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("peer_timeout_s", "rerank_timeout_s", "write_timeout_s", "redis_timeout_s", "read_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("retrieve_k", "read_k", "max_retrieve_k", "max_read_k", "max_answer_tokens", "max_doc_id_chars",
                     "max_list_page_size", "max_question_chars", "local_cache_entries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.read_k > self.retrieve_k:
            raise ConfigError(f"WIKIMEM_READ_K ({self.read_k}) must not exceed WIKIMEM_RETRIEVE_K ({self.retrieve_k})")
        if self.read_k > self.max_read_k:
            raise ConfigError(f"WIKIMEM_READ_K ({self.read_k}) must not exceed WIKIMEM_MAX_READ_K ({self.max_read_k})")
        if self.retrieve_k > self.max_retrieve_k:
            raise ConfigError(
                f"WIKIMEM_RETRIEVE_K ({self.retrieve_k}) must not exceed WIKIMEM_MAX_RETRIEVE_K ({self.max_retrieve_k})"
            )
        for name, env in (
            ("sentence_vector_chunks", "WIKIMEM_SENTENCE_VECTOR_CHUNKS"),
            ("sentence_vectors_ttl_s", "WIKIMEM_SENTENCE_VECTORS_TTL_S"),
            ("sentence_warm_queue", "WIKIMEM_SENTENCE_WARM_QUEUE"),
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{env} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.qa_memory_threshold <= 1.0:
            raise ConfigError(f"WIKIMEM_QA_MEMORY_THRESHOLD must be in (0, 1], got {self.qa_memory_threshold}")
        if not 1 <= self.qa_memory_entries <= MAX_QA_MEMORY_ENTRIES:
            raise ConfigError(
                f"WIKIMEM_QA_MEMORY_ENTRIES must be in [1, {MAX_QA_MEMORY_ENTRIES}] (each lookup scans them all), "
                f"got {self.qa_memory_entries}"
            )
        if self.qa_memory_ttl_s <= 0:
            raise ConfigError(f"WIKIMEM_QA_MEMORY_TTL_S must be > 0, got {self.qa_memory_ttl_s}")
        if self.qa_memory_check not in ("retrieval", "cited"):
            raise ConfigError(f"WIKIMEM_QA_MEMORY_CHECK must be 'retrieval' or 'cited', got {self.qa_memory_check!r}")
        if self.qa_memory_guard not in ("same-words", "none"):
            raise ConfigError(f"WIKIMEM_QA_MEMORY_GUARD must be 'same-words' or 'none', got {self.qa_memory_guard!r}")
        if self.verify_unsupported not in ("drop", "flag"):
            raise ConfigError(f"WIKIMEM_VERIFY_UNSUPPORTED must be 'drop' or 'flag', got {self.verify_unsupported!r}")
        for name in ("verify_threshold", "verify_lexical_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"WIKIMEM_{name.upper()} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.rerank_dense_weight <= 1000.0:
            raise ConfigError(f"WIKIMEM_RERANK_DENSE_WEIGHT must be in [0, 1000], got {self.rerank_dense_weight}")
        if self.on_rerank_overload not in ("fail", "degrade"):
            raise ConfigError(
                f"WIKIMEM_ON_RERANK_OVERLOAD must be 'fail' or 'degrade', got {self.on_rerank_overload!r}"
            )
        if self.llm_rate_per_s < 0 or self.llm_burst < 1:
            raise ConfigError(
                f"WIKIMEM_LLM_RATE must be >= 0 and WIKIMEM_LLM_BURST >= 1, got {self.llm_rate_per_s * 60:g}/min and "
                f"{self.llm_burst}"
            )
        if self.retrieval_mode not in ("dense", "bm25", "hybrid"):
            raise ConfigError(f"WIKIMEM_RETRIEVAL_MODE={self.retrieval_mode!r} must be dense, bm25 or hybrid")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL={self.redis_url!r} must start with redis://, rediss:// or unix://")
        self.auth.validate()

    @property
    def verify(self) -> VerifyConfig:
        return VerifyConfig(threshold=self.verify_threshold, lexical_weight=self.verify_lexical_weight)
