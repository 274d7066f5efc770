"""The retrieval mode through the orchestrator: AskOptions.retrieval or WIKIMEM_RETRIEVAL_MODE goes to memory with
the question text, is reported in the answer, is part of the answer cache key, and unknown values are rejected. The
embedder's model id goes with the query vector, and memory's refusal of another model reaches the caller."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_common.errors import FailedPrecondition
from wikimem_contract.v1 import common_pb2, memory_pb2

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


def test_the_embedding_model_goes_to_memory(make_orchestrator: Callable[..., Orchestrator], peers: Peers) -> None:
    orch = make_orchestrator()
    orch.put("it/handbook.md", HANDBOOK)
    peers.embedder.model_id = "fake-embedder"  # as its Info says
    orch.ask(VPN_Q)
    assert peers.calls["embed"] == 1 and last_search(peers).embedding_model == "fake-embedder"
    orch.ask(VPN_Q, no_cache=True)  # the embedding from the cache: the model of its cache key
    assert peers.calls["embed"] == 1 and last_search(peers).embedding_model == "fake-embedder"
    # The embedder now serves another model (its Info, read a moment ago, is trusted for a minute): memory gets
    # the model that made the vector, and the vector is not cached under the old model's key.
    peers.embedder.model_id = "fake-embedder-2"
    for embeds in (2, 3):
        orch.ask("Where are expenses filed?", no_cache=True)
        assert peers.calls["embed"] == embeds and last_search(peers).embedding_model == "fake-embedder-2"
    peers.embedder.model_id = ""  # an embedder that does not say: its Info does
    orch.ask("Who sets up laptops?")
    assert peers.calls["embed"] == 4 and last_search(peers).embedding_model == "fake-embedder"
    uncached = make_orchestrator(cache=False)  # no Info asked, nothing said: not checked
    uncached.ask("Who sets up laptops?")
    assert peers.calls["embed"] == 5 and last_search(peers).embedding_model == ""

    message = "this memory at /data/memory holds vectors of model 'a', the query was embedded by 'b': run ..."
    peers.memory.fail["search"] = FailedPrecondition(message)
    with pytest.raises(grpc.RpcError) as info:
        orch.ask("Which approval code does travel need?")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and info.value.details() == message
