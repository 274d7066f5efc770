"""Cross-encoder scoring of (query, passage) pairs: [CLS] query [SEP] passage [SEP] → one relevance logit."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from wikimem_common import onnx
from wikimem_common.config import ConfigError

from .config import RerankerConfig


@dataclass(frozen=True)
class Pair:
    ids: list[int]
    type_ids: list[int]


class CrossEncoder:
    def __init__(self, config: RerankerConfig) -> None:
        self.config = config
        # Parallel sub-batches: one ONNX Runtime thread each (session.run is thread-safe).
        self.session = onnx.session(config.card.onnx, 1 if config.parallel > 1 else config.threads)
        self._pool = (
            ThreadPoolExecutor(config.parallel, thread_name_prefix="reranker-row") if config.parallel > 1 else None
        )
        self.tokenizer = onnx.tokenizer(config.card.tokenizer)
        self.cls = onnx.special_id(self.tokenizer, "[CLS]")
        self.sep = onnx.special_id(self.tokenizer, "[SEP]")
        outputs = [o.name for o in self.session.get_outputs()]
        if "logits" not in outputs:
            raise ConfigError(f"{config.card.onnx} has outputs {outputs}; a reranker must output 'logits' [batch, 1]")

    def encode(self, query: str, passages: Sequence[str]) -> list[Pair]:
        """Token pairs; the query is capped at max_query_tokens, each passage is cut to fill max_length."""
        q = self.tokenizer.encode(query, add_special_tokens=False).ids[: self.config.max_query_tokens]
        room = self.config.max_length - len(q) - 3
        head = [self.cls, *q, self.sep]
        pairs = []
        for encoding in self.tokenizer.encode_batch(list(passages), add_special_tokens=False):
            p = encoding.ids[:room]
            pairs.append(Pair([*head, *p, self.sep], [0] * len(head) + [1] * (len(p) + 1)))
        return pairs

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """Logits in input order; runs sub-batches of similar length to keep padding small."""
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].ids))
        scores = np.empty(len(pairs), dtype=np.float32)
        step = self.config.sub_batch

        def run(rows: list[int]) -> None:
            arrays = onnx.pad_batch([pairs[i].ids for i in rows], [pairs[i].type_ids for i in rows])
            (logits,) = self.session.run(["logits"], onnx.feeds_for(self.session, arrays))
            scores[rows] = np.asarray(logits, dtype=np.float32).reshape(len(rows), -1)[:, 0]

        batches = [order[lo : lo + step] for lo in range(0, len(order), step)]
        if self._pool is not None and len(batches) > 1:
            list(self._pool.map(run, batches))
        else:
            for rows in batches:
                run(rows)
        return [float(s) for s in scores]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
