"""ONNX Runtime backends for evaluation, the way the services run the models (CPU, fixed thread count)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .features import pad_batch


def ort_rerank_fn(sess: Any, batch_size: int = 16) -> Any:
    def score(ids: list[np.ndarray], types: list[np.ndarray]) -> np.ndarray:
        order = np.argsort([len(x) for x in ids])
        out = np.zeros(len(ids), np.float32)
        for i in range(0, len(ids), batch_size):
            idx = order[i : i + batch_size]
            a, m, t = pad_batch([ids[j] for j in idx], [types[j] for j in idx])
            (logits,) = sess.run(["logits"], {"input_ids": a, "attention_mask": m, "token_type_ids": t})
            out[idx] = logits[:, 0]
        return out

    return score


def ort_span_fn(sess: Any, batch_size: int = 16) -> Any:
    def span(ids: list[np.ndarray], types: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        order = np.argsort([len(x) for x in ids])
        starts: list[np.ndarray] = [np.zeros(0)] * len(ids)
        ends: list[np.ndarray] = [np.zeros(0)] * len(ids)
        for i in range(0, len(ids), batch_size):
            idx = order[i : i + batch_size]
            a, m, t = pad_batch([ids[j] for j in idx], [types[j] for j in idx])
            s, e = sess.run(["start_logits", "end_logits"], {"input_ids": a, "attention_mask": m,
                                                                "token_type_ids": t})
            for r, j in enumerate(idx):
                starts[j], ends[j] = s[r, : len(ids[j])], e[r, : len(ids[j])]
        return starts, ends

    return span


def latency(sess: Any, feeds: dict[str, np.ndarray], batch: int, repeats: int = 5) -> dict[str, float]:
    """Median wall time per call and per (question, passage) pair for a batch cut from feeds."""
    f = {k: np.ascontiguousarray(v[:batch]) for k, v in feeds.items()}
    outs = [o.name for o in sess.get_outputs()]
    sess.run(outs, f)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(outs, f)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {"batch": batch, "seq_len": int(f["input_ids"].shape[1]), "ms_per_call": 1000 * med,
            "ms_per_pair": 1000 * med / batch}
