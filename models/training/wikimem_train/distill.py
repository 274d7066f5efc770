"""Ensemble → single-model distillation for the reader: soft start/end targets from several trained teachers.

Teacher targets are the mean over teachers of softmax(logits / T) per window (start and end separately), stored
as float16 beside each training window; the student's loss mixes the hard span cross-entropy with the soft one
(`train.loss_fn`, FitConfig.extra = {"temperature": T, "alpha": weight of the hard loss}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import ReaderExamples, collate_spans

SpanFn = Callable[[list[np.ndarray], list[np.ndarray]], tuple[list[np.ndarray], list[np.ndarray]]]
Item = tuple[np.ndarray, np.ndarray, int, int, np.ndarray]


def _softmax(x: np.ndarray, t: float) -> np.ndarray:
    z = x.astype(np.float64) / t
    z -= z.max()
    p = np.exp(z)
    return p / p.sum()


def ensemble_probs(teachers: list[SpanFn], ids: list[np.ndarray], types: list[np.ndarray],
                   temperature: float) -> list[np.ndarray]:
    """[2, len] float16 mean teacher probabilities (start row 0, end row 1) for each window."""
    acc = [np.zeros((2, len(x)), np.float64) for x in ids]
    for span in teachers:
        starts, ends = span(ids, types)
        for a, s, e in zip(acc, starts, ends, strict=True):
            a[0] += _softmax(s, temperature)
            a[1] += _softmax(e, temperature)
    return [(a / len(teachers)).astype(np.float16) for a in acc]


def ensemble_span_fn(teachers: list[SpanFn]) -> SpanFn:
    """A backend whose logits are the teachers' mean logits (for reporting the ensemble itself)."""

    def span(ids: list[np.ndarray], types: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        outs = [t(ids, types) for t in teachers]
        starts = [np.mean([o[0][i] for o in outs], axis=0) for i in range(len(ids))]
        ends = [np.mean([o[1][i] for o in outs], axis=0) for i in range(len(ids))]
        return starts, ends

    return span


class DistillSpans(Dataset[Item]):
    """The reader training windows of a ReaderExamples (same per-epoch negative sampling) plus teacher targets."""

    def __init__(self, base: ReaderExamples, teachers: list[SpanFn], temperature: float) -> None:
        self.base = base
        self.soft_pos = ensemble_probs(teachers, [p[0] for p in base.pos], [p[1] for p in base.pos], temperature)
        flat = [w for ws in base.neg_windows for w in ws]
        probs = ensemble_probs(teachers, [w.ids for w in flat], [w.types for w in flat], temperature)
        self.soft_neg: list[list[np.ndarray]] = []
        k = 0
        for ws in base.neg_windows:
            self.soft_neg.append(probs[k : k + len(ws)])
            k += len(ws)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Item:
        ids, types, s, e = self.base.items[i]
        k, j = self.base.sources[i]
        soft = self.soft_pos[j] if k < 0 else self.soft_neg[k][j]
        return ids, types, s, e, soft


def collate_distill(batch: list[Item]) -> dict[str, torch.Tensor]:
    out: dict[str, Any] = collate_spans([b[:4] for b in batch])
    n = out["input_ids"].shape[1]
    soft = np.zeros((len(batch), 2, n), np.float32)
    for r, b in enumerate(batch):
        soft[r, :, : b[4].shape[1]] = b[4]
    out["soft"] = torch.from_numpy(soft)
    return out
