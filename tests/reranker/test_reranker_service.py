"""The reranker over gRPC with our trained cross-encoder (models/reranker): ranking, order, batching, errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from wikimem_common import server as wserver
from wikimem_common.modeldir import model_dir
from wikimem_contract.v1 import reranker_pb2, reranker_pb2_grpc
from wikimem_reranker.config import MODEL_DIR_ENV, RerankerConfig
from wikimem_reranker.server import registrar
from wikimem_reranker.service import Reranker

MODEL_DIR = model_dir("reranker", MODEL_DIR_ENV)

pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / "wikimem.json").is_file(),
    reason=f"no trained reranker at {MODEL_DIR}; train it (models/training) or set {MODEL_DIR_ENV}",
)

UNRELATED = [
    "The cafeteria serves vegetarian lasagna on Fridays.",
    "Expense reports are due on the fifth working day of each month.",
    "Kubernetes clusters are upgraded every quarter by the platform team.",
]


@pytest.fixture(scope="module")
def core() -> Iterator[Reranker]:
    reranker = Reranker(dataclasses.replace(RerankerConfig.from_env(MODEL_DIR), max_wait_ms=50.0))
    yield reranker
    reranker.close()


@pytest.fixture(scope="module")
def stub(core: Reranker) -> Iterator[reranker_pb2_grpc.RerankerStub]:
    handle = wserver.start(registrar(core), "127.0.0.1:0")
    channel = wserver.channel(handle.address)
    yield reranker_pb2_grpc.RerankerStub(channel)
    channel.close()
    handle.stop(grace=0)


def rerank(stub: reranker_pb2_grpc.RerankerStub, query: str, passages: list[str]) -> reranker_pb2.RerankResponse:
    return stub.Rerank(reranker_pb2.RerankRequest(query=query, passages=passages))


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        ("Where is the Eiffel Tower?", "The Eiffel Tower is located in Paris, on the Champ de Mars."),
        ("How many vacation days do employees get?", "Every employee receives 25 days of paid vacation per year."),
        ("Who do I contact when my laptop breaks?", "If your laptop is broken, open a ticket with the IT helpdesk."),
    ],
)
def test_answering_passage_ranks_first(stub: reranker_pb2_grpc.RerankerStub, query: str, answer: str) -> None:
    passages = [*UNRELATED[:2], answer, UNRELATED[2]]
    response = rerank(stub, query, passages)
    assert len(response.scores) == len(passages)
    assert response.order[0] == 2, list(zip(response.scores, passages, strict=True))
    assert sorted(response.order) == list(range(len(passages)))
    assert {"tokenize", "score", "total"} <= set(response.timings_ms)


def test_scores_follow_request_order(stub: reranker_pb2_grpc.RerankerStub) -> None:
    passages = ["The Eiffel Tower is located in Paris.", *UNRELATED]
    forward = rerank(stub, "Where is the Eiffel Tower?", passages)
    backward = rerank(stub, "Where is the Eiffel Tower?", passages[::-1])
    np.testing.assert_allclose(list(forward.scores), list(backward.scores)[::-1], atol=1e-4)
    assert [float(forward.scores[i]) for i in forward.order] == sorted(forward.scores, reverse=True)


def test_long_query_and_passage_are_truncated_not_rejected(stub: reranker_pb2_grpc.RerankerStub) -> None:
    response = rerank(stub, "where is the tower " * 200, ["The tower is in Paris. " * 500, "x"])
    assert len(response.scores) == 2
    assert all(np.isfinite(list(response.scores)))


def test_empty_passage_list_gives_empty_result(stub: reranker_pb2_grpc.RerankerStub) -> None:
    response = rerank(stub, "anything", [])
    assert list(response.scores) == [] and list(response.order) == []
    assert "total" in response.timings_ms


def test_concurrent_requests_are_batched_and_match_unbatched(
    stub: reranker_pb2_grpc.RerankerStub, core: Reranker
) -> None:
    requests = [(f"question {i} about vacation days", UNRELATED[: 1 + i % 3]) for i in range(8)]
    alone = [core.encoder.score(core.encoder.encode(q, p)) for q, p in requests]
    before = core.batcher.batches_run
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(lambda qp: rerank(stub, *qp), requests))
    batches = core.batcher.batches_run - before
    assert batches < len(requests), f"{batches} model runs for {len(requests)} concurrent requests"
    for got, expected in zip(results, alone, strict=True):
        np.testing.assert_allclose(list(got.scores), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("query", "passages", "fragment"),
    [
        ("", ["a"], "query must not be empty"),
        ("  ", ["a"], "query must not be empty"),
        ("q", ["p"] * 257, "257 passages in one request; the limit is 256"),
        ("q", ["ok", "x" * 100_001], "passages[1] is 100001 characters"),
    ],
)
def test_invalid_requests(stub: reranker_pb2_grpc.RerankerStub, query: str, passages: list[str], fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        rerank(stub, query, passages)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")
    assert len(rerank(stub, "still serving?", ["yes"]).scores) == 1


def test_parallel_rows_score_exactly_as_one_at_a_time() -> None:
    """WIKIMEM_RERANKER_PARALLEL runs pairs side by side on one thread each: the scores must not change."""
    from wikimem_reranker.scorer import CrossEncoder

    base = RerankerConfig.from_env(MODEL_DIR)
    passages = [*UNRELATED, "Paris is the capital of France.", "The Eiffel Tower is in Paris, France."] * 2
    sequential = CrossEncoder(dataclasses.replace(base, parallel=1))
    parallel = CrossEncoder(dataclasses.replace(base, parallel=2))
    try:
        pairs = sequential.encode("Where is the Eiffel Tower?", passages)
        one, two = sequential.score(pairs), parallel.score(pairs)
    finally:
        sequential.close()
        parallel.close()
    assert parallel._pool is not None and base.sub_batch == 1  # the int8 default: one pair per run
    np.testing.assert_allclose(two, one, atol=1e-4)
    assert int(np.argmax(two)) in (4, 9)
