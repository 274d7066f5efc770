"""The reranker core (no gRPC): validation, tokenisation, dynamic batching of pairs across requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wikimem_common.batching import DynamicBatcher
from wikimem_common.errors import InvalidArgument, require_text
from wikimem_common.timing import Timings

from .config import RerankerConfig
from .scorer import CrossEncoder, Pair


@dataclass(frozen=True)
class RerankResult:
    scores: list[float]
    #: Passage indices, most relevant first (ties keep request order).
    order: list[int]
    timings: Timings


class Reranker:
    def __init__(self, config: RerankerConfig) -> None:
        self.config = config
        self.encoder = CrossEncoder(config)
        self.batcher: DynamicBatcher[Pair, float] = DynamicBatcher(
            self.encoder.score, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, name="reranker-batcher"
        )

    def validate(self, query: str, passages: Sequence[str]) -> None:
        require_text(query, "query", self.config.max_chars)
        if len(passages) > self.config.max_passages:
            raise InvalidArgument(
                f"{len(passages)} passages in one request; the limit is {self.config.max_passages} — "
                "rerank fewer candidates or split the request"
            )
        for i, passage in enumerate(passages):
            if len(passage) > self.config.max_chars:
                raise InvalidArgument(
                    f"passages[{i}] is {len(passage)} characters; the limit is {self.config.max_chars}"
                )

    def rerank(self, query: str, passages: Sequence[str]) -> RerankResult:
        timings = Timings()
        self.validate(query, passages)
        if not passages:
            return RerankResult([], [], timings)
        with timings.stage("tokenize"):
            pairs = self.encoder.encode(query, passages)
        with timings.stage("score"):
            scores = self.batcher(pairs)
        order = [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]
        return RerankResult(scores, order, timings)

    def close(self) -> None:
        self.batcher.close()
        self.encoder.close()
