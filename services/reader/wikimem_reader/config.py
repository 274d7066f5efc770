"""Reader settings: the span model's wikimem.json plus environment overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_int, env_str
from wikimem_common.modeldir import ModelCard, default_sub_batch, load_card, model_dir

MODEL_DIR_ENV = "WIKIMEM_READER_MODEL_DIR"


@dataclass(frozen=True)
class ExtractiveConfig:
    card: ModelCard
    #: Tokens of [CLS] question [SEP] passage-window [SEP].
    max_length: int = 384
    #: Tokens shared by consecutive windows of a long passage.
    doc_stride: int = 128
    max_answer_tokens: int = 30
    max_query_tokens: int = 64
    #: Calibrated on held-out data by the trainer: answer when (best span − no-answer score) ≥ this.
    no_answer_threshold: float = 0.0
    max_batch: int = 32
    max_wait_ms: float = 2.0
    sub_batch: int = 8
    threads: int | None = None

    @classmethod
    def from_env(cls, directory: Path | None = None) -> ExtractiveConfig:
        directory = directory or model_dir("reader", MODEL_DIR_ENV)
        card = load_card(directory, "reader", MODEL_DIR_ENV, env_str("WIKIMEM_READER_VARIANT", ""))
        config = cls(
            card=card,
            max_length=env_int("WIKIMEM_READER_MAX_LENGTH", card.get_int("max_length", 384)),
            doc_stride=env_int("WIKIMEM_READER_DOC_STRIDE", card.get_int("doc_stride", 128)),
            max_answer_tokens=env_int("WIKIMEM_READER_MAX_ANSWER_TOKENS", card.get_int("max_answer_tokens", 30)),
            max_query_tokens=env_int("WIKIMEM_READER_MAX_QUERY_TOKENS", card.get_int("max_query_tokens", 64)),
            no_answer_threshold=env_float("WIKIMEM_READER_THRESHOLD", card.get_float("no_answer_threshold", 0.0)),
            max_batch=env_int("WIKIMEM_READER_MAX_BATCH", 32),
            max_wait_ms=env_float("WIKIMEM_READER_MAX_WAIT_MS", 2.0),
            sub_batch=env_int("WIKIMEM_READER_SUB_BATCH", default_sub_batch(card, 8)),
        )
        if not 32 <= config.max_length <= 512:
            raise ConfigError(f"reader max_length={config.max_length} must be in 32..512")
        if not 1 <= config.max_query_tokens <= config.max_length // 2:
            raise ConfigError(f"reader max_query_tokens={config.max_query_tokens} must be in 1..max_length/2")
        if config.doc_stride < 0 or config.max_answer_tokens < 1:
            raise ConfigError("reader doc_stride must be ≥ 0 and max_answer_tokens ≥ 1")
        return config


@dataclass(frozen=True)
class ReaderConfig:
    default_backend: str = "extractive"
    max_passages: int = 64
    max_chars: int = 100_000
    max_question_chars: int = 4_000
    max_answers: int = 20

    @classmethod
    def from_env(cls) -> ReaderConfig:
        return cls(
            default_backend=env_str("WIKIMEM_READER_BACKEND", "extractive"),
            max_passages=env_int("WIKIMEM_READER_MAX_PASSAGES", 64),
        )
