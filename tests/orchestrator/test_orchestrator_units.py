"""Quote selection, group parsing, configuration, and the `python -m wikimem_orchestrator` entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from orchestrator_fakes import HANDBOOK, VPN_Q, Peers

from wikimem_common.config import ConfigError
from wikimem_common.errors import ServiceError
from wikimem_contract.v1 import common_pb2, rag_pb2, rag_pb2_grpc, reader_pb2
from wikimem_orchestrator.citations import build_citation, quote_span
from wikimem_orchestrator.config import OrchestratorConfig
from wikimem_orchestrator.pipeline import parse_groups, rerank_text


@pytest.mark.parametrize(
    ("text", "answer", "quote"),
    [
        ("One. The code is AB-1 here. Three.", "AB-1", "The code is AB-1 here."),
        ("Intro\n- step: use AB-1\n- next", "AB-1", "- step: use AB-1"),
        ("AB-1 starts it. Then more.", "AB-1", "AB-1 starts it."),
        ("Ends with AB-1", "AB-1", "Ends with AB-1"),
        ("Is it AB-1? Yes! Ok.", "AB-1", "Is it AB-1?"),
    ],
)
def test_quote_is_the_sentence_around_the_answer(text: str, answer: str, quote: str) -> None:
    start = text.index(answer)
    qs, qe = quote_span(text, start, start + len(answer))
    assert text[qs:qe] == quote


def test_long_sentences_give_a_window_around_the_answer() -> None:
    text = "word " * 200 + "ANSWER-1 " + "word " * 200
    start = text.index("ANSWER-1")
    qs, qe = quote_span(text, start, start + 8, max_chars=100)
    assert qs <= start and start + 8 <= qe and qe - qs <= 100 and qs > 0 and qe < len(text)


def test_citation_offsets_shift_by_the_chunk_start() -> None:
    doc = "Heading\n\nFirst. The VPN is VPN-42 now. Last."
    chunk_start = doc.index("First")
    chunk = common_pb2.Chunk(chunk_id="d@3#1", doc_id="d", revision=3, start=chunk_start, end=len(doc),
                             text=doc[chunk_start:])
    local = chunk.text.index("VPN-42")
    cite = build_citation(chunk, reader_pb2.ReadAnswer(text="VPN-42", start=local, end=local + 6, score=1.0))
    assert doc[cite.start : cite.end] == cite.quote == "The VPN is VPN-42 now."
    assert doc[cite.answer_start : cite.answer_end] == "VPN-42"
    with pytest.raises(ServiceError, match="reader returned the span"):
        build_citation(chunk, reader_pb2.ReadAnswer(start=5, end=500))


def test_parse_groups_and_rerank_text() -> None:
    assert parse_groups(" eng, hr,,eng ") == ("eng", "hr")
    assert parse_groups(None) == () and parse_groups("") == ()
    chunk = common_pb2.Chunk(title="IT", heading="IT > VPN", text="Use VPN-42.")
    assert rerank_text(chunk, True) == "IT > VPN. Use VPN-42."
    assert rerank_text(common_pb2.Chunk(title="IT", heading="VPN", text="t"), True) == "IT > VPN. t"
    assert rerank_text(common_pb2.Chunk(title="IT", text="t"), True) == "IT. t"
    assert rerank_text(chunk, False) == "Use VPN-42."
    assert rerank_text(common_pb2.Chunk(text="x"), True) == "x"


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_MEMORY_ADDR", "10.0.0.5:7000")
    monkeypatch.setenv("WIKIMEM_PEER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    config = OrchestratorConfig.from_env()
    assert config.memory_addr == "10.0.0.5:7000" and config.peer_timeout_s == 2.5 == config.rerank_timeout_s
    assert config.redis_url == "redis://cache:6379/1" and config.retrieve_k == 20 and config.read_k == 5
    monkeypatch.setenv("WIKIMEM_READ_K", "30")
    with pytest.raises(ConfigError, match="WIKIMEM_READ_K"):
        OrchestratorConfig.from_env()
    monkeypatch.delenv("WIKIMEM_READ_K")
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        OrchestratorConfig.from_env()


def test_module_entry_point_serves(peers: Peers, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {
        **os.environ,
        "WIKIMEM_EMBEDDER_ADDR": peers.address("embedder"),
        "WIKIMEM_MEMORY_ADDR": peers.address("memory"),
        "WIKIMEM_RERANKER_ADDR": peers.address("reranker"),
        "WIKIMEM_READER_ADDR": peers.address("reader"),
        "WIKIMEM_LOG_FORMAT": "text",
    }
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wikimem_orchestrator", "--addr", "127.0.0.1:0", "--port-file", str(port_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the orchestrator did not write its port file"
            time.sleep(0.05)
        with grpc.insecure_channel(port_file.read_text()) as channel:
            stub = rag_pb2_grpc.RagStub(channel)
            stub.PutDocument(rag_pb2.PutDocumentRequest(doc_id="it/handbook.md", text=HANDBOOK), timeout=10)
            assert stub.Ask(rag_pb2.AskRequest(question=VPN_Q), timeout=10).answer == "VPN-42"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_quote_spans_hard_wrapped_sentences_but_stops_at_list_items() -> None:
    from wikimem_orchestrator.citations import quote_span

    sentence = "Full-time employees get 27 days of paid vacation per year, in addition to the\npublic holidays."
    text = f"Intro line.\n{sentence}\n- next item"
    start = text.index("27")
    qs, qe = quote_span(text, start, start + 2)
    assert text[qs:qe] == sentence
    item = text.index("next")
    qs, qe = quote_span(text, item, item + 4)
    assert text[qs:qe] == "- next item"
