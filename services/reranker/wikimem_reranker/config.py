"""Reranker settings: the model directory's wikimem.json plus environment overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_int, env_str
from wikimem_common.modeldir import ModelCard, default_sub_batch, load_card, model_dir

MODEL_DIR_ENV = "WIKIMEM_RERANKER_MODEL_DIR"


@dataclass(frozen=True)
class RerankerConfig:
    card: ModelCard
    #: Tokens of [CLS] query [SEP] passage [SEP]; the passage is cut to fit.
    max_length: int = 256
    #: The query keeps at most this many tokens, so a long query never crowds out the passage.
    max_query_tokens: int = 64
    max_passages: int = 256
    max_chars: int = 100_000
    max_batch: int = 64
    max_wait_ms: float = 2.0
    sub_batch: int = 16
    #: Sub-batches scored at the same time, each by one ONNX Runtime thread. Small single-row runs scale poorly
    #: across intra-op threads; several rows side by side keep every core busy. Scores do not change (each row
    #: still runs alone). 1 = one sub-batch at a time on all cores.
    parallel: int = 1
    threads: int | None = None

    @classmethod
    def from_env(cls, directory: Path | None = None) -> RerankerConfig:
        directory = directory or model_dir("reranker", MODEL_DIR_ENV)
        card = load_card(directory, "reranker", MODEL_DIR_ENV, env_str("WIKIMEM_RERANKER_VARIANT", ""))
        config = cls(
            card=card,
            max_length=env_int("WIKIMEM_RERANKER_MAX_LENGTH", card.get_int("max_length", 256)),
            max_query_tokens=env_int("WIKIMEM_RERANKER_MAX_QUERY_TOKENS", card.get_int("max_query_tokens", 64)),
            max_passages=env_int("WIKIMEM_RERANKER_MAX_PASSAGES", 256),
            max_batch=env_int("WIKIMEM_RERANKER_MAX_BATCH", 64),
            max_wait_ms=env_float("WIKIMEM_RERANKER_MAX_WAIT_MS", 2.0),
            sub_batch=env_int("WIKIMEM_RERANKER_SUB_BATCH", default_sub_batch(card, 16)),
            parallel=env_int("WIKIMEM_RERANKER_PARALLEL", os.cpu_count() or 1),
        )
        if config.parallel < 1:
            raise ConfigError(f"WIKIMEM_RERANKER_PARALLEL={config.parallel} must be at least 1")
        if not 8 <= config.max_length <= 512:
            raise ConfigError(f"reranker max_length={config.max_length} must be in 8..512")
        if not 1 <= config.max_query_tokens <= config.max_length // 2:
            raise ConfigError(f"reranker max_query_tokens={config.max_query_tokens} must be in 1..max_length/2")
        return config
