"""The embedder core (no gRPC): validation, dynamic batching across concurrent requests, timings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wikimem_common.batching import DynamicBatcher
from wikimem_common.errors import InvalidArgument
from wikimem_common.timing import Timings

from .config import EmbedderConfig
from .encoder import Embedded, SentenceEncoder


@dataclass(frozen=True)
class EmbedResult:
    vectors: npt.NDArray[np.float32]
    tokens: int
    timings: Timings


class Embedder:
    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self.encoder = SentenceEncoder(config)
        self.batcher: DynamicBatcher[str, Embedded] = DynamicBatcher(
            self.encoder.embed, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, name="embedder-batcher"
        )

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def validate(self, texts: Sequence[str]) -> None:
        if len(texts) > self.config.max_texts:
            raise InvalidArgument(
                f"{len(texts)} texts in one request; the limit is {self.config.max_texts} — split the request"
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"texts[{i}] is empty; every text must contain non-whitespace characters")
            if len(text) > self.config.max_chars:
                raise InvalidArgument(
                    f"texts[{i}] is {len(text)} characters; the limit is {self.config.max_chars} "
                    f"(only the first {self.config.max_length} tokens are embedded anyway)"
                )

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        timings = Timings()
        self.validate(texts)
        submitted = time.perf_counter()
        results = self.batcher(list(texts))
        if results:
            stats = results[0].batch  # a request's texts always run in one batch
            timings.add("queue", (stats.started - submitted) * 1000.0)
            timings.add("tokenize", stats.tokenize_ms)
            timings.add("infer", stats.infer_ms)
            vectors = np.stack([r.vector for r in results])
        else:
            vectors = np.zeros((0, self.dim), dtype=np.float32)
        return EmbedResult(vectors=vectors, tokens=sum(r.tokens for r in results), timings=timings)

    def close(self) -> None:
        self.batcher.close()
        self.encoder.close()
