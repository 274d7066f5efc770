"""Overload: the reranker policy (fail by default, degrade by choice, never silent), the caller's deadline passed on
to peers, and the per-caller rate limit of generative reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers
from prometheus_client import REGISTRY

from wikimem_common.errors import DeadlineExceeded
from wikimem_common.server import ServerHandle, start
from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, reranker_pb2, reranker_pb2_grpc
from wikimem_orchestrator.pipeline import Deadline


class TroubledReranker(reranker_pb2_grpc.RerankerServicer):
    """A reranker that is overloaded (RESOURCE_EXHAUSTED with a retry hint) or slow (`delay_s`), recording the
    deadline each call arrived with."""

    def __init__(self) -> None:
        self.overloaded = True
        self.delay_s = 0.0
        self.deadlines: list[float | None] = []

    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        self.deadlines.append(context.time_remaining())
        if self.overloaded:
            context.set_trailing_metadata(((metadata.RETRY_AFTER_MS, "1500"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "reranker is at capacity (8 calls running, 16 queued)")
        time.sleep(self.delay_s)
        n = len(request.passages)
        return reranker_pb2.RerankResponse(scores=[0.0] * n, order=list(range(n)))


@pytest.fixture
def troubled() -> Iterator[tuple[TroubledReranker, ServerHandle]]:
    servicer = TroubledReranker()

    def register(server: grpc.Server) -> list[str]:
        reranker_pb2_grpc.add_RerankerServicer_to_server(servicer, server)
        return ["wikimem.v1.Reranker"]

    handle = start(register, "127.0.0.1:0", max_workers=4)
    try:
        yield servicer, handle
    finally:
        handle.stop(grace=0)


def _failures(reason: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("wikimem_rerank_failures_total", {"reason": reason, "outcome": outcome}) or 0.0


def _status(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_overloaded_reranker_fails_the_ask_with_its_retry_hint(
    make_orchestrator: Callable[..., Orchestrator], troubled: tuple[TroubledReranker, ServerHandle]
) -> None:
    _, handle = troubled
    orch = make_orchestrator(reranker_addr=handle.address)
    orch.put("it/handbook.md", HANDBOOK)
    before = _failures("overloaded", "failed")
    err = _status(lambda: orch.ask(VPN_Q))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "reranker overloaded" in err.details() and "WIKIMEM_ON_RERANK_OVERLOAD=fail" in err.details()
    assert dict(err.trailing_metadata() or ())[metadata.RETRY_AFTER_MS] == "1500"
    assert _failures("overloaded", "failed") == before + 1


def test_overloaded_reranker_degrades_visibly_by_policy(
    make_orchestrator: Callable[..., Orchestrator], troubled: tuple[TroubledReranker, ServerHandle]
) -> None:
    _, handle = troubled
    orch = make_orchestrator(reranker_addr=handle.address, on_rerank_overload="degrade")
    orch.put("it/handbook.md", HANDBOOK)
    before = _failures("overloaded", "degraded")
    reply = orch.ask(VPN_Q)
    assert reply.answer == "VPN-42" and reply.reranked is False
    assert [w for w in reply.warnings if "reranker overloaded" in w and "degraded answer" in w]
    assert _failures("overloaded", "degraded") == before + 1
    assert not orch.ask(VPN_Q).cached  # a degraded answer is never cached


def test_callers_deadline_bounds_the_rerank_and_fails_fast(
    make_orchestrator: Callable[..., Orchestrator], troubled: tuple[TroubledReranker, ServerHandle]
) -> None:
    servicer, handle = troubled
    servicer.overloaded, servicer.delay_s = False, 12.0
    orch = make_orchestrator(reranker_addr=handle.address, rerank_timeout_s=30.0, peer_timeout_s=30.0)
    orch.put("it/handbook.md", HANDBOOK)
    request = rag_pb2.AskRequest(question=VPN_Q, options=rag_pb2.AskOptions(no_cache=True))
    started = time.monotonic()
    err = _status(lambda: orch.stub.Ask(request, timeout=4.0))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 8.0  # the caller's 4 s, not the 30 s rerank timeout nor the 12 s rerank
    # the reranker was told the time left of the caller's deadline, not the orchestrator's 30 s
    assert servicer.deadlines and servicer.deadlines[-1] is not None and servicer.deadlines[-1] < 5.0


def test_deadline_gives_each_peer_call_the_time_left_and_refuses_when_none_is() -> None:
    assert Deadline(None).timeout(5.0) == 5.0
    assert 1.5 < Deadline(2.0).timeout(5.0) <= 2.0
    assert Deadline(30.0).timeout(5.0) == 5.0
    with pytest.raises(DeadlineExceeded, match="deadline expired"):
        Deadline(0.001).timeout(5.0)


def test_generative_reads_are_rate_limited_per_caller(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers
) -> None:
    orch = make_orchestrator(llm_rate_per_s=1 / 60, llm_burst=2)
    orch.put("it/handbook.md", "The VPN client is TunnelKit. Request access from IT.")
    peers.reader.generate = "The VPN client is TunnelKit."
    for _ in range(2):
        assert orch.ask("Which VPN client?", reader="fake-llm", no_cache=True).answer
    err = _status(lambda: orch.ask("Which VPN client?", reader="fake-llm", no_cache=True))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "anonymous:" in err.details() and "WIKIMEM_LLM_RATE" in err.details()
    retry_ms = int(dict(err.trailing_metadata() or ())[metadata.RETRY_AFTER_MS])
    assert 55_000 <= retry_ms <= 60_000  # one token a minute
    # another caller has its own bucket; the extractive reader is not limited
    assert orch.ask("Which VPN client?", groups="eng", reader="fake-llm", no_cache=True).answer
    peers.reader.generate = None
    assert orch.ask("Which VPN client?", no_cache=True).answer
