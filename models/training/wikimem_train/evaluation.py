"""Backend-independent evaluation (PyTorch on the GPU run, ONNX Runtime locally).

A backend is a pair of callables over already tokenised inputs:
  rerank(ids, types) -> scores[n]            span(ids, types) -> (start_logits[n][len], end_logits[n][len])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .features import (
    MAX_ANSWER_TOKENS,
    RERANK_MAX_LEN,
    decode_passage,
    pair_tokenizer,
    reader_tokenizer,
    reader_windows_batch,
)
from .metrics import exact_match, f1_score, mrr_at_k, ndcg_at_k, recall_at_k

RerankFn = Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray]
SpanFn = Callable[[list[np.ndarray], list[np.ndarray]], tuple[list[np.ndarray], list[np.ndarray]]]


def _candidates(row: dict[str, Any], stage: str | None, depth: int) -> list[str]:
    c = row["cands"]
    return list(c[stage] if stage else c)[:depth]


def rerank_rows(score: RerankFn, rows: list[dict[str, Any]], passages: dict[str, str], tokenizer: Path,
                stages: list[str | None], depth: int) -> dict[str, list[list[str]]]:
    """Score every distinct (query, candidate) once; return reranked lists per stage."""
    tok = pair_tokenizer(tokenizer, RERANK_MAX_LEN)
    keys: list[tuple[int, str]] = []
    seen: set[tuple[int, str]] = set()
    for i, r in enumerate(rows):
        for st in stages:
            for pid in _candidates(r, st, depth):
                if (i, pid) not in seen:
                    seen.add((i, pid))
                    keys.append((i, pid))
    encs = tok.encode_batch([(rows[i]["query"], passages[pid]) for i, pid in keys])
    scores = score([np.asarray(e.ids, np.int64) for e in encs], [np.asarray(e.type_ids, np.int64) for e in encs])
    by_key = dict(zip(keys, scores.tolist(), strict=True))
    out: dict[str, list[list[str]]] = {}
    for st in stages:
        lists = []
        for i, r in enumerate(rows):
            cands = _candidates(r, st, depth)
            own = {p: by_key[(i, p)] for p in cands}
            lists.append(sorted(cands, key=own.__getitem__, reverse=True))
        out[st or "first"] = lists
    return out


def reranker_metrics(score: RerankFn, rows: list[dict[str, Any]], passages: dict[str, str], tokenizer: Path,
                     stages: list[str | None], depth: int) -> dict[str, float]:
    reranked = rerank_rows(score, rows, passages, tokenizer, stages, depth)
    m: dict[str, float] = {"queries": float(len(rows)), "depth": float(depth)}
    for st in stages:
        name = st or "first"
        first = [_candidates(r, st, depth) for r in rows]
        rr = reranked[name]
        rels = [{k: int(v) for k, v in r["rel"].items()} for r in rows]
        m[f"{name}.ndcg@10"] = float(np.mean([ndcg_at_k(f, rel) for f, rel in zip(first, rels, strict=True)]))
        m[f"{name}+rerank.ndcg@10"] = float(np.mean([ndcg_at_k(f, rel) for f, rel in zip(rr, rels, strict=True)]))
        m[f"{name}.mrr@10"] = float(np.mean([mrr_at_k(f, rel) for f, rel in zip(first, rels, strict=True)]))
        m[f"{name}+rerank.mrr@10"] = float(np.mean([mrr_at_k(f, rel) for f, rel in zip(rr, rels, strict=True)]))
        m[f"{name}.hit@1"] = float(np.mean([mrr_at_k(f, rel, 1) for f, rel in zip(first, rels, strict=True)]))
        m[f"{name}+rerank.hit@1"] = float(np.mean([mrr_at_k(f, rel, 1) for f, rel in zip(rr, rels, strict=True)]))
        m[f"{name}.recall@{depth}"] = float(
            np.mean([recall_at_k(f, rel, depth) for f, rel in zip(first, rels, strict=True)])
        )
    return m


def reader_scores(span: SpanFn, rows: list[dict[str, Any]], passages: dict[str, str], tokenizer: Path,
                  max_answer_tokens: int = MAX_ANSWER_TOKENS) -> dict[str, Any]:
    """Predictions on each gold passage and on one non-gold retrieved passage per question."""
    tok = reader_tokenizer(tokenizer)
    pairs: list[tuple[str, str]] = []
    owner: list[tuple[int, bool]] = []
    for i, r in enumerate(rows):
        pairs.append((r["question"], passages[r["pid"]]))
        owner.append((i, True))
        for pid in r["negs"][:1]:
            pairs.append((r["question"], passages[pid]))
            owner.append((i, False))
    windows = reader_windows_batch(tok, pairs)
    flat = [w for ws in windows for w in ws]
    starts, ends = span([w.ids for w in flat], [w.types for w in flat])
    k = 0
    gold_pred, gold_score, neg_score = [""] * len(rows), np.full(len(rows), np.nan), []
    for (i, is_gold), ws, (_, text) in zip(owner, windows, pairs, strict=True):
        pred = decode_passage(ws, starts[k : k + len(ws)], ends[k : k + len(ws)], text, max_answer_tokens)
        k += len(ws)
        if is_gold:
            gold_pred[i], gold_score[i] = pred.answer, pred.score
        else:
            neg_score.append(pred.score)
    return {"pred": gold_pred, "gold_score": gold_score, "neg_score": np.asarray(neg_score)}


def em_f1(rows: list[dict[str, Any]], preds: list[str]) -> tuple[float, float]:
    em = [exact_match(p, r["all_answers"]) for p, r in zip(preds, rows, strict=True)]
    f1 = [f1_score(p, r["all_answers"]) for p, r in zip(preds, rows, strict=True)]
    return 100 * float(np.mean(em)), 100 * float(np.mean(f1))


def abstention(gold: np.ndarray, neg: np.ndarray, threshold: float) -> dict[str, float]:
    answered_gold = float(np.mean(gold >= threshold))
    abst_neg = int(np.sum(neg < threshold))
    abst_gold = int(np.sum(gold < threshold))
    return {
        "threshold": threshold,
        "answer_rate_gold": answered_gold,
        "abstain_rate_nongold": abst_neg / max(1, len(neg)),
        "abstain_precision": abst_neg / max(1, abst_neg + abst_gold),
        "abstain_recall": abst_neg / max(1, len(neg)),
        "balanced_accuracy": (answered_gold + abst_neg / max(1, len(neg))) / 2,
    }


def calibrate(gold: np.ndarray, neg: np.ndarray) -> tuple[float, list[dict[str, float]]]:
    """Threshold maximising balanced accuracy (answer on gold, abstain on non-gold); plus a coarse curve."""
    cands = np.unique(np.concatenate([gold, neg]))
    mids = (cands[:-1] + cands[1:]) / 2 if len(cands) > 1 else cands
    best = max(mids, key=lambda t: abstention(gold, neg, float(t))["balanced_accuracy"])
    qs = np.quantile(np.concatenate([gold, neg]), np.linspace(0.05, 0.95, 19))
    curve = [abstention(gold, neg, float(t)) for t in qs]
    return float(best), curve


def reader_metrics(span: SpanFn, rows: list[dict[str, Any]], passages: dict[str, str], tokenizer: Path,
                   threshold: float | None, max_answer_tokens: int = MAX_ANSWER_TOKENS) -> dict[str, Any]:
    rows = [r for r in rows if r["all_answers"]]
    res = reader_scores(span, rows, passages, tokenizer, max_answer_tokens)
    em, f1 = em_f1(rows, res["pred"])
    m: dict[str, Any] = {"questions": len(rows), "em": em, "f1": f1, "nongold_passages": len(res["neg_score"])}
    if threshold is None:
        threshold, curve = calibrate(res["gold_score"], res["neg_score"])
        m["calibration_curve"] = curve
    m["abstention"] = abstention(res["gold_score"], res["neg_score"], threshold)
    answered = res["gold_score"] >= threshold
    em_thr = [exact_match(p, r["all_answers"]) if a else 0.0 for p, r, a in zip(res["pred"], rows, answered,
                                                                                 strict=True)]
    m["em_with_abstention"] = 100 * float(np.mean(em_thr))
    return m
