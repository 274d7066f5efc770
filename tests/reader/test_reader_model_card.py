"""Model directories: clear start-up errors and variant selection from wikimem.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wikimem_common.config import ConfigError
from wikimem_common.modeldir import default_sub_batch, load_card


def make_dir(tmp_path: Path, card: dict[str, object]) -> Path:
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "wikimem.json").write_text(json.dumps(card))
    return tmp_path


CARD = {
    "kind": "reader",
    "onnx": "model.onnx",
    "variant": "fp32",
    "no_answer_threshold": 1.5,
    "variants": {"int8": {"onnx": "model.int8.onnx", "no_answer_threshold": 1.2}},
}


def test_missing_directory_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WIKIMEM_READER_MODEL_DIR"):
        load_card(tmp_path / "nope", "reader", "WIKIMEM_READER_MODEL_DIR")


def test_wrong_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected 'reranker'"):
        load_card(make_dir(tmp_path, CARD), "reranker", "X")


def test_variant_overrides_top_level(tmp_path: Path) -> None:
    directory = make_dir(tmp_path, CARD)
    default = load_card(directory, "reader", "X")
    assert default.onnx.name == "model.onnx" and default.get_float("no_answer_threshold", 0) == 1.5
    assert default_sub_batch(default, 8) == 8
    int8 = load_card(directory, "reader", "X", "int8")
    assert int8.onnx.name == "model.int8.onnx" and int8.get_float("no_answer_threshold", 0) == 1.2
    assert default_sub_batch(int8, 8) == 1  # dynamic int8: one row per call, scores independent of the batch
    with pytest.raises(ConfigError, match="available: fp32, int8"):
        load_card(directory, "reader", "X", "int4")
