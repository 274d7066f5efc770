"""Extractive reading with an ONNX span model: the answer is a span of one of the passages.

Each passage is tokenised once (with character offsets into the passage's Python string) and cut into windows
of [CLS] question [SEP] window [SEP] that overlap by `doc_stride` tokens. For a window, a span (i, j) scores
start[i] + end[j]; the no-answer score is start[0] + end[0] ([CLS]); a candidate's score is the difference.
The best candidate over all passages and windows answers, unless it stays below the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wikimem_common import onnx
from wikimem_common.batching import DynamicBatcher
from wikimem_common.config import ConfigError
from wikimem_common.timing import Timings

from .backend import Answer, Passage, ReaderBackend, ReadOutcome
from .config import ExtractiveConfig

Logits = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]

#: Best spans kept per window before merging across windows.
CANDIDATES_PER_WINDOW = 20


@dataclass(frozen=True)
class Window:
    passage_index: int
    ids: list[int]
    type_ids: list[int]
    #: Position of the first passage token in `ids`.
    context_start: int
    #: Character offsets of the window's passage tokens in the passage text.
    offsets: list[tuple[int, int]]


@dataclass(frozen=True)
class Candidate:
    score: float
    passage_index: int
    start: int
    end: int


class ExtractiveReader(ReaderBackend):
    name = "extractive"

    def __init__(self, config: ExtractiveConfig) -> None:
        self.config = config
        # Parallel sub-batches: one ONNX Runtime thread each (session.run is thread-safe).
        self.session = onnx.session(config.card.onnx, 1 if config.parallel > 1 else config.threads)
        self._pool = (
            ThreadPoolExecutor(config.parallel, thread_name_prefix="reader-window") if config.parallel > 1 else None
        )
        self.tokenizer = onnx.tokenizer(config.card.tokenizer)
        self.cls = onnx.special_id(self.tokenizer, "[CLS]")
        self.sep = onnx.special_id(self.tokenizer, "[SEP]")
        outputs = [o.name for o in self.session.get_outputs()]
        if not {"start_logits", "end_logits"} <= set(outputs):
            raise ConfigError(
                f"{config.card.onnx} has outputs {outputs}; a reader must output start_logits and end_logits"
            )
        self.batcher: DynamicBatcher[Window, Logits] = DynamicBatcher(
            self._infer, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, name="reader-batcher"
        )

    def windows(self, question: str, passages: Sequence[Passage]) -> list[Window]:
        q = self.tokenizer.encode(question, add_special_tokens=False).ids[: self.config.max_query_tokens]
        head = [self.cls, *q, self.sep]
        room = self.config.max_length - len(head) - 1
        step = room - self.config.doc_stride if room > self.config.doc_stride else max(1, room // 2)
        texts = [(i, p.text) for i, p in enumerate(passages) if p.text.strip()]
        out: list[Window] = []
        encodings = self.tokenizer.encode_batch([t for _, t in texts], add_special_tokens=False)
        for (index, _), encoding in zip(texts, encodings, strict=True):
            ids, offsets = encoding.ids, encoding.offsets
            start = 0
            while start < len(ids):
                end = min(start + room, len(ids))
                part = ids[start:end]
                out.append(
                    Window(
                        passage_index=index,
                        ids=[*head, *part, self.sep],
                        type_ids=[0] * len(head) + [1] * (len(part) + 1),
                        context_start=len(head),
                        offsets=list(offsets[start:end]),
                    )
                )
                if end == len(ids):
                    break
                start += step
        return out

    def _infer(self, windows: Sequence[Window]) -> list[Logits]:
        """Model run over windows (from any number of requests), sorted by length into sub-batches."""
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].ids))
        results: list[Logits | None] = [None] * len(windows)
        step = self.config.sub_batch

        def run(rows: list[int]) -> None:
            arrays = onnx.pad_batch([windows[i].ids for i in rows], [windows[i].type_ids for i in rows])
            starts, ends = self.session.run(["start_logits", "end_logits"], onnx.feeds_for(self.session, arrays))
            for k, i in enumerate(rows):
                n = len(windows[i].ids)
                results[i] = (np.asarray(starts[k, :n], np.float32), np.asarray(ends[k, :n], np.float32))

        batches = [order[lo : lo + step] for lo in range(0, len(order), step)]
        if self._pool is not None and len(batches) > 1:
            list(self._pool.map(run, batches))
        else:
            for rows in batches:
                run(rows)
        return [r for r in results if r is not None]

    def candidates(self, window: Window, logits: Logits) -> list[Candidate]:
        """The window's best spans by (start + end) − no-answer score, as character spans."""
        start_logits, end_logits = logits
        null = float(start_logits[0] + end_logits[0])
        lo, hi = window.context_start, window.context_start + len(window.offsets)
        s, e = start_logits[lo:hi], end_logits[lo:hi]
        n = len(s)
        scores = s[:, None] + e[None, :]
        i, j = np.indices((n, n))
        scores = np.where((j >= i) & (j - i < self.config.max_answer_tokens), scores, -np.inf)
        flat = scores.ravel()
        k = min(CANDIDATES_PER_WINDOW, flat.size)
        best = np.argpartition(-flat, k - 1)[:k]
        out = []
        for index in best:
            if not np.isfinite(flat[index]):
                continue
            a, b = divmod(int(index), n)
            out.append(
                Candidate(float(flat[index]) - null, window.passage_index, window.offsets[a][0], window.offsets[b][1])
            )
        return out

    def read(
        self,
        question: str,
        passages: Sequence[Passage],
        max_answers: int,
        threshold: float | None,
        timings: Timings,
    ) -> ReadOutcome:
        limit = self.config.no_answer_threshold if threshold is None else threshold
        if not passages:
            return ReadOutcome.abstain("no passages")
        with timings.stage("tokenize"):
            windows = self.windows(question, passages)
        if not windows:
            return ReadOutcome.abstain("no passage has any text")
        with timings.stage("infer"):
            logits = self.batcher(windows)
        with timings.stage("decode"):
            candidates = [c for w, lg in zip(windows, logits, strict=True) for c in self.candidates(w, lg)]
            candidates.sort(key=lambda c: c.score, reverse=True)
            best = candidates[0].score
            if best < limit:
                return ReadOutcome.abstain(f"no supported answer (score {best:.2f} < threshold {limit:.2f})")
            chosen: list[Candidate] = []
            for c in candidates:
                if len(chosen) == max_answers or c.score < limit:
                    break
                overlaps = any(
                    o.passage_index == c.passage_index and c.start < o.end and o.start < c.end for o in chosen
                )
                if not overlaps:
                    chosen.append(c)
        answers = [
            Answer(passages[c.passage_index].text[c.start : c.end], c.score, c.passage_index, c.start, c.end)
            for c in chosen
        ]
        return ReadOutcome(answers=answers)

    def close(self) -> None:
        self.batcher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
