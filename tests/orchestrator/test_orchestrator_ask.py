"""Ask / AskStream: citations in document coordinates, abstaining, validation, degradation and error mapping."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_common import errors
from wikimem_contract.v1 import rag_pb2
from wikimem_orchestrator.pipeline import ABSTAIN_ANSWER


def _status(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_answer_cites_exact_span_of_the_document(orch: Orchestrator, peers: Peers) -> None:
    put = orch.put("it/handbook.md", HANDBOOK, title="IT handbook", source="wiki/it/handbook.md")
    assert put.changed and put.document.revision == 1

    reply = orch.ask(VPN_Q)
    assert not reply.abstained and not reply.cached and reply.reranked
    assert reply.answer == "VPN-42"
    [cite] = reply.citations
    assert (cite.doc_id, cite.revision, cite.title, cite.source) == (
        "it/handbook.md", 1, "IT handbook", "wiki/it/handbook.md"
    )
    assert cite.chunk_id == "it/handbook.md@1#1"
    assert HANDBOOK[cite.start : cite.end] == cite.quote
    assert cite.quote == "The VPN profile is named VPN-42 and it needs the authenticator app."
    assert HANDBOOK[cite.answer_start : cite.answer_end] == "VPN-42"
    assert cite.start <= cite.answer_start < cite.answer_end <= cite.end
    assert cite.score == pytest.approx(2.5)
    assert reply.generation == 1
    assert {"cache", "embed", "search", "rerank", "read", "total"} <= set(reply.timings_ms)
    # the reader saw the reranked passages, at most read_k of them, with titles
    read = peers.calls.last["read"]
    assert 1 <= len(read.passages) <= 5 and read.passages[0].title == "IT handbook"
    # the reranker saw title context in front of the chunk text
    assert peers.calls.last["rerank"].passages[0].startswith("IT handbook. ")


def test_search_uses_retrieve_k_collection_and_caller_groups(orch: Orchestrator, peers: Peers) -> None:
    orch.put("hr/pay.md", "Payroll runs monthly. Payslip code PAY-9 is on the portal.", collection="hr",
             acl=["hr"])
    reply = orch.ask("Where is the payslip code?", groups="eng, hr ,,eng", collection="hr", retrieve_k=7, read_k=2,
                     include_passages=True)
    assert reply.answer == "PAY-9"
    search = peers.calls.last["search"]
    assert search.top_k == 7
    assert search.filter.collection == "hr"
    assert list(search.filter.groups) == ["eng", "hr"]
    assert search.query_text == "Where is the payslip code?"
    assert [p.chunk.doc_id for p in reply.passages] == ["hr/pay.md"]

    # without the group the document is invisible: abstain, nothing read
    reads = peers.calls["read"]
    hidden = orch.ask("Where is the payslip code?", groups="eng", collection="hr")
    assert hidden.abstained and hidden.answer == ABSTAIN_ANSWER and not hidden.citations
    assert "nothing in collection 'hr'" in hidden.abstain_reason
    assert peers.calls["read"] == reads


def test_reader_abstains(orch: Orchestrator) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    reply = orch.ask("When are laptops issued?")
    assert reply.abstained and reply.answer == ABSTAIN_ANSWER and not reply.citations
    assert "no supported answer" in reply.abstain_reason


def test_question_validation(orch: Orchestrator) -> None:
    for question in ("", "   \n\t"):
        err = _status(lambda: orch.ask(question))  # noqa: B023 - called at once
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "question must not be empty" in err.details()
    err = _status(lambda: orch.ask("x" * 2001))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is 2000" in err.details()
    err = _status(lambda: orch.ask("vpn?", retrieve_k=3, read_k=4))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "read_k (4)" in err.details()


@pytest.mark.parametrize("peer", ["embedder", "memory", "reader"])
def test_required_peer_down_is_unavailable_naming_it(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers, peer: str
) -> None:
    orch = make_orchestrator(cache=False)
    orch.put("it/handbook.md", HANDBOOK)
    address = peers.address(peer)
    peers.stop(peer)
    err = _status(lambda: orch.ask(VPN_Q))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details().startswith(f"{peer} service at {address} is unavailable")


def test_memory_down_with_cache_is_unavailable(orch: Orchestrator, peers: Peers) -> None:
    address = peers.address("memory")
    peers.stop("memory")
    err = _status(lambda: orch.ask(VPN_Q))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and f"memory service at {address}" in err.details()
    err = _status(lambda: orch.put("a", "text"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and f"memory service at {address}" in err.details()


def test_reranker_down_fails_the_ask_by_default(orch: Orchestrator, peers: Peers) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    address = peers.address("reranker")
    peers.stop("reranker")
    err = _status(lambda: orch.ask(VPN_Q))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert f"reranker service at {address}" in err.details() and "WIKIMEM_ON_RERANK_OVERLOAD=fail" in err.details()


def test_reranker_down_degrades_to_vector_order_by_policy(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers
) -> None:
    orch = make_orchestrator(on_rerank_overload="degrade")
    orch.put("it/handbook.md", HANDBOOK)
    address = peers.address("reranker")
    peers.stop("reranker")
    reply = orch.ask(VPN_Q)
    assert reply.answer == "VPN-42" and not reply.abstained
    assert reply.reranked is False
    assert len(reply.warnings) == 1 and "reranker unavailable" in reply.warnings[0] and address in reply.warnings[0]
    assert "degraded answer, WIKIMEM_ON_RERANK_OVERLOAD=degrade" in reply.warnings[0]
    # a degraded answer is not cached: the next one is computed again
    again = orch.ask(VPN_Q)
    assert not again.cached and not again.reranked


def test_reranker_order_decides_what_is_read(orch: Orchestrator, peers: Peers) -> None:
    text = "\n\n".join(f"Note {i}: the printer code is PRN-{i}." for i in range(6))
    orch.put("it/printers.md", text)
    peers.reranker.reverse = True  # prefers the passage vector order ranked last
    reply = orch.ask("Which printer code?", retrieve_k=6, read_k=1, no_cache=True, include_passages=True)
    last_in_vector_order = peers.calls.last["rerank"].passages[-1]
    assert reply.citations[0].quote in last_in_vector_order
    assert reply.passages[0].score == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "query vector has dim 4; the collection expects 384"),
        (grpc.StatusCode.FAILED_PRECONDITION, "collection 'x' is being migrated"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many concurrent searches"),
    ],
)
def test_peer_error_codes_pass_through(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers, code: grpc.StatusCode, message: str
) -> None:
    orch = make_orchestrator(cache=False)
    error = {
        grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
        grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
        grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    }[code]
    peers.memory.fail["search"] = error(message)
    err = _status(lambda: orch.ask(VPN_Q))
    assert err.code() == code and err.details() == message


def test_invalid_reader_span_is_an_internal_error(orch: Orchestrator, peers: Peers) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    peers.reader.bad_span = True
    err = _status(lambda: orch.ask(VPN_Q))
    assert err.code() == grpc.StatusCode.INTERNAL and "reader returned the span" in err.details()


def test_ask_stream_deltas_then_result(orch: Orchestrator) -> None:
    orch.put("it/handbook.md", HANDBOOK)
    request = rag_pb2.AskStreamRequest(question=VPN_Q)
    events = list(orch.stub.AskStream(request, timeout=30))
    deltas = [e.delta for e in events if e.WhichOneof("event") == "delta"]
    results = [e.result for e in events if e.WhichOneof("event") == "result"]
    assert deltas and "".join(deltas) == "VPN-42"
    assert events[-1].WhichOneof("event") == "result" and len(results) == 1
    assert results[0].answer == "VPN-42" and not results[0].cached and results[0].citations

    # the same question again: a cache hit streams as one delta + the final response
    events = list(orch.stub.AskStream(request, timeout=30))
    assert [e.WhichOneof("event") for e in events] == ["delta", "result"]
    assert events[0].delta == "VPN-42" and events[1].result.cached

    # abstentions stream the abstain message as one delta
    events = list(orch.stub.AskStream(rag_pb2.AskStreamRequest(question="When are laptops issued?"), timeout=30))
    assert events[0].delta == ABSTAIN_ANSWER and events[1].result.abstained


def test_ask_stream_errors(orch: Orchestrator, peers: Peers) -> None:
    err = _status(lambda: list(orch.stub.AskStream(rag_pb2.AskStreamRequest(question=" "), timeout=30)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    orch.put("it/handbook.md", HANDBOOK)
    peers.stop("reader")
    request = rag_pb2.AskStreamRequest(question=VPN_Q)
    err = _status(lambda: list(orch.stub.AskStream(request, timeout=30)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and err.details().startswith("reader service at")
