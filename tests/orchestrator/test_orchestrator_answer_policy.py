"""The answer policy inside Ask / AskStream: the reader is asked for candidates with its threshold off, the pipeline
decides, and a stream never shows a span the pipeline then rejects."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_contract.v1 import rag_pb2
from wikimem_orchestrator.answering import READER_THRESHOLD_OFF
from wikimem_orchestrator.pipeline import ABSTAIN_ANSWER


def _orchestrator(
    make_orchestrator: Callable[..., Orchestrator],
    monkeypatch: pytest.MonkeyPatch,
    threshold: float,
    sentences: bool = False,
    sentence_threshold: float = 0.49,
) -> Orchestrator:
    monkeypatch.setenv("WIKIMEM_ANSWER_POLICY", "1")
    monkeypatch.setenv("WIKIMEM_ANSWER_SENTENCES", "1" if sentences else "0")
    monkeypatch.setenv("WIKIMEM_ANSWER_SENTENCE_THRESHOLD", str(sentence_threshold))
    monkeypatch.setenv("WIKIMEM_ANSWER_CANDIDATES", "7")
    monkeypatch.setenv("WIKIMEM_ANSWER_THRESHOLD", str(threshold))
    orch = make_orchestrator()
    orch.put("it/handbook.md", HANDBOOK)
    return orch


def _stream(orch: Orchestrator, question: str) -> tuple[list[str], rag_pb2.AskResponse]:
    events = list(orch.stub.AskStream(rag_pb2.AskStreamRequest(question=question), timeout=30))
    deltas = [e.delta for e in events if e.WhichOneof("event") == "delta"]
    assert events[-1].WhichOneof("event") == "result"
    return deltas, events[-1].result


def test_the_reader_is_asked_for_candidates_and_a_good_one_answers(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = _orchestrator(make_orchestrator, monkeypatch, threshold=1.0)
    reply = orch.ask(VPN_Q, no_cache=True)
    assert not reply.abstained and reply.answer == "VPN-42"
    options = peers.calls.last["read"].options
    assert options.max_answers == 7
    assert options.HasField("no_answer_threshold") and options.no_answer_threshold == READER_THRESHOLD_OFF
    deltas, result = _stream(orch, VPN_Q)
    assert deltas == ["VPN-42"] and result.answer == "VPN-42"


def test_below_the_pipeline_threshold_it_abstains_and_the_stream_shows_no_rejected_span(
    make_orchestrator: Callable[..., Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = _orchestrator(make_orchestrator, monkeypatch, threshold=1000.0)  # the fake reader scores 2.5
    reply = orch.ask(VPN_Q, no_cache=True)
    assert reply.abstained and reply.answer == ABSTAIN_ANSWER and not reply.citations
    assert "decision score" in reply.abstain_reason and "1000.00" in reply.abstain_reason
    deltas, result = _stream(orch, VPN_Q + " ")
    assert result.abstained and deltas == [ABSTAIN_ANSWER]


def test_policy_off_leaves_the_decision_to_the_reader(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WIKIMEM_ANSWER_POLICY", "0")
    orch = make_orchestrator()
    orch.put("it/handbook.md", HANDBOOK)
    assert orch.ask(VPN_Q).answer == "VPN-42"
    options = peers.calls.last["read"].options
    assert options.max_answers == 1 and not options.HasField("no_answer_threshold")


def test_sentence_first_embeds_the_sentences_read_with_their_title_and_answers_with_the_span_inside(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake embedder gives every text the same vector (cosine 1), so the reader's span decides the sentence.
    orch = _orchestrator(make_orchestrator, monkeypatch, threshold=1000.0, sentences=True)
    orch.put("it/handbook.md", HANDBOOK, title="IT handbook")
    reply = orch.ask(VPN_Q, no_cache=True)
    assert not reply.abstained and reply.answer == "VPN-42"
    assert reply.citations[0].quote == "The VPN profile is named VPN-42 and it needs the authenticator app."
    embedded = list(peers.calls.last["embed"].texts)  # the last Embed call: the sentences of the passages read
    assert "IT handbook: The VPN profile is named VPN-42 and it needs the authenticator app." in embedded
    assert "IT handbook: To reach the office network from home, connect to the VPN." in embedded
    deltas, result = _stream(orch, VPN_Q)
    assert deltas == ["VPN-42"] and result.answer == "VPN-42" and not result.abstained


def test_sentence_first_abstains_below_its_threshold(
    make_orchestrator: Callable[..., Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = _orchestrator(make_orchestrator, monkeypatch, threshold=-1000.0, sentences=True, sentence_threshold=5.0)
    reply = orch.ask(VPN_Q, no_cache=True)
    assert reply.abstained and not reply.citations and "< 5.00" in reply.abstain_reason


def test_sentences_that_cannot_be_embedded_leave_the_span_decision_with_a_warning(
    make_orchestrator: Callable[..., Orchestrator], peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers.embedder.fail_batches = True
    orch = _orchestrator(make_orchestrator, monkeypatch, threshold=1.0, sentences=True, sentence_threshold=5.0)
    reply = orch.ask(VPN_Q, no_cache=True)
    assert not reply.abstained and reply.answer == "VPN-42"  # the span decision (threshold 1.0), not 5.0
    assert any("sentences not scored" in w and "batches refused" in w for w in reply.warnings)
