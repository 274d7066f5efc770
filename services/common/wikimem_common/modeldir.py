"""Locating our trained models (`$WIKIMEM_MODELS/<name>`) and reading their `wikimem.json` model cards."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError

#: The repository root when the packages are installed editable (services/common/wikimem_common/ → repo).
REPO_ROOT = Path(__file__).resolve().parents[3]


def models_dir() -> Path:
    """$WIKIMEM_MODELS, else the repository's `models/` folder."""
    env = os.environ.get("WIKIMEM_MODELS")
    return Path(env) if env else REPO_ROOT / "models"


def model_dir(name: str, env_var: str) -> Path:
    """A model's directory: the service-specific variable, else `$WIKIMEM_MODELS/<name>`."""
    env = os.environ.get(env_var)
    return Path(env) if env else models_dir() / name


@dataclass(frozen=True)
class ModelCard:
    """A model directory's `wikimem.json` plus the resolved paths of its files."""

    path: Path
    kind: str
    onnx: Path
    tokenizer: Path
    raw: dict[str, Any] = field(default_factory=dict)

    def get_int(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{self.path / 'wikimem.json'}: {key} must be an integer, got {value!r}")
        return value

    def get_float(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{self.path / 'wikimem.json'}: {key} must be a number, got {value!r}")
        return float(value)


def load_card(directory: Path, kind: str, env_var: str, variant: str = "") -> ModelCard:
    """Read `<directory>/wikimem.json` and check it describes a model of `kind`; fail with what to do next.

    `variant` (e.g. "int8") selects an entry of the card's "variants" map, whose keys override the top level.
    """
    card_path = directory / "wikimem.json"
    if not card_path.is_file():
        raise ConfigError(
            f"no {kind} model at {directory} (missing wikimem.json); train/export it into that folder "
            f"or point {env_var} (or WIKIMEM_MODELS) at a directory that has one"
        )
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{card_path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{card_path} must hold a JSON object")
    if raw.get("kind") != kind:
        raise ConfigError(f"{card_path} describes a {raw.get('kind')!r} model, expected {kind!r}")
    if variant and variant != raw.get("variant"):
        variants = raw.get("variants") or {}
        if variant not in variants:
            available = sorted({str(raw.get("variant", "default")), *variants})
            raise ConfigError(f"{card_path} has no variant {variant!r}; available: {', '.join(available)}")
        raw = {**raw, **variants[variant], "variant": variant}
    onnx = directory / str(raw.get("onnx", "model.onnx"))
    tokenizer = directory / str(raw.get("tokenizer", "tokenizer.json"))
    for file in (onnx, tokenizer):
        if not file.is_file():
            raise ConfigError(f"{file} is missing; the {kind} model directory {directory} is incomplete")
    return ModelCard(path=directory, kind=kind, onnx=onnx, tokenizer=tokenizer, raw=raw)


def default_sub_batch(card: ModelCard, batched: int) -> int:
    """Rows per ONNX call: 1 for dynamically quantised (int8) exports, else `batched`.

    Dynamic int8 quantisation picks one activation scale per tensor, so a row's logits shift with whatever else
    is in the batch (we measured over 1 logit on the reranker). One row per call keeps every score independent of
    concurrent traffic and of padding; at these sequence lengths it costs little on CPU.
    """
    return 1 if card.raw.get("variant") == "int8" else batched
