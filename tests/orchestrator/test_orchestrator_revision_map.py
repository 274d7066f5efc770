"""The revision map only moves forward: a write's revision is recorded only if its memory generation is newer than
the recorded one, so orchestrator replicas racing on one document never leave an older revision in the map.

Real Redis (the Lua script) and the in-process store follow the same rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_contract.v1 import rag_pb2
from wikimem_orchestrator.cache import DELETED, CacheStore, LocalStore, RedisStore

MakeOrchestrator = Callable[..., Orchestrator]


@pytest.fixture(params=["redis", "local"])
def store(request: pytest.FixtureRequest) -> CacheStore:
    if request.param == "redis":
        return RedisStore(request.getfixturevalue("redis_url"), prefix="rm:")
    return LocalStore()


def test_updates_applied_out_of_order_keep_the_newest(store: CacheStore) -> None:
    # writes: rev 1 at generation 100, rev 2 at 105, delete at 110, re-created as rev 3 at 120
    assert store.set_revision("c", "doc", 2, 105)
    assert not store.set_revision("c", "doc", 1, 100)  # the older write's reply arrives late
    assert store.get_revisions("c", ["doc"]) == [2]
    assert store.set_revision("c", "doc", 3, 120)
    assert not store.set_revision("c", "doc", DELETED, 110)  # the delete's reply arrives after the re-creation
    assert not store.set_revision("c", "doc", 3, 120)  # the same write twice: nothing to do
    assert store.get_revisions("c", ["doc", "other"]) == [3, None]
    assert store.set_revision("c", "doc", DELETED, 130)
    assert store.get_revisions("c", ["doc"]) == [DELETED]
    # collections are separate maps; generation 0 (a memory that does not report it) is recorded as before
    assert store.set_revision("d", "doc", 1, 0) and store.get_revisions("d", ["doc"]) == [1]
    store.close()


def test_concurrent_out_of_order_updates_in_redis(redis_url: str) -> None:
    """Eight clients apply 400 writes of one document in a shuffled order at once; the newest always wins."""
    stores = [RedisStore(redis_url, prefix="race:") for _ in range(8)]
    writes = [(rev, 1_000 + 10 * rev) for rev in range(1, 401)]
    order = writes[::-1][::2] + writes[::2]  # newest first, interleaved
    barrier = threading.Barrier(len(stores))

    def apply(i: int) -> None:
        barrier.wait()
        for revision, generation in order[i :: len(stores)]:
            stores[i].set_revision("c", "doc", revision, generation)

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].get_revisions("c", ["doc"]) == [400]
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.hget("race:revgen:c", "doc") == str(1_000 + 4_000).encode()
    finally:
        client.close()
    for s in stores:
        s.close()


def test_replicas_racing_on_one_document(make_orchestrator: MakeOrchestrator, redis_url: str, peers: Peers) -> None:
    """Replica A's write commits first but is acknowledged late (after B's newer write was recorded): A must not
    put its older revision back into the shared map, or B, trusting its generation for a minute, would serve an
    answer citing a revision that is gone."""
    a = make_orchestrator(redis_url=redis_url, cache_prefix="race2:")
    b = make_orchestrator(redis_url=redis_url, cache_prefix="race2:", generation_max_age_s=60)
    a.put("it/handbook.md", HANDBOOK)
    slow = threading.Thread(
        target=a.put,
        args=("it/handbook.md", HANDBOOK.replace("VPN-42", "VPN-50")),
        kwargs={"metadata": {"test_reply_delay_s": "0.5"}},
    )
    slow.start()
    for _ in range(100):  # until A's write has committed in memory (revision 2)
        if peers.memory.docs[("default", "it/handbook.md")].document.revision == 2:
            break
        threading.Event().wait(0.01)
    newer = b.put("it/handbook.md", HANDBOOK.replace("VPN-42", "VPN-51"))
    assert newer.document.revision == 3 and newer.generation > 0
    slow.join()
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.hget("race2:rev:default", "it/handbook.md") == b"3"
    finally:
        client.close()
    reply = b.ask(VPN_Q)
    assert reply.answer == "VPN-51" and reply.citations[0].revision == 3
    assert b.ask(VPN_Q).cached and a.ask(VPN_Q).answer == "VPN-51"
    deleted = b.stub.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id="it/handbook.md"), timeout=10)
    assert deleted.generation > newer.generation
