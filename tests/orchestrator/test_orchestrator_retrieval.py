"""The retrieval mode through the orchestrator: AskOptions.retrieval or WIKIMEM_RETRIEVAL_MODE goes to memory with
the question text, is reported in the answer, is part of the answer cache key, and unknown values are rejected."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem.v1 import common_pb2, memory_pb2

DENSE, BM25, HYBRID = common_pb2.RETRIEVAL_MODE_DENSE, common_pb2.RETRIEVAL_MODE_BM25, common_pb2.RETRIEVAL_MODE_HYBRID


def last_search(peers: Peers) -> memory_pb2.SearchRequest:
    request = peers.calls.last["search"]
    assert isinstance(request, memory_pb2.SearchRequest)
    return request


def test_the_mode_and_the_question_go_to_memory(make_orchestrator: Callable[..., Orchestrator], peers: Peers) -> None:
    orch = make_orchestrator()  # default WIKIMEM_RETRIEVAL_MODE: hybrid
    orch.put("it/handbook.md", HANDBOOK)
    assert orch.ask(VPN_Q).answer == "VPN-42"
    assert last_search(peers).mode == HYBRID and last_search(peers).query_text == VPN_Q
    orch.ask(VPN_Q, retrieval=BM25)
    assert last_search(peers).mode == BM25
    dense_by_default = make_orchestrator(retrieval_mode="dense")
    dense_by_default.ask(VPN_Q, no_cache=True)
    assert last_search(peers).mode == DENSE
    dense_by_default.ask(VPN_Q, no_cache=True, retrieval=HYBRID)
    assert last_search(peers).mode == HYBRID


def test_the_mode_is_part_of_the_cache_key(orch: Orchestrator, peers: Peers) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    assert not orch.ask(VPN_Q, retrieval=DENSE).cached
    assert orch.ask(VPN_Q, retrieval=DENSE).cached
    searches = peers.calls["search"]
    assert not orch.ask(VPN_Q, retrieval=BM25).cached and peers.calls["search"] == searches + 1
    assert orch.ask(VPN_Q, retrieval=BM25).cached


def test_an_unknown_mode_is_invalid(orch: Orchestrator) -> None:
    with pytest.raises(grpc.RpcError) as info:
        orch.ask(VPN_Q, retrieval=7)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.retrieval" in (info.value.details() or "")
