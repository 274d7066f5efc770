"""Fusing the dense and the BM25 ranking of a hybrid search into one.

`convex` (the default): each list's scores are min-max normalised over the candidates it returned (the dense list
from its lowest to its highest cosine; BM25, whose scores start at 0, by its highest score), a chunk missing from a
list counts 0 there, and the fused score is `w * dense + (1 - w) * bm25` (Bruch et al. 2023, "An analysis of fusion
functions for hybrid retrieval": a tuned convex combination beats RRF and needs little data to tune). `w` = 0.3 was
chosen first on training data (SciFact train queries; SQuAD questions of the training articles), whose optimum is
broad (0.2-0.5 within 0.005 on SciFact train). `w` = 0.5 is the default since the wiki-qa dev split (paraphrased
employee questions) showed dense matters more there: with the Ask's reranker + dense order, the passage with the
answer is among the 5 read for 154 instead of 133 of 214 dev questions, while SciFact test hybrid + rerank stays at
0.734 (0.737 at 0.3); figures in docs/architecture.md ("Retrieval") and docs/benchmarks.md ("wiki-qa").
`rrf`: reciprocal-rank fusion, `sum 1 / (k + rank)` over the lists (Cormack et al. 2009), k = 60.

Both take and return (key, score) pairs, best first; ties keep the order of first appearance (dense list first).
"""

from __future__ import annotations

from collections.abc import Sequence

FUSIONS = ("convex", "rrf")

Ranked = Sequence[tuple[str, float]]


def _first_seen(dense: Ranked, sparse: Ranked) -> list[str]:
    return list(dict.fromkeys([key for key, _ in dense] + [key for key, _ in sparse]))


def convex(dense: Ranked, sparse: Ranked, dense_weight: float) -> list[tuple[str, float]]:
    fused = dict.fromkeys(_first_seen(dense, sparse), 0.0)
    if dense:
        high, low = max(s for _, s in dense), min(s for _, s in dense)
        span = high - low
        for key, score in dense:
            fused[key] += dense_weight * ((score - low) / span if span > 0 else 1.0)
    if sparse:
        high = max(s for _, s in sparse)
        for key, score in sparse:
            fused[key] += (1.0 - dense_weight) * (score / high if high > 0 else 0.0)
    return sorted(fused.items(), key=lambda item: -item[1])


def reciprocal_rank(dense: Ranked, sparse: Ranked, k: int) -> list[tuple[str, float]]:
    fused = dict.fromkeys(_first_seen(dense, sparse), 0.0)
    for ranked in (dense, sparse):
        for rank, (key, _) in enumerate(ranked, start=1):
            fused[key] += 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])
