"""ranking.rank: the order Rag.Ask reads passages in (reranker score + weight x dense cosine)."""

from __future__ import annotations

import pytest

from wikimem_contract.v1 import common_pb2
from wikimem_orchestrator.config import OrchestratorConfig
from wikimem_orchestrator.ranking import rank


def hit(chunk_id: str, cosine: float | None, text: str = "") -> common_pb2.ScoredChunk:
    h = common_pb2.ScoredChunk(chunk=common_pb2.Chunk(chunk_id=chunk_id, text=text), score=0.5)
    if cosine is not None:
        h.dense_score = cosine
    return h


def test_the_cosine_can_overturn_a_small_reranker_margin_but_not_a_large_one() -> None:
    # "paraphrase": the reranker prefers the look-alike by 2 logits, the bi-encoder the answer by 0.2 cosine.
    hits = [hit("lookalike", 0.35), hit("answer", 0.55), hit("far", 0.10)]
    ranked, logits = rank(hits, [3.0, 1.0, 12.0], dense_weight=30.0)
    # 1 + 16.5 = 17.5 > 12 + 3 = 15 > 3 + 10.5 = 13.5: a reranker lead of 9 still beats 0.45 of cosine.
    assert [h.chunk.chunk_id for h in ranked] == ["answer", "far", "lookalike"]
    assert [h.score for h in ranked] == pytest.approx([17.5, 15.0, 13.5])
    assert logits == [1.0, 12.0, 3.0]  # the reranker's own scores travel with their passages
    assert ranked[0].dense_score == pytest.approx(0.55)


def test_weight_zero_or_a_missing_cosine_leaves_the_reranker_order() -> None:
    hits = [hit("a", 0.9), hit("b", 0.1)]
    assert [h.chunk.chunk_id for h in rank(hits, [1.0, 2.0], 0.0)[0]] == ["b", "a"]
    assert [h.chunk.chunk_id for h in rank(hits, [1.0, 2.0], 30.0)[0]] == ["a", "b"]
    bm25 = [hit("a", None), hit("b", 0.1)]  # one hit without a cosine: no hit gets the dense term
    ranked, _ = rank(bm25, [1.0, 2.0], 30.0)
    assert [h.chunk.chunk_id for h in ranked] == ["b", "a"] and [h.score for h in ranked] == [2.0, 1.0]
    assert not ranked[1].HasField("dense_score")
    with pytest.raises(ValueError, match="1 reranker scores for 2 hits"):
        rank(hits, [1.0], 30.0)


def test_the_weight_is_configured_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_MEMORY_ADDR", "m:1")
    assert OrchestratorConfig.from_env().rerank_dense_weight == 30.0
    monkeypatch.setenv("WIKIMEM_RERANK_DENSE_WEIGHT", "0")
    assert OrchestratorConfig.from_env().rerank_dense_weight == 0.0
    for bad in ("-1", "nan"):
        monkeypatch.setenv("WIKIMEM_RERANK_DENSE_WEIGHT", bad)
        with pytest.raises(Exception, match="WIKIMEM_RERANK_DENSE_WEIGHT"):
            OrchestratorConfig.from_env()


def test_a_passage_naming_the_asked_identifier_is_not_pushed_down_by_the_cosine() -> None:
    question = "Where is QZ-7731-K kept?"
    hits = [
        hit("shelf", 0.52, "The belt (part QZ-7713-K) is kept on shelf 3."),
        hit("moves", 0.37, "The spare key, tag QZ-7731-K, hangs in the facilities office."),
    ]
    ranked, _ = rank(hits, [4.0, 5.0], 30.0, question)
    assert [h.chunk.chunk_id for h in ranked] == ["moves", "shelf"]  # 5 + 30 x 0.52 > 4 + 30 x 0.52
    assert ranked[0].dense_score == pytest.approx(0.37)  # the reported cosine stays its own
    assert [h.chunk.chunk_id for h in rank(hits, [4.0, 5.0], 30.0)[0]] == ["shelf", "moves"]  # no code asked
