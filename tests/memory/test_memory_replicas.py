"""Several memory replicas writing one Qdrant store at once (coordination.py).

No Qdrant server binary exists here, so the shared store is one qdrant-client engine (`:memory:`) that several
MemoryService instances reach through their own store and registry objects, as replicas reach one server; each
replica has its own coordinator, and the redis ones share a real redis-server. Embeddings come from the real
embedder service, through a wrapper that sleeps a little first, so writes of one document overlap.

The same storm runs with `local` coordination (each replica guarding only itself, as before) to show what the
coordination prevents: there, two replicas hand out the same revision for different texts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from wikimem_common.errors import Aborted, ServiceError
from wikimem_common.redis_target import RedisTarget
from wikimem_common.timing import Timings
from wikimem_memory.coordination import Coordinator, LocalCoordinator, RedisCoordinator, RedisSettings
from wikimem_memory.embedding import EmbedderClient, Embeddings
from wikimem_memory.service import MemoryService, UpsertInput
from wikimem_memory.store import Backend
from wikimem_memory.store.base import PointFilter
from wikimem_memory.store.qdrant import QdrantRegistry, QdrantVectorStore, connect

from .conftest import memory_config

DOCS = ("policy/travel.md", "policy/leave.md")
#: Where writes that name no collection go.
COLLECTION = "default"


class SlowEmbedder(EmbedderClient):
    """The real embedder client, after a pause: `gate` (if set) holds one write as long as a test wants."""

    def __init__(self, address: str, max_pause_s: float) -> None:
        super().__init__(address, 128, 20.0)
        self.max_pause_s = max_pause_s
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def embed(self, texts: Sequence[str], dim: int) -> Embeddings:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(random.uniform(0, self.max_pause_s))
        return super().embed(texts, dim)


@dataclass
class SharedStore:
    client: Any
    replicas: list[MemoryService] = field(default_factory=list)

    def replica(self, tmp: Path, embedder: EmbedderClient, coordinator: Coordinator) -> MemoryService:
        config = memory_config("qdrant", tmp, embedder.address)
        store = QdrantVectorStore(self.client, "shared_chunks", 384)
        backend = Backend(store, QdrantRegistry(self.client, "shared_docs"))
        service = MemoryService(config, backend, embedder, coordinator)
        self.replicas.append(service)
        return service


@pytest.fixture
def shared_store() -> Iterator[SharedStore]:
    store = SharedStore(connect(":memory:", None))
    yield store
    for replica in store.replicas:
        replica.coordinator.close()
        replica.embedder.close()


def redis_coordinator(url: str, lease_ms: int = 15_000) -> RedisCoordinator:
    return RedisCoordinator(RedisSettings(RedisTarget(url=url), prefix="test:memory", lease_ms=lease_ms))


@dataclass
class Ack:
    doc_id: str
    revision: int
    text: str
    at: float


def storm(replicas: list[MemoryService], writers_per_replica: int, writes_each: int) -> tuple[list[Ack], list[str]]:
    """Concurrent writes (and a few deletes) of DOCS through every replica; acked writes and unexpected errors."""
    acks: list[Ack] = []
    errors: list[str] = []
    lock = threading.Lock()

    def writer(replica: MemoryService, wid: int) -> None:
        rng = random.Random(wid)
        for n in range(writes_each):
            doc = rng.choice(DOCS)
            try:
                if rng.random() < 0.1:
                    replica.delete(COLLECTION, doc, None, Timings())
                    continue
                text = f"# {doc}\n\nWriter {wid} write {n}: the limit is {rng.randint(1, 10**9)} dollars."
                record, _changed, _gen = replica.upsert(UpsertInput(doc_id=doc, text=text), Timings())
                with lock:
                    acks.append(Ack(doc, record.revision, text, time.monotonic()))
            except Aborted:
                pass  # a documented outcome: lost a race, told to retry
            except ServiceError as exc:
                if "not found" not in str(exc):
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=writer, args=(replica, r * 100 + w))
        for r, replica in enumerate(replicas)
        for w in range(writers_per_replica)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acks, errors


def violations(acks: list[Ack], replica: MemoryService) -> list[str]:
    """What breaks the memory's guarantees after a storm, read back through one replica."""
    found: list[str] = []
    texts: dict[tuple[str, int], str] = {}
    for ack in acks:
        previous = texts.setdefault((ack.doc_id, ack.revision), ack.text)
        if previous != ack.text:
            found.append(f"revision {ack.doc_id}@{ack.revision} acked for two different texts")
    for doc in DOCS:
        record = replica.registry.get(COLLECTION, doc)
        if record is None:
            continue
        text = replica.registry.get_text(COLLECTION, doc) or ""
        if texts.get((doc, record.revision), text) != text:
            found.append(f"{doc}@{record.revision}: the registry holds another text than the write acked for it")
        points, _ = replica.store.scroll(PointFilter(doc_ids=[doc], revision=record.revision), 100)
        ordinals = sorted(p.payload["ordinal"] for p in points)
        if ordinals != list(range(record.chunk_count)):
            found.append(f"{doc}@{record.revision}: chunks {ordinals}, expected {record.chunk_count}")
        for p in points:
            if text[p.payload["start"] : p.payload["end"]] != p.payload["text"]:
                found.append(f"{doc}@{record.revision}: chunk {p.payload['ordinal']} holds another write's text")
    return found


@pytest.mark.slow
def test_replicas_coordinated_through_redis_keep_every_guarantee(
    shared_store: SharedStore, tmp_path: Path, embedder_addr: str, redis_url: str
) -> None:
    replicas = [
        shared_store.replica(tmp_path, SlowEmbedder(embedder_addr, 0.02), redis_coordinator(redis_url))
        for _ in range(3)
    ]
    acks, errors = storm(replicas, writers_per_replica=2, writes_each=6)
    assert not errors
    assert len(acks) >= 10
    assert violations(acks, replicas[0]) == []
    # Revisions never reused, per document, across replicas.
    for doc in DOCS:
        revs = [a.revision for a in acks if a.doc_id == doc]
        assert len(revs) == len(set(revs)), f"{doc}: a revision was acked twice: {sorted(revs)}"
    # Every replica sees the same current revision, and it is the newest acked one unless deleted after it.
    for doc in DOCS:
        seen = {getattr(r.registry.get(COLLECTION, doc), "revision", 0) for r in replicas}
        assert len(seen) == 1


def test_a_writer_that_lost_its_lease_cannot_overwrite_a_newer_write(
    shared_store: SharedStore, tmp_path: Path, embedder_addr: str, redis_url: str
) -> None:
    """Replica A stalls mid-write and loses its lease; replica B writes; A's late commit is refused, B's stays."""
    slow = SlowEmbedder(embedder_addr, 0.0)
    a = shared_store.replica(tmp_path, slow, redis_coordinator(redis_url, lease_ms=1000))
    b = shared_store.replica(tmp_path, SlowEmbedder(embedder_addr, 0.0), redis_coordinator(redis_url, lease_ms=1000))
    doc = DOCS[0]
    first, _, _ = b.upsert(UpsertInput(doc_id=doc, text="# Travel\n\nThe limit is 100 dollars."), Timings())
    slow.gate = threading.Event()
    outcome: list[BaseException | int] = []

    def stalled_write() -> None:
        try:
            record, _, _ = a.upsert(UpsertInput(doc_id=doc, text="# Travel\n\nThe limit is 200 dollars."), Timings())
            outcome.append(record.revision)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=stalled_write)
    t.start()
    assert slow.entered.wait(10)
    # A is stalled holding the lease. A paused process (GC, SIGSTOP) would stop renewing it and it would run out;
    # its watchdog thread here still runs, so the lease is expired by hand: the same state Redis would reach.
    r = redis.Redis.from_url(redis_url)
    leases = list(r.scan_iter("test:memory:lease:*"))
    assert len(leases) == 1
    r.delete(*leases)
    newer, _, _ = b.upsert(UpsertInput(doc_id=doc, text="# Travel\n\nThe limit is 300 dollars."), Timings())
    slow.gate.set()
    t.join(30)
    assert newer.revision > first.revision
    assert len(outcome) == 1 and isinstance(outcome[0], Aborted), outcome
    assert "another writer" in str(outcome[0])
    assert b.registry.get(COLLECTION, doc).revision == newer.revision  # type: ignore[union-attr]
    assert "300 dollars" in (b.registry.get_text(COLLECTION, doc) or "")
    assert violations([], b) == []
    # A's chunks were discarded: nothing of "200 dollars" is left in the store.
    points, _ = b.store.scroll(PointFilter(doc_ids=[doc]), 100)
    assert all("200 dollars" not in p.payload["text"] for p in points)


def test_redis_down_refuses_writes_and_keeps_reads(
    shared_store: SharedStore, tmp_path: Path, embedder_addr: str, own_redis: Any
) -> None:
    replica = shared_store.replica(tmp_path, SlowEmbedder(embedder_addr, 0.0), redis_coordinator(own_redis.url))
    replica.upsert(UpsertInput(doc_id=DOCS[0], text="# Travel\n\nThe limit is 100 dollars."), Timings())
    own_redis.stop()
    with pytest.raises(ServiceError) as err:
        replica.upsert(UpsertInput(doc_id=DOCS[0], text="# Travel\n\nThe limit is 500 dollars."), Timings())
    assert "Redis" in str(err.value) and type(err.value).__name__ == "Unavailable"
    assert "100 dollars" in (replica.registry.get_text(COLLECTION, DOCS[0]) or "")


@pytest.mark.slow
def test_without_coordination_replicas_break_the_guarantees(
    shared_store: SharedStore, tmp_path: Path, embedder_addr: str
) -> None:
    """The negative control: the same storm with each replica guarding only itself (what one process did before)
    hands out one revision for two texts. This is why several replicas need `WIKIMEM_MEMORY_COORDINATION=redis`."""
    make: Callable[[], LocalCoordinator] = LocalCoordinator
    replicas = [shared_store.replica(tmp_path, SlowEmbedder(embedder_addr, 0.02), make()) for _ in range(3)]
    found: list[str] = []
    for _ in range(3):  # races are likely, not certain: a few rounds make the control reliable
        acks, _errors = storm(replicas, writers_per_replica=2, writes_each=6)
        found = violations(acks, replicas[0])
        if found:
            break
    assert found, "uncoordinated replicas kept every guarantee: the storm does not exercise the coordination"
