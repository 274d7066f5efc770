"""The QA memory's parts: stores (real Redis and in-process), similarity + guard, verification rules.

End to end with real models: tests/e2e/test_e2e_qa_memory.py.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import redis

from wikimem_common.errors import NotFound, Unavailable
from wikimem_contract.v1 import common_pb2, memory_pb2, rag_pb2
from wikimem_orchestrator.cache import RedisStore
from wikimem_orchestrator.qa_memory import (
    CHECK_CITED,
    LocalQAStore,
    QAMemory,
    QAMemorySettings,
    QAStore,
    RedisQAStore,
    content_words,
    same_question,
)

DIM = 8


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def answer(text: str, doc_id: str = "vacation.md", revision: int = 1) -> rag_pb2.AskResponse:
    return rag_pb2.AskResponse(
        answer=text,
        reranked=True,
        citations=[common_pb2.Citation(doc_id=doc_id, revision=revision, chunk_id=f"{doc_id}@{revision}#0")],
    )


def hits(*chunks: tuple[str, int]) -> list[common_pb2.ScoredChunk]:
    return [
        common_pb2.ScoredChunk(chunk=common_pb2.Chunk(chunk_id=f"{d}@{r}#0", doc_id=d, revision=r)) for d, r in chunks
    ]


@pytest.fixture(params=["redis", "local"])
def store(request: pytest.FixtureRequest) -> QAStore:
    if request.param == "redis":
        return RedisQAStore(RedisStore(request.getfixturevalue("redis_url"), prefix="qa-test:"))
    return LocalQAStore()


def test_a_scope_keeps_the_most_recent_entries_only(store: QAStore, request: pytest.FixtureRequest) -> None:
    ids = [bytes([i]) * 16 for i in range(10)]
    for i, entry_id in enumerate(ids):
        store.add("s", entry_id, unit(1, i), f"record {i}".encode(), max_entries=4, ttl_s=60)
    found, matrix = store.scan("s", DIM)
    assert found == ids[:5:-1] and matrix.shape == (4, DIM) and matrix.dtype == np.float32
    assert np.allclose(matrix[0], unit(1, 9))
    assert store.fetch("s", [ids[9], ids[0]]) == [b"record 9", None]  # evicted records are deleted too
    store.forget("s", ids[9], unit(1, 9))
    assert store.scan("s", DIM)[0] == ids[8:5:-1] and store.fetch("s", [ids[9]]) == [None]
    assert store.scan("s", DIM + 1)[0] == []  # another model's dimension: nothing comparable
    assert store.scan("other", DIM)[0] == []
    if "redis" in request.node.name:
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            assert client.hlen("qa-test:qa:s:e") == 3 and client.llen("qa-test:qa:s:v") == 3
            assert 0 < client.pttl("qa-test:qa:s:v") <= 60_000
        finally:
            client.close()


class FakeVerifier:
    def __init__(self, chunks: list[common_pb2.ScoredChunk] | None = None) -> None:
        self.chunks = chunks or []
        self.revisions: dict[str, int] = {}
        self.searches: list[memory_pb2.SearchRequest] = []
        self.gets: list[memory_pb2.GetRequest] = []
        self.down = False

    def search(self, request: memory_pb2.SearchRequest, timeout: float) -> memory_pb2.SearchResponse:
        if self.down:
            raise Unavailable("memory service at 127.0.0.1:1 is unavailable")
        self.searches.append(request)
        return memory_pb2.SearchResponse(hits=self.chunks)

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse:
        self.gets.append(request)
        if request.doc_id not in self.revisions:
            raise NotFound(f"document {request.doc_id!r} not found")
        return memory_pb2.GetResponse(document=common_pb2.Document(revision=self.revisions[request.doc_id]))


def lookup(memory: QAMemory, question: str, vector: np.ndarray, generation: int, verifier: FakeVerifier,
           warnings: list[str] | None = None) -> Any:
    return memory.lookup(
        "s", vector, question, collection="default", groups=("eng",),
        search_request=lambda v, q: memory_pb2.SearchRequest(query_text=q, top_k=20),
        generation=generation, verifier=verifier, timeout=lambda: 1.0, warnings=[] if warnings is None else warnings,
    )


def test_threshold_guard_and_retrieval_check(store: QAStore) -> None:
    memory = QAMemory(store, QAMemorySettings(threshold=0.9, max_entries=16))
    retrieved = hits(("vacation.md", 1), ("expenses.md", 3))
    assert memory.remember("s", "How many vacation days do I get?", unit(1, 0.1), answer("27"), retrieved, 100, [])
    assert not memory.remember("s", "What is the CEO's dog called?", unit(0, 1),
                               rag_pb2.AskResponse(abstained=True, reranked=True), [], 100, [])  # abstention

    verifier = FakeVerifier(retrieved)
    # nothing written since (same generation): reused without asking memory
    hit = lookup(memory, "So, how many vacation days do I get", unit(1, 0.12), 100, verifier)
    assert hit is not None and hit.response.answer == "27" and hit.question == "How many vacation days do I get?"
    assert 0.99 < hit.similarity <= 1.0 and verifier.searches == []
    # similar vector, other content words: the guard says no (and below the threshold: no either)
    assert lookup(memory, "How many sick days do I get?", unit(1, 0.12), 100, verifier) is None
    assert lookup(memory, "How many vacation days do I get?", unit(1, 1), 100, verifier) is None
    # a write happened: the remembered question's retrieval is re-run with its own text and vector
    hit = lookup(memory, "How many vacation days do I get?", unit(1, 0.1), 101, verifier)
    assert hit is not None and verifier.searches[-1].query_text == "How many vacation days do I get?"
    # the retrieval changed (a page was edited): no hit, and the entry is forgotten
    verifier.chunks = hits(("vacation.md", 1), ("expenses.md", 4))
    assert lookup(memory, "How many vacation days do I get?", unit(1, 0.1), 102, verifier) is None
    verifier.chunks = retrieved
    assert lookup(memory, "How many vacation days do I get?", unit(1, 0.1), 102, verifier) is None


def test_cited_check_and_failures(store: QAStore) -> None:
    memory = QAMemory(store, QAMemorySettings(threshold=0.9, check=CHECK_CITED))
    memory.remember("s", "Who approves vacation?", unit(1), answer("your manager", "vacation.md", 2),
                    hits(("vacation.md", 2), ("travel.md", 1)), 100, [])
    verifier = FakeVerifier()
    verifier.revisions = {"vacation.md": 2, "travel.md": 9}  # another retrieved page changed: fine for "cited"
    hit = lookup(memory, "Who approves vacation?", unit(1), 105, verifier)
    assert hit is not None and [g.doc_id for g in verifier.gets] == ["vacation.md"]
    assert list(verifier.gets[0].groups) == ["eng"]  # readable by the caller
    verifier.revisions = {}  # gone, or not readable for these groups
    assert lookup(memory, "Who approves vacation?", unit(1), 106, verifier) is None

    memory.remember("s", "Who approves travel?", unit(0, 1), answer("your manager", "travel.md", 1),
                    hits(("travel.md", 1)), 100, [])
    verifier.down = True  # retrieval check cannot run: a warning, no hit, entry kept
    retrieval = QAMemory(store, QAMemorySettings(threshold=0.9))
    warnings: list[str] = []
    assert lookup(retrieval, "Who approves travel?", unit(0, 1), 107, verifier, warnings) is None
    assert warnings and "could not verify" in warnings[0]


def test_revision_map_fast_path_and_ttl(store: QAStore) -> None:
    recorded = {"vacation.md": 1}
    memory = QAMemory(store, QAMemorySettings(threshold=0.9, ttl_s=0.3),
                      revisions=lambda coll, ids: [recorded.get(d) for d in ids])
    memory.remember("s", "How many vacation days?", unit(1), answer("27"), hits(("vacation.md", 1)), 100, [])
    verifier = FakeVerifier(hits(("vacation.md", 1)))
    assert lookup(memory, "How many vacation days?", unit(1), 100, verifier) is not None
    recorded["vacation.md"] = 2  # another replica recorded a newer revision; this one still has generation 100
    assert lookup(memory, "How many vacation days?", unit(1), 100, verifier) is None
    memory.remember("s", "How many vacation days?", unit(1), answer("30", revision=2), hits(("vacation.md", 2)),
                    101, [])
    time.sleep(0.35)
    assert lookup(memory, "How many vacation days?", unit(1), 101, verifier) is None  # expired


def test_redis_down_misses_with_a_warning(own_redis: Any) -> None:
    memory = QAMemory(RedisQAStore(RedisStore(own_redis.url, retry_s=0.1)), QAMemorySettings(threshold=0.9))
    own_redis.stop()
    warnings: list[str] = []
    assert not memory.remember("s", "Q?", unit(1), answer("a"), hits(("d", 1)), 1, warnings)
    assert lookup(memory, "Q?", unit(1), 1, FakeVerifier(), warnings) is None
    assert warnings and warnings[0].startswith("cache unavailable")


def test_content_words_and_the_guard() -> None:
    assert content_words("What's the VPN client called?") == ("what", "vpn", "client", "called")
    assert same_question("What is the VPN client called?", "So, what's the VPN client called")
    assert same_question("Where is the headquarters of Acme Robotics?", "where is the headquarters of acme robotics")
    for a, b in [
        ("How do I move from the Lisbon office to the Munich office?",
         "How do I move from the Munich office to the Lisbon office?"),
        ("Which NFL team represented the AFC at Super Bowl 50?",
         "Which NFL team represented the NFC at Super Bowl 50?"),
        ("Who is allowed to approve expense reports?", "Who is not allowed to approve expense reports?"),
        ("When does VPN support start?", "Where does VPN support start?"),
        ("What are auricles?", "What do the auricles do?"),
        ("Who is the CEO?", "Who was the CEO?"),
        ("How many days of paid vacation do full-time employees get?",
         "How many days of paid vacation do part-time employees get?"),
    ]:
        assert not same_question(a, b), (a, b)
