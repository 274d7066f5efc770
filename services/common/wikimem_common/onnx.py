"""ONNX Runtime sessions and tokenizers, configured the same way in every model-serving service."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from .config import ConfigError, env_bool, env_int


def session(model_path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session. Idle intra-op threads do not spin (WIKIMEM_ONNX_SPINNING=1 lets them): the five
    services take turns on the same few cores, and a service spinning after its run steals them from the next
    stage (measured on 2 cores: 20 rerank calls 1.2 s spinning vs 0.7 s not, with other jobs running)."""
    if not model_path.is_file():
        raise ConfigError(f"ONNX model not found at {model_path}; check the model directory setting")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or env_int("WIKIMEM_ONNX_THREADS", os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if env_bool("WIKIMEM_ONNX_SPINNING", False) else "0"
    )
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise ConfigError(f"tokenizer.json not found at {path}")
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pad_batch(
    ids: Sequence[Sequence[int]],
    type_ids: Sequence[Sequence[int]] | None = None,
    pad_id: int = 0,
) -> dict[str, npt.NDArray[np.int64]]:
    """Right-pad token id rows to the longest one: input_ids, attention_mask, token_type_ids (int64)."""
    width = max((len(row) for row in ids), default=0)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(ids), width), dtype=np.int64)
    types = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        attention[i, : len(row)] = 1
        if type_ids is not None:
            types[i, : len(row)] = type_ids[i]
    return {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": types}


def feeds_for(sess: ort.InferenceSession, arrays: dict[str, npt.NDArray[np.int64]]) -> dict[str, Any]:
    """The subset of `arrays` the model declares as inputs (some exports take no token_type_ids)."""
    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ConfigError(f"the ONNX model needs inputs {missing}, which this service does not provide")
    return {n: arrays[n] for n in names}


def special_id(tok: Tokenizer, token: str) -> int:
    value = tok.token_to_id(token)
    if value is None:
        raise ConfigError(f"the tokenizer has no {token} token; a BERT-style WordPiece tokenizer is expected")
    return int(value)
