"""Sentence vectors computed when a document is written (sentence_warming.py): the Ask after the write embeds only
its question; a failing embedder or a full queue never fails the write; Asks go first; replicas share the vectors
through Redis (real redis-server, tests/conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest
import redis
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers
from prometheus_client import REGISTRY

from wikimem_common import vectors
from wikimem_common.config import ConfigError
from wikimem_contract.v1 import common_pb2, embedder_pb2, memory_pb2
from wikimem_orchestrator import sentence_warming, server
from wikimem_orchestrator.cache import RedisStore
from wikimem_orchestrator.config import OrchestratorConfig
from wikimem_orchestrator.sentence_warming import Foreground, SentenceWarmer
from wikimem_orchestrator.sentences import (
    VectorCache,
    chunk_inputs,
    decode_rows,
    encode_rows,
    passage_sentences,
    score,
)
from wikimem_orchestrator.server import make_sentence_vectors

MakeOrchestrator = Callable[..., Orchestrator]
VPN_SENTENCE = "The VPN profile is named VPN-42 and it needs the authenticator app."


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _warmed() -> float:
    return _sample("wikimem_sentence_warm_chunks_total", result="warmed")


def _wait_warming(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _sample("wikimem_sentence_warm_pending") > 0:
        assert time.monotonic() < deadline, "sentence warming did not finish"
        time.sleep(0.02)


@pytest.fixture
def sentence_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentence first on; the fake embedder's vectors all have cosine 1, so the reader's span picks the sentence."""
    monkeypatch.setenv("WIKIMEM_ANSWER_POLICY", "1")
    monkeypatch.setenv("WIKIMEM_ANSWER_SENTENCES", "1")
    monkeypatch.setenv("WIKIMEM_ANSWER_THRESHOLD", "1000")  # the span decision would abstain: only sentences answer


@pytest.mark.usefixtures("sentence_first")
@pytest.mark.parametrize(
    ("cache", "model_id"), [(True, ""), (True, "fake-embedder"), (False, ""), (False, "fake-embedder")]
)
def test_a_write_warms_the_sentence_vectors_and_the_next_ask_embeds_only_its_question(
    make_orchestrator: MakeOrchestrator, peers: Peers, cache: bool, model_id: str
) -> None:
    # (Both ways an Ask keys the vectors: the Embed response's model id, else the embedder's Info when the cache is on.)
    peers.embedder.model_id = model_id
    orch = make_orchestrator(cache=cache, sentence_warm_queue=10)
    warmed = _warmed()
    orch.put("it/handbook.md", HANDBOOK, title="IT handbook")
    _wait_warming()
    assert _warmed() == warmed + 3  # the three chunks of HANDBOOK, one Embed call each
    assert any(f"IT handbook: {VPN_SENTENCE}" in r for r in peers.embedder.requests)

    before = len(peers.embedder.requests)
    reply = orch.ask(VPN_Q, no_cache=True)
    assert peers.embedder.requests[before:] == [[VPN_Q]]  # no sentence was embedded by the Ask
    assert reply.answer == "VPN-42" and reply.citations[0].quote == VPN_SENTENCE and not reply.warnings


@pytest.mark.usefixtures("sentence_first")
def test_a_failing_embedder_during_warming_leaves_the_write_fine_and_the_ask_embeds_what_is_missing(
    make_orchestrator: MakeOrchestrator, peers: Peers
) -> None:
    orch = make_orchestrator(sentence_warm_queue=10)
    peers.embedder.fail_batches = True  # the one-sentence chunk is warmed, the next fails (and ends the document)
    failed, warmed = _sample("wikimem_sentence_warm_chunks_total", result="failed"), _warmed()
    written = orch.put("it/handbook.md", HANDBOOK, title="IT handbook")
    assert written.changed and written.document.revision == 1
    _wait_warming()
    assert _sample("wikimem_sentence_warm_chunks_total", result="failed") == failed + 1 and _warmed() == warmed + 1

    peers.embedder.fail_batches = False
    before = len(peers.embedder.requests)
    reply = orch.ask(VPN_Q, no_cache=True)
    assert reply.answer == "VPN-42" and not reply.warnings
    assert any(f"IT handbook: {VPN_SENTENCE}" in r for r in peers.embedder.requests[before:])  # the Ask's own

    peers.stop("embedder")  # down: the write still succeeds (warming fails quietly behind it)
    again = orch.put("it/handbook.md", HANDBOOK + "\n\nPrinters are on every floor.", title="IT handbook")
    assert again.changed and again.document.revision == 2
    _wait_warming()


class _Peers:
    """In-process WarmPeers: one chunk per document ("One. Two."), unit vectors; `gate` holds GetChunks."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fetching = threading.Event()
        self.embedded: list[list[str]] = []

    def get_chunks(self, request: memory_pb2.GetChunksRequest, timeout: float) -> memory_pb2.GetChunksResponse:
        self.fetching.set()
        assert self.gate.wait(10)
        chunk = common_pb2.Chunk(
            chunk_id=f"{request.doc_id}@1#0", collection=request.collection, title="T", text="One. Two."
        )
        return memory_pb2.GetChunksResponse(chunks=[chunk])

    def embed_batch(self, texts: Sequence[str], timeout: float) -> embedder_pb2.EmbedResponse:
        self.embedded.append(list(texts))
        rows = np.eye(len(texts), 4, dtype=np.float32)
        return embedder_pb2.EmbedResponse(vectors=vectors.to_proto(rows), model_id="m")

    def embedder_info(self, timeout: float) -> embedder_pb2.InfoResponse:
        return embedder_pb2.InfoResponse(model_id="m", dim=4)


def test_a_full_queue_drops_the_document_without_blocking() -> None:
    peers, cache = _Peers(), VectorCache()
    peers.gate.clear()
    warmer = SentenceWarmer(peers, cache, queue_size=1)
    try:
        dropped = _sample("wikimem_sentence_warm_dropped_total")
        assert warmer.submit("default", "a", [])
        assert peers.fetching.wait(5)  # the worker holds "a"; "b" waits in the queue
        assert warmer.submit("default", "b", [])
        t0 = time.monotonic()
        assert not warmer.submit("default", "c", [])
        assert time.monotonic() - t0 < 0.5
        assert _sample("wikimem_sentence_warm_dropped_total") == dropped + 1
        peers.gate.set()
        assert warmer.wait_idle(5)
        assert [cache.find(("m", f"default\0{d}@1#0")) is not None for d in "abc"] == [True, True, False]
        assert peers.embedded == [["T: One.", "T: Two."]] * 2
    finally:
        warmer.close()


def test_close_drops_what_is_queued_and_stops_after_the_current_document() -> None:
    peers, cache = _Peers(), VectorCache()
    peers.gate.clear()
    warmer = SentenceWarmer(peers, cache)
    pending = _sample("wikimem_sentence_warm_pending")
    assert warmer.submit("default", "a", []) and peers.fetching.wait(5)
    assert warmer.submit("default", "b", [])
    warmer.close(timeout=0.1)
    assert not warmer.submit("default", "c", [])
    peers.gate.set()
    assert warmer.wait_idle(5) and _sample("wikimem_sentence_warm_pending") == pending
    assert peers.embedded == [] and len(cache) == 0


def test_warming_waits_for_the_asks_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentence_warming, "MAX_YIELD_S", 30.0)
    peers, foreground = _Peers(), Foreground()
    warmer = SentenceWarmer(peers, VectorCache(), foreground)
    try:
        with foreground.busy():
            assert warmer.submit("default", "a", [])
            assert peers.fetching.wait(5)
            time.sleep(0.3)
            assert peers.embedded == []  # an Ask is in flight: no Embed call
        assert warmer.wait_idle(5) and peers.embedded == [["T: One.", "T: Two."]]
    finally:
        warmer.close()


def test_a_chunk_alone_gives_the_inputs_an_ask_embeds_for_it_among_other_passages() -> None:
    other = common_pb2.Chunk(chunk_id="o@1#0", title="Other", text="Unrelated. Text here.")
    text = "Use [the VPN](x.md). Ask IT."
    chunk = common_pb2.Chunk(chunk_id="d@1#0", title="Guide", heading="Guide > VPN", text=text)
    sentences, inputs = passage_sentences([common_pb2.ScoredChunk(chunk=other), common_pb2.ScoredChunk(chunk=chunk)])
    assert chunk_inputs(chunk) == [t for s, t in zip(sentences, inputs, strict=True) if s.passage_index == 1]
    assert chunk_inputs(chunk)[1] == "Guide > VPN: Ask IT."


def test_the_same_chunk_id_in_two_collections_has_vectors_of_its_own() -> None:
    """A chunk id ("README.md@1#0") names one revision only within its collection."""
    cache, embedded = VectorCache(), []

    def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        embedded.append(list(texts))
        return np.eye(len(texts), 4, dtype=np.float32)

    def passage(collection: str, text: str) -> common_pb2.ScoredChunk:
        chunk = common_pb2.Chunk(chunk_id="README.md@1#0", collection=collection, title="R", text=text)
        return common_pb2.ScoredChunk(chunk=chunk)

    question = np.array([1, 0, 0, 0], dtype=np.float32)
    score(question, [passage("eng", "Alpha. Beta.")], embed, cache, "m")
    score(question, [passage("hr", "Gamma. Delta.")], embed, cache, "m")
    score(question, [passage("eng", "Alpha. Beta.")], embed, cache, "m")
    assert embedded == [["R: Alpha.", "R: Beta."], ["R: Gamma.", "R: Delta."]]


@pytest.mark.usefixtures("sentence_first")
def test_replicas_share_the_warmed_vectors_through_redis(
    make_orchestrator: MakeOrchestrator, peers: Peers, redis_url: str
) -> None:
    writer = make_orchestrator(redis_url=redis_url, cache_prefix="sv1:", sentence_warm_queue=10)
    reader = make_orchestrator(redis_url=redis_url, cache_prefix="sv1:")  # no warming of its own
    writer.put("it/handbook.md", HANDBOOK, title="IT handbook")
    _wait_warming()
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 10  # (the pending gauge is process-wide: other tests' warmers share it)
        while len(keys := client.keys("sv1:sv:*")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(keys) == 3
        assert 0 < client.ttl(keys[0]) <= 7 * 86400
    finally:
        client.close()
    before = len(peers.embedder.requests)
    reply = reader.ask(VPN_Q, no_cache=True)
    assert peers.embedder.requests[before:] == [[VPN_Q]]
    assert reply.answer == "VPN-42" and reply.citations[0].quote == VPN_SENTENCE


def test_vector_cache_round_trip_lru_and_a_redis_that_is_down() -> None:
    rows = (np.arange(12).reshape(3, 4) / 7).astype(np.float32)
    decoded = decode_rows(encode_rows(rows))
    assert decoded is not None and np.array_equal(decoded, rows)  # float32: exactly what was computed
    assert decode_rows(b"SV1garbage") is None and decode_rows(encode_rows(rows)[:-1]) is None

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = VectorCache(2, RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.1))
    cache.put(("m", "a"), rows)  # Redis down: kept in process, no error
    cache.put(("m", "b"), rows)
    cache.put(("m", "c"), rows)
    assert cache.get(("m", "a")) is None and cache.get(("m", "c")) is not None and len(cache) == 2


def test_the_sentence_vector_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_SENTENCE_VECTOR_CHUNKS", "123")
    monkeypatch.setenv("WIKIMEM_SENTENCE_VECTORS_TTL_S", "60")
    monkeypatch.setenv("WIKIMEM_SENTENCE_WARM_QUEUE", "0")
    config = OrchestratorConfig.from_env()
    assert (config.sentence_vector_chunks, config.sentence_vectors_ttl_s, config.sentence_warm_queue) == (123, 60, 0)
    assert make_sentence_vectors(config, None).max_chunks == 123
    monkeypatch.setenv("WIKIMEM_SENTENCE_VECTOR_CHUNKS", "-1")
    with pytest.raises(ConfigError, match="WIKIMEM_SENTENCE_VECTOR_CHUNKS"):
        OrchestratorConfig.from_env()


def test_other_backends_build_without_warming(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/direct.py swaps GrpcBackends for in-process calls (no channels): the orchestrator still builds."""

    class InProcess:
        def close(self) -> None:
            pass

    monkeypatch.setenv("WIKIMEM_ANSWER_SENTENCES", "1")
    monkeypatch.setattr(server, "GrpcBackends", lambda _config: InProcess())
    address = "127.0.0.1:1"
    config = OrchestratorConfig(address, address, address, address, sentence_warm_queue=10)
    _, close = server.build(config, listen=address)
    close()
