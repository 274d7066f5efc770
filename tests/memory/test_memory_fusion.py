"""The two fusions of a hybrid search, on hand-made rankings (the service-level behaviour is in
test_memory_retrieval_modes.py)."""

from __future__ import annotations

import pytest

from wikimem_memory.fusion import convex, reciprocal_rank


def test_convex_normalises_each_list_and_weights_them() -> None:
    dense = [("a", 0.9), ("b", 0.7), ("c", 0.5)]  # -> 1.0, 0.5, 0.0
    sparse = [("c", 12.0), ("d", 6.0)]  # -> 1.0, 0.5
    fused = dict(convex(dense, sparse, dense_weight=0.3))
    assert fused == pytest.approx({"a": 0.3, "b": 0.15, "c": 0.7, "d": 0.35})
    assert [k for k, _ in convex(dense, sparse, 0.3)] == ["c", "d", "a", "b"]
    # Weight 1: dense order only; 0: BM25 order, then what only dense found (0), in dense order.
    assert [k for k, _ in convex(dense, sparse, 1.0)][:2] == ["a", "b"]
    assert [k for k, _ in convex(dense, sparse, 0.0)] == ["c", "d", "a", "b"]


def test_convex_copes_with_empty_and_flat_lists() -> None:
    assert convex([], [], 0.3) == []
    assert convex([("a", 0.4)], [], 0.3) == [("a", pytest.approx(0.3))]  # one score: normalised to 1
    assert convex([], [("x", 2.0), ("y", 1.0)], 0.3) == [("x", pytest.approx(0.7)), ("y", pytest.approx(0.35))]
    # Equal fused scores keep the order of first appearance, dense first.
    assert [k for k, _ in convex([("a", 1.0), ("b", 0.0)], [("b", 1.0), ("a", 0.0)], 0.5)] == ["a", "b"]


def test_reciprocal_rank_sums_one_over_k_plus_rank() -> None:
    fused = reciprocal_rank([("a", 0.9), ("b", 0.8)], [("b", 3.0), ("c", 1.0)], k=60)
    assert [k for k, _ in fused] == ["b", "a", "c"]
    assert dict(fused) == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})
