"""A peer going down: UNAVAILABLE naming the peer; the reranker degrades to vector order only by policy
(WIKIMEM_ON_RERANK_OVERLOAD=degrade)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wikimem.client import WikimemClient
from wikimem.errors import UnavailableError

from .conftest import EXAMPLES, put_folder
from .system import System, start_system

QUESTION = "What is the VPN client called?"


@pytest.fixture
def small_system(tmp_path: Path) -> Iterator[System]:
    running = start_system(tmp_path / "data")  # in-process cache: REDIS_URL unset
    try:
        with WikimemClient(running.address) as client:
            put_folder(client, EXAMPLES)
        yield running
    finally:
        running.close()


@pytest.fixture
def degrading_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[System]:
    monkeypatch.setenv("WIKIMEM_ON_RERANK_OVERLOAD", "degrade")
    running = start_system(tmp_path / "data")
    try:
        with WikimemClient(running.address) as client:
            put_folder(client, EXAMPLES)
        yield running
    finally:
        running.close()


def test_reranker_down_degrades_to_vector_order_by_policy(degrading_system: System) -> None:
    degrading_system.stop("reranker")
    with WikimemClient(degrading_system.address, timeout=60) as client:
        answer = client.ask(QUESTION, no_cache=True)
    assert not answer.reranked
    assert any("reranker" in w and "WIKIMEM_ON_RERANK_OVERLOAD=degrade" in w for w in answer.warnings)
    assert "TunnelKit" in answer.answer and answer.citations[0].doc_id == "vpn.md"


def test_reranker_down_fails_the_ask_by_default(small_system: System) -> None:
    address = small_system.handles["reranker"].address
    small_system.stop("reranker")
    with WikimemClient(small_system.address, timeout=60) as client, pytest.raises(UnavailableError) as err:
        client.ask(QUESTION, no_cache=True)
    assert "reranker" in err.value.message and address in err.value.message


@pytest.mark.parametrize("peer", ["reader", "memory", "embedder"])
def test_required_peer_down_is_unavailable_naming_it(small_system: System, peer: str) -> None:
    address = small_system.handles[peer].address
    small_system.stop(peer)
    with WikimemClient(small_system.address, timeout=60) as client, pytest.raises(UnavailableError) as err:
        client.ask(QUESTION, no_cache=True)
    assert peer in err.value.message and address in err.value.message
