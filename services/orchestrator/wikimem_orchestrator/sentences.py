"""The sentences of the passages read and their similarity to the question, for the sentence first decision.

Computed while the reader reads (one Embed call for the sentences not cached, on a small thread pool), so on a
machine with a core to spare it adds little to an Ask. The question's own embedding (already made for retrieval)
is reused. Sentence vectors are kept per chunk id in a small LRU: a chunk id names one revision of a page, so an
entry never goes stale, and the pages people ask about most are embedded once.
"""

from __future__ import annotations

import contextvars
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from wikimem_common.markup import mask_markup
from wikimem_contract.v1 import common_pb2

from .answering import Sentence, sentence_context, sentence_input
from .citations import sentence_spans
from .verify import Embed

#: Sentences of the passages read, and the cosine of each with the question (same order).
Scored = tuple[list[Sentence], npt.NDArray[np.float32]]

_POOL = ThreadPoolExecutor(4, thread_name_prefix="orchestrator-sentences")


def passage_sentences(passages: Sequence[common_pb2.ScoredChunk]) -> tuple[list[Sentence], list[str]]:
    """Sentence spans over each passage's text as the reader sees it (markup masked, offsets unchanged), and what is
    embedded for each (title and heading in front)."""
    sentences: list[Sentence] = []
    inputs: list[str] = []
    for i, p in enumerate(passages):
        masked = mask_markup(p.chunk.text)
        context = sentence_context(p.chunk.title, p.chunk.heading)
        for start, end in sentence_spans(masked):
            text = " ".join(masked[start:end].split())
            sentences.append(Sentence(i, start, end, text))
            inputs.append(sentence_input(context, text))
    return sentences, inputs


class VectorCache:
    """Sentence vectors per chunk id (and the embedder's model key), least recently used out first."""

    def __init__(self, max_chunks: int = 2000) -> None:
        self.max_chunks = max_chunks
        self._rows: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> npt.NDArray[np.float32] | None:
        with self._lock:
            rows = self._rows.get(key)
            if rows is not None:
                self._rows.move_to_end(key)
            return rows

    def put(self, key: tuple[str, str], rows: npt.NDArray[np.float32]) -> None:
        if self.max_chunks <= 0:
            return
        with self._lock:
            self._rows[key] = rows
            self._rows.move_to_end(key)
            while len(self._rows) > self.max_chunks:
                self._rows.popitem(last=False)


def score(
    question: npt.NDArray[np.float32],
    passages: Sequence[common_pb2.ScoredChunk],
    embed: Embed,
    cache: VectorCache | None = None,
    model: str = "",
) -> Scored:
    sentences, inputs = passage_sentences(passages)
    if not sentences:
        return sentences, np.zeros(0, dtype=np.float32)
    dim = question.size
    rows = np.zeros((len(sentences), dim), dtype=np.float32)
    missing: list[int] = []  # passages whose sentence vectors are not cached
    for i, p in enumerate(passages):
        cached = cache.get((model, p.chunk.chunk_id)) if cache is not None and p.chunk.chunk_id else None
        where = [j for j, s in enumerate(sentences) if s.passage_index == i]
        if cached is not None and cached.shape == (len(where), dim):
            rows[where] = cached
        else:
            missing.append(i)
    todo = [j for j, s in enumerate(sentences) if s.passage_index in missing]
    if todo:
        rows[todo] = embed([inputs[j] for j in todo])
        if cache is not None:
            for i in missing:
                if passages[i].chunk.chunk_id:
                    own = [j for j in todo if sentences[j].passage_index == i]
                    cache.put((model, passages[i].chunk.chunk_id), rows[own])
    q = question.reshape(-1)
    return sentences, (rows @ q).astype(np.float32)


def start(
    question: npt.NDArray[np.float32],
    passages: Sequence[common_pb2.ScoredChunk],
    embed: Embed,
    cache: VectorCache | None = None,
    model: str = "",
) -> Future[Scored]:
    """`score` on the pool: the caller reads meanwhile and takes the result (or its error) afterwards. It runs in a
    copy of the caller's context, so its Embed call stays in the Ask's trace."""
    context = contextvars.copy_context()
    return _POOL.submit(context.run, score, question, list(passages), embed, cache, model)
