"""`python -m bench.verify_support`: which support signal separates supported from unsupported answer sentences?

On the hand-labelled sentences of bench/data/verify_cases.json (paraphrases vs swapped entities, changed numbers,
negations and memorised extras), each method scores every sentence against the passages:

- lexical: weighted content-word overlap with the best span (verify.py, no embedder);
- embedding: cosine of the sentence and the best span (the project's embedder);
- combined: the mean of the two (what wikimem ships), the span chosen as verify.py chooses it;
- reranker: the cross-encoder's score of (sentence, span), best span (sigmoid);

each with and without the key-term rule (every number and name of the sentence must be in the span or the
question). Reported: ROC AUC, the best accuracy over thresholds, and precision / recall at the shipped threshold.
Real models, in-process, no LLM. Writes JSON + Markdown to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import ROOT, write_json

CASES = ROOT / "bench" / "data" / "verify_cases.json"


def auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def best_accuracy(scores: list[float], labels: list[bool]) -> tuple[float, float]:
    best = (0.0, 0.0)
    for t in sorted(set(scores)):
        acc = sum((s >= t) == y for s, y in zip(scores, labels, strict=True)) / len(labels)
        if acc > best[0]:
            best = (acc, t)
    return best


def at_threshold(scores: list[float], labels: list[bool], t: float) -> dict[str, float]:
    tp = sum(s >= t and y for s, y in zip(scores, labels, strict=True))
    fp = sum(s >= t and not y for s, y in zip(scores, labels, strict=True))
    fn = sum(s < t and y for s, y in zip(scores, labels, strict=True))
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "accuracy": sum((s >= t) == y for s, y in zip(scores, labels, strict=True)) / len(labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_support", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verify-support")
    args = parser.parse_args(argv)
    from wikimem_embedder.config import EmbedderConfig
    from wikimem_embedder.service import Embedder
    from wikimem_orchestrator.verify import VerifyConfig, check_answer, passage_spans
    from wikimem_reranker.config import RerankerConfig
    from wikimem_reranker.service import Reranker

    embedder = Embedder(EmbedderConfig.from_env())
    reranker = Reranker(RerankerConfig.from_env())

    def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        return embedder.embed(texts).vectors

    shipped = VerifyConfig()
    sets: list[dict[str, Any]] = json.loads(CASES.read_text())["sets"]
    labels: list[bool] = []
    kinds: list[str] = []
    scores: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        scores.setdefault(name, []).append(value)

    for case in sets:
        question, passages = case["question"], case["passages"]
        spans = [s.text for s in passage_spans(passages)]
        for sentence, supported, kind in case["sentences"]:
            labels.append(bool(supported))
            kinds.append(kind)
            for name, weight, embedder_fn in (
                ("lexical", 1.0, None),
                ("embedding", 0.0, embed),
                ("combined", shipped.lexical_weight, embed),
            ):
                cfg = VerifyConfig(threshold=shipped.threshold, lexical_weight=weight)
                [checked] = check_answer(question, sentence, passages, embedder_fn, cfg)
                keys_ok = checked.verified or checked.note.startswith("support")
                add(name, checked.support)
                add(f"{name} + key terms", checked.support if keys_ok else 0.0)
            rr = reranker.rerank(sentence, spans).scores
            best = max(rr)
            add("reranker", 1.0 / (1.0 + math.exp(-best)))
            # the key-term rule with the reranker: the combined method's key check
            [checked] = check_answer(question, sentence, passages, embed, shipped)
            keys_ok = checked.verified or checked.note.startswith("support")
            add("reranker + key terms", 1.0 / (1.0 + math.exp(-best)) if keys_ok else 0.0)
    embedder.close()
    reranker.close()

    rows = []
    for name, values in scores.items():
        acc, t = best_accuracy(values, labels)
        row: dict[str, Any] = {
            "method": name,
            "auc": round(auc(values, labels), 3),
            "best_accuracy": round(acc, 3),
            "best_threshold": round(t, 3),
        }
        if name == "combined + key terms":
            shipped_figures = at_threshold(values, labels, shipped.threshold)
            row.update({f"shipped_{k}": round(v, 3) for k, v in shipped_figures.items()})
        rows.append(row)
    misses = [
        {"kind": k, "label": y, "score": round(s, 3)}
        for k, y, s in zip(kinds, labels, scores["combined + key terms"], strict=True)
        if (s >= shipped.threshold) != y
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(
        args.out / "verify_support.json",
        {
            "cases": len(labels),
            "supported": sum(labels),
            "methods": rows,
            "shipped_threshold": shipped.threshold,
            "shipped_misses": misses,
        },
    )
    lines = [
        f"{len(labels)} labelled sentences ({sum(labels)} supported), {len(sets)} passage sets.",
        "",
        "| method | ROC AUC | best accuracy (threshold) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['auc']:.3f} | {r['best_accuracy']:.3f} ({r['best_threshold']:.2f}) |" for r in rows
    ]
    shipped_row = next(r for r in rows if r["method"] == "combined + key terms")
    lines += [
        "",
        f"Shipped (combined + key terms, threshold {shipped.threshold}): precision "
        f"{shipped_row['shipped_precision']:.3f}, recall {shipped_row['shipped_recall']:.3f}, accuracy "
        f"{shipped_row['shipped_accuracy']:.3f}; misses: {misses}",
    ]
    report = "\n".join(lines) + "\n"
    (args.out / "verify_support.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
