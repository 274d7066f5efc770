"""Reader settings: the span model's wikimem.json plus environment overrides; the generative backends'."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_int, env_str
from wikimem_common.modeldir import ModelCard, load_card, model_dir

from .generative import GenerationSettings
from .llm_models import DEFAULT_MODEL, spec_for

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
    #: Windows per ONNX call. 1: no padding (windows of one question differ a lot in length, and batching them
    #: padded to the longest cost more than it saved) and, for int8, scores independent of the batch.
    sub_batch: int = 1
    #: Sub-batches run at the same time, each by one ONNX Runtime thread (1 = one at a time on all cores).
    parallel: int = 1
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
            sub_batch=env_int("WIKIMEM_READER_SUB_BATCH", 1),
            parallel=env_int("WIKIMEM_READER_PARALLEL", os.cpu_count() or 1),
        )
        if config.sub_batch < 1 or config.parallel < 1:
            raise ConfigError("WIKIMEM_READER_SUB_BATCH and WIKIMEM_READER_PARALLEL must be at least 1")
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


def generation_from_env() -> GenerationSettings:
    settings = GenerationSettings(
        max_tokens=env_int("WIKIMEM_LLM_MAX_TOKENS", 200),
        temperature=env_float("WIKIMEM_LLM_TEMPERATURE", 0.0),
        max_prompt_chars=env_int("WIKIMEM_LLM_MAX_PROMPT_CHARS", 6000),
    )
    if not 1 <= settings.max_tokens <= settings.max_tokens_limit:
        raise ConfigError(f"WIKIMEM_LLM_MAX_TOKENS={settings.max_tokens} must be in 1..{settings.max_tokens_limit}")
    if not 0.0 <= settings.temperature <= 2.0:
        raise ConfigError(f"WIKIMEM_LLM_TEMPERATURE={settings.temperature} must be in 0..2")
    if settings.max_prompt_chars < 200:
        raise ConfigError(f"WIKIMEM_LLM_MAX_PROMPT_CHARS={settings.max_prompt_chars} must be at least 200")
    return settings


@dataclass(frozen=True)
class LocalLlmConfig:
    """The `local-llm` backend: a pinned GGUF (by name, from `make llm`) or any GGUF file, run by llama.cpp."""

    model: str = DEFAULT_MODEL
    #: An explicit GGUF file instead of a pinned model (checked against `gguf_sha256` when that is set).
    gguf: str = ""
    gguf_sha256: str = ""
    #: llama.cpp threads; 0 = all cores.
    threads: int = 0
    #: Context window in tokens (prompt + answer).
    context: int = 4096
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    @classmethod
    def from_env(cls) -> LocalLlmConfig:
        config = cls(
            model=env_str("WIKIMEM_LLM_MODEL", DEFAULT_MODEL),
            gguf=env_str("WIKIMEM_LLM_GGUF", ""),
            gguf_sha256=env_str("WIKIMEM_LLM_GGUF_SHA256", "").lower(),
            threads=env_int("WIKIMEM_LLM_THREADS", 0),
            context=env_int("WIKIMEM_LLM_CONTEXT", 4096),
            generation=generation_from_env(),
        )
        if config.threads < 0:
            raise ConfigError(f"WIKIMEM_LLM_THREADS={config.threads} must be >= 0 (0 = all cores)")
        if not 512 <= config.context <= 131_072:
            raise ConfigError(f"WIKIMEM_LLM_CONTEXT={config.context} must be in 512..131072")
        if not config.gguf:
            spec_for(config.model)  # fails early on an unknown name
        return config


@dataclass(frozen=True)
class OpenAIConfig:
    """The `openai` backend: any OpenAI-compatible chat completions server (vLLM, Ollama, llama.cpp server)."""

    #: e.g. http://127.0.0.1:8000/v1 ("" = not configured; requests for the backend then fail with what to set).
    base_url: str = ""
    #: "" = the first model the server lists at /models.
    model: str = ""
    api_key: str = ""
    timeout_s: float = 120.0
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    @classmethod
    def from_env(cls) -> OpenAIConfig:
        config = cls(
            base_url=env_str("WIKIMEM_OPENAI_BASE_URL", "").rstrip("/"),
            model=env_str("WIKIMEM_OPENAI_MODEL", ""),
            api_key=env_str("WIKIMEM_OPENAI_API_KEY", env_str("OPENAI_API_KEY", "")),
            timeout_s=env_float("WIKIMEM_OPENAI_TIMEOUT_S", 120.0),
            generation=generation_from_env(),
        )
        if config.base_url and not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"WIKIMEM_OPENAI_BASE_URL={config.base_url!r} must start with http:// or https://")
        if config.timeout_s <= 0:
            raise ConfigError(f"WIKIMEM_OPENAI_TIMEOUT_S={config.timeout_s} must be > 0")
        return config
