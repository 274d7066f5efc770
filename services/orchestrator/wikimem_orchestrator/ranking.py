"""The order of the passages after reranking: the cross-encoder's score plus a weight times the dense cosine.

The cross-encoder was trained on SQuAD and SciFact, whose questions reuse the passage's words; employees paraphrase.
The bi-encoder (all-MiniLM-L6-v2, trained on paraphrase pairs among a billion others) holds up better there, so the
two are added: `reranker logit + w x cosine(question, chunk)`. On the wiki-qa dev split (214 answerable questions,
retrieve 20, read 5) w = 30 put the answering chunk first 49 -> 78 times and among the 5 read 108 -> 133 times
(docs/benchmarks.md, "wiki-qa"); SciFact nDCG@10 with it is reported there too. w = 0 is the reranker's order alone.
A hit without a cosine (bm25 retrieval) is ranked by the reranker alone: then no hit gets the dense term.
Identifiers are exact: embeddings barely tell "QZ-7731-K" from "QZ-7713-K" (BM25 and the cross-encoder do), so a
passage naming every identifier the question names (tokens with a digit, answering.code_terms) counts with the
best cosine among the hits: the dense term cannot push it below twenty look-alikes.
"""

from __future__ import annotations

from collections.abc import Sequence

from wikimem_contract.v1 import common_pb2

from .answering import code_terms


def rank(
    hits: Sequence[common_pb2.ScoredChunk], rerank_scores: Sequence[float], dense_weight: float, question: str = ""
) -> tuple[list[common_pb2.ScoredChunk], list[float]]:
    """Hits best first, each with its ranking score (and its cosine kept), and the reranker's scores in that order.
    Ties keep the order the hits came in."""
    if len(hits) != len(rerank_scores):
        raise ValueError(f"{len(rerank_scores)} reranker scores for {len(hits)} hits")
    use_dense = dense_weight != 0.0 and all(h.HasField("dense_score") for h in hits)
    cosines = [h.dense_score for h in hits]
    codes = code_terms(question)
    if use_dense and codes:
        top = max(cosines)
        for i, h in enumerate(hits):
            if codes <= code_terms(f"{h.chunk.title} {h.chunk.heading} {h.chunk.text}"):
                cosines[i] = top
    combined = [
        s + dense_weight * c if use_dense else s for c, s in zip(cosines, rerank_scores, strict=True)
    ]
    order = sorted(range(len(hits)), key=lambda i: -combined[i])
    ranked = []
    for i in order:
        hit = common_pb2.ScoredChunk(chunk=hits[i].chunk, score=combined[i])
        if hits[i].HasField("dense_score"):
            hit.dense_score = hits[i].dense_score
        ranked.append(hit)
    return ranked, [float(rerank_scores[i]) for i in order]
