"""Orchestrator under test, wired to in-process fake peers (see orchestrator_fakes.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from orchestrator_fakes import Orchestrator, Peers, start_peers

from wikimem_common.server import start
from wikimem_orchestrator.config import OrchestratorConfig
from wikimem_orchestrator.server import build


@pytest.fixture
def peers() -> Iterator[Peers]:
    fakes = start_peers()
    try:
        yield fakes
    finally:
        fakes.stop_all()


def peer_config(peers: Peers, **overrides: Any) -> OrchestratorConfig:
    config = OrchestratorConfig(
        embedder_addr=peers.address("embedder"),
        memory_addr=peers.address("memory"),
        reranker_addr=peers.address("reranker"),
        reader_addr=peers.address("reader"),
        peer_timeout_s=5.0,
        rerank_timeout_s=5.0,
        # The fake embedder gives every text the same vector: the QA memory is tested with real models (tests/e2e).
        qa_memory=False,
        # No background Embed calls after writes (they would race the calls tests count); the warming tests turn
        # it on (test_orchestrator_sentence_warming.py).
        sentence_warm_queue=0,
    )
    return dataclasses.replace(config, **overrides)


@pytest.fixture(autouse=True)
def _span_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake embedder gives every text the same vector, so sentence first would choose by the reader's span
    alone; these tests take the span decision, and the sentence tests switch sentence first on themselves."""
    monkeypatch.setenv("WIKIMEM_ANSWER_SENTENCES", "0")


@pytest.fixture
def make_orchestrator(peers: Peers) -> Iterator[Callable[..., Orchestrator]]:
    """make_orchestrator(**config overrides) -> a started orchestrator (stopped after the test)."""
    started: list[Orchestrator] = []

    def make(**overrides: Any) -> Orchestrator:
        register, close = build(peer_config(peers, **overrides))
        orchestrator = Orchestrator(start(register, "127.0.0.1:0", max_workers=4), close)
        started.append(orchestrator)
        return orchestrator

    yield make
    for orchestrator in started:
        orchestrator.stop()


@pytest.fixture
def orch(make_orchestrator: Callable[..., Orchestrator]) -> Orchestrator:
    """Default configuration: in-process cache."""
    return make_orchestrator()
