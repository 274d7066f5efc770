"""The answer and embedding caches: hits, invalidation by writes, ACL groups in the key, Redis failures.

Redis is real (tests/conftest.py starts redis-server); the in-process LRU is checked against the same rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis
from orchestrator_fakes import HANDBOOK, VPN_Q, Orchestrator, Peers

from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc, rag_pb2
from wikimem_orchestrator.cache import GenerationTracker, LocalStore

MakeOrchestrator = Callable[..., Orchestrator]


@pytest.fixture(params=["redis", "local"])
def cached_orch(request: pytest.FixtureRequest, make_orchestrator: MakeOrchestrator) -> Orchestrator:
    if request.param == "redis":
        return make_orchestrator(redis_url=request.getfixturevalue("redis_url"))
    return make_orchestrator()


def test_hit_and_miss(cached_orch: Orchestrator, peers: Peers) -> None:
    cached_orch.put("it/handbook.md", HANDBOOK)
    first = cached_orch.ask(VPN_Q)
    assert not first.cached and first.answer == "VPN-42"
    reads, embeds = peers.calls["read"], peers.calls["embed"]

    # whitespace differences normalise to the same key
    hit = cached_orch.ask("  What is the name of the VPN   profile for the network? ")
    assert hit.cached and not hit.warnings
    assert hit.answer == first.answer and list(hit.citations) == list(first.citations)
    assert hit.generation == first.generation
    assert set(hit.timings_ms) >= {"cache", "embed", "search", "rerank", "read", "total"}
    assert hit.timings_ms["read"] == 0.0
    assert (peers.calls["read"], peers.calls["embed"]) == (reads, embeds)

    # other options are another key
    other = cached_orch.ask(VPN_Q, read_k=1)
    assert not other.cached and peers.calls["read"] == reads + 1
    # no_cache recomputes the answer but reuses the query embedding
    fresh = cached_orch.ask(VPN_Q, no_cache=True)
    assert not fresh.cached and peers.calls["read"] == reads + 2 and peers.calls["embed"] == embeds


def test_answers_live_in_redis(make_orchestrator: MakeOrchestrator, redis_url: str) -> None:
    orch = make_orchestrator(redis_url=redis_url, cache_prefix="t1:")
    orch.put("it/handbook.md", HANDBOOK)
    orch.ask(VPN_Q)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() if isinstance(k, bytes) else k for k in client.keys("t1:*"))
        assert [k.split(":")[1] for k in keys] == ["ans", "emb", "rev", "revgen"]
        assert keys[0].startswith("t1:ans:1:")
        assert client.hgetall("t1:rev:default") == {b"it/handbook.md": b"1"}
        assert client.hgetall("t1:revgen:default") == {b"it/handbook.md": b"1"}  # the write's generation
        assert 0 < client.pttl(keys[0]) <= 3600_000
    finally:
        client.close()
    # a second orchestrator sharing the Redis serves the answer from it
    other = make_orchestrator(redis_url=redis_url, cache_prefix="t1:")
    assert other.ask(VPN_Q).cached


def test_writes_invalidate(cached_orch: Orchestrator, peers: Peers) -> None:
    cached_orch.put("it/handbook.md", HANDBOOK)
    cached_orch.put("it/other.md", "The canteen opens at noon.")
    assert cached_orch.ask(VPN_Q).answer == "VPN-42"
    assert cached_orch.ask(VPN_Q).cached

    # an edit of the cited document: the very next answer reflects it
    cached_orch.put("it/handbook.md", HANDBOOK.replace("VPN-42", "VPN-43"))
    edited = cached_orch.ask(VPN_Q)
    assert not edited.cached and edited.answer == "VPN-43" and edited.citations[0].revision == 2
    assert cached_orch.ask(VPN_Q).cached

    # a write elsewhere could change the answer too (a new, better passage): no hit
    cached_orch.put("it/other.md", "The canteen opens at one.")
    assert not cached_orch.ask(VPN_Q).cached

    # a deletion: the cited document is gone, so is the answer
    cached_orch.stub.DeleteDocument(rag_pb2.DeleteDocumentRequest(doc_id="it/handbook.md"), timeout=30)
    gone = cached_orch.ask(VPN_Q)
    assert not gone.cached and gone.abstained and not gone.citations


def test_write_that_bypasses_the_orchestrator_is_seen(cached_orch: Orchestrator, peers: Peers) -> None:
    """Strict mode (the default) asks memory for its generation on every lookup."""
    cached_orch.put("it/handbook.md", HANDBOOK)
    cached_orch.ask(VPN_Q)
    assert cached_orch.ask(VPN_Q).cached
    with grpc.insecure_channel(peers.address("memory")) as channel:
        memory_pb2_grpc.MemoryStub(channel).Upsert(
            memory_pb2.UpsertRequest(doc_id="it/handbook.md", text=HANDBOOK.replace("VPN-42", "VPN-44")), timeout=10
        )
    reply = cached_orch.ask(VPN_Q)
    assert not reply.cached and reply.answer == "VPN-44"


def test_revision_map_guards_replicas_that_reuse_a_generation(
    make_orchestrator: MakeOrchestrator, redis_url: str, peers: Peers
) -> None:
    """Replica B trusts its generation for a minute; replica A's write is still never served stale by B."""
    a = make_orchestrator(redis_url=redis_url, generation_max_age_s=60)
    b = make_orchestrator(redis_url=redis_url, generation_max_age_s=60)
    a.put("it/handbook.md", HANDBOOK)
    assert b.ask(VPN_Q).answer == "VPN-42"
    assert b.ask(VPN_Q).cached
    stats = peers.calls["stats"]

    a.put("it/handbook.md", HANDBOOK.replace("VPN-42", "VPN-45"))
    reply = b.ask(VPN_Q)  # B's generation is stale, its key finds the old entry; the revision map rejects it
    assert peers.calls["stats"] == stats  # A learnt its write's generation from the Upsert response
    assert not reply.cached and reply.answer == "VPN-45" and reply.citations[0].revision == 2
    # and A, which observed its own write, has read-your-writes
    assert a.ask(VPN_Q).answer == "VPN-45"


def test_groups_are_part_of_the_key(cached_orch: Orchestrator) -> None:
    cached_orch.put("eng/vpn.md", HANDBOOK, acl=["eng"])
    assert cached_orch.ask(VPN_Q, groups="eng").answer == "VPN-42"
    assert cached_orch.ask(VPN_Q, groups="eng").cached
    assert cached_orch.ask(VPN_Q, groups=" eng ,eng").cached  # the same set of groups

    for groups in (None, "hr", "sales,hr"):
        reply = cached_orch.ask(VPN_Q, groups=groups)
        assert not reply.cached and reply.abstained and not reply.citations
        assert cached_orch.ask(VPN_Q, groups=groups).cached  # the abstention is cached for that set only
    both = cached_orch.ask(VPN_Q, groups="eng,hr")
    assert not both.cached and both.answer == "VPN-42"


def test_collections_are_part_of_the_key(cached_orch: Orchestrator) -> None:
    cached_orch.put("vpn.md", HANDBOOK, collection="it")
    assert cached_orch.ask(VPN_Q, collection="it").answer == "VPN-42"
    other = cached_orch.ask(VPN_Q, collection="hr")
    assert not other.cached and other.abstained


def test_redis_down_answers_uncached_then_resumes(
    make_orchestrator: MakeOrchestrator, own_redis: Any, peers: Peers
) -> None:
    server = own_redis
    orch = make_orchestrator(redis_url=server.url, redis_retry_s=0.2)
    orch.put("it/handbook.md", HANDBOOK)
    orch.ask(VPN_Q)
    assert orch.ask(VPN_Q).cached

    server.stop()
    down = orch.ask(VPN_Q)
    assert not down.cached and down.answer == "VPN-42"
    [warning] = down.warnings
    assert warning.startswith("cache unavailable") and f"redis at 127.0.0.1:{server.port}" in warning
    # writes still work and still invalidate (generation), with Redis down
    orch.put("it/handbook.md", HANDBOOK.replace("VPN-42", "VPN-46"))
    down = orch.ask(VPN_Q)
    assert not down.cached and down.answer == "VPN-46" and down.warnings

    server.start()
    time.sleep(0.3)  # past the retry window
    back = orch.ask(VPN_Q)
    assert not back.cached and back.answer == "VPN-46" and not back.warnings
    again = orch.ask(VPN_Q)
    assert again.cached and again.answer == "VPN-46" and not again.warnings


def test_cache_disabled(make_orchestrator: MakeOrchestrator, peers: Peers) -> None:
    orch = make_orchestrator(cache=False)
    orch.put("it/handbook.md", HANDBOOK)
    orch.ask(VPN_Q)
    reply = orch.ask(VPN_Q)
    assert not reply.cached and reply.answer == "VPN-42" and peers.calls["read"] == 2


def test_local_store_is_an_lru_with_expiry() -> None:
    store = LocalStore(max_entries=2)
    store.set("a", b"1", 60)
    store.set("b", b"2", 60)
    assert store.get("a") == b"1"  # a is now the most recent
    store.set("c", b"3", 60)
    assert (store.get("a"), store.get("b"), store.get("c")) == (b"1", None, b"3")
    store.set("d", b"4", 0.01)
    time.sleep(0.02)
    assert store.get("d") is None
    store.set_revision("default", "x", 3)
    assert store.get_revisions("default", ["x", "y"]) == [3, None]


def test_generation_tracker() -> None:
    values = iter([1, 2, 3])
    fetched: list[int] = []

    def fetch() -> int:
        fetched.append(next(values))
        return fetched[-1]

    tracker = GenerationTracker(fetch, max_age_s=60)
    assert tracker.current() == 1 and tracker.current() == 1 and fetched == [1]
    tracker.after_write()
    assert tracker.current() == 2

    def failing() -> int:
        raise RuntimeError("memory down")

    broken = GenerationTracker(failing, max_age_s=60)
    broken.after_write()  # does not raise; the next lookup asks again (and reports the failure)
    with pytest.raises(RuntimeError):
        broken.current()
    strict = GenerationTracker(iter([5, 6]).__next__)
    assert (strict.current(), strict.current()) == (5, 6)
