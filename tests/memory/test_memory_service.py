"""The Memory service over gRPC with the real embedder, on both backends: revisions, atomic replace, ACLs,
collections, paging, limits and bad input, a failing embedder, restart persistence, concurrent readers."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from wikimem_common import server as wserver
from wikimem_common import vectors
from wikimem_contract.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, memory_pb2

from .conftest import RunningMemory

LAPTOP = """---
title: Getting a laptop
---

# Laptops

New employees receive a MacBook on their first day. Ask the IT help desk in the #it-help channel if it has not
arrived by 10 am.

## Linux

Engineers may request a Linux ThinkPad instead; approval from your supervisor is needed.
"""

LAPTOP_V2 = LAPTOP.replace("a MacBook", "a Chromebook").replace("10 am", "noon")

LEAVE = """# Leave policy

Full-time staff earn 13 days of annual leave per year, plus 13 days of sick leave. Leave requests go through the
HR portal at least two weeks ahead.
"""


def embed(addr: str, text: str) -> common_pb2.Vectors:
    channel = wserver.channel(addr)
    try:
        return embedder_pb2_grpc.EmbedderStub(channel).Embed(embedder_pb2.EmbedRequest(texts=[text])).vectors
    finally:
        channel.close()


def search(mem: RunningMemory, addr: str, question: str, top_k: int = 5, **flt: object) -> memory_pb2.SearchResponse:
    return mem.stub.Search(
        memory_pb2.SearchRequest(query=embed(addr, question), top_k=top_k, filter=common_pb2.Filter(**flt))  # type: ignore[arg-type]
    )


def upsert(mem: RunningMemory, doc_id: str, text: str, **kw: object) -> memory_pb2.UpsertResponse:
    return mem.stub.Upsert(memory_pb2.UpsertRequest(doc_id=doc_id, text=text, **kw))  # type: ignore[arg-type]


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_upsert_search_get_with_exact_citations(memory: RunningMemory, embedder_addr: str) -> None:
    up = upsert(memory, "it/laptops.md", LAPTOP, source="wiki/it/laptops.md")
    doc = up.document
    assert up.changed and doc.revision == 1 and doc.title == "Getting a laptop" and doc.collection == "default"
    assert doc.chunk_count >= 1 and doc.char_count == len(LAPTOP) and len(doc.content_sha256) == 64
    assert {"chunk", "embed", "write", "total"} <= set(up.timings_ms)
    upsert(memory, "hr/leave.md", LEAVE)

    res = search(memory, embedder_addr, "How many days of vacation do I get?")
    assert res.hits[0].chunk.doc_id == "hr/leave.md"
    assert res.generation == memory.stub.Stats(memory_pb2.StatsRequest()).generation > 0
    assert {"search", "filter", "total"} <= set(res.timings_ms)
    res = search(memory, embedder_addr, "Which computer will I get on my first day?")
    top = res.hits[0].chunk
    assert top.doc_id == "it/laptops.md" and top.revision == 1 and top.chunk_id.startswith("it/laptops.md@1#")
    assert top.title == "Getting a laptop" and top.source == "wiki/it/laptops.md" and top.heading.startswith("Laptops")
    full = memory.stub.Get(memory_pb2.GetRequest(doc_id="it/laptops.md", include_text=True))
    assert full.text == LAPTOP and full.document.revision == 1
    assert full.text[top.start : top.end] == top.text
    assert "title:" not in "".join(h.chunk.text for h in res.hits)  # front matter is not indexed
    chunks = memory.stub.GetChunks(memory_pb2.GetChunksRequest(doc_id="it/laptops.md")).chunks
    assert [c.ordinal for c in chunks] == list(range(doc.chunk_count))
    assert all(LAPTOP[c.start : c.end] == c.text for c in chunks)


def test_revisions_noop_cas_and_atomic_replace(memory: RunningMemory, embedder_addr: str) -> None:
    assert upsert(memory, "laptops", LAPTOP).document.revision == 1
    same = upsert(memory, "laptops", LAPTOP)
    assert not same.changed and same.document.revision == 1 and "embed" not in same.timings_ms
    gen = memory.stub.Stats(memory_pb2.StatsRequest()).generation

    v2 = upsert(memory, "laptops", LAPTOP_V2)
    assert v2.changed and v2.document.revision == 2
    assert memory.stub.Stats(memory_pb2.StatsRequest()).generation > gen
    hits = search(memory, embedder_addr, "Which computer do new employees receive?", top_k=20).hits
    assert hits and {h.chunk.revision for h in hits} == {2}
    assert all("MacBook" not in h.chunk.text for h in hits) and any("Chromebook" in h.chunk.text for h in hits)
    assert len({h.chunk.chunk_id for h in hits}) == len(hits)
    # Old revision's chunks are gone from the store.
    assert memory.stub.Stats(memory_pb2.StatsRequest()).chunks == v2.document.chunk_count

    assert upsert(memory, "laptops", LAPTOP, revision=10).document.revision == 10
    code, msg = code_of(lambda: upsert(memory, "laptops", LAPTOP_V2, revision=5))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "latest revision 10" in msg
    code, msg = code_of(lambda: upsert(memory, "laptops", LAPTOP_V2, if_revision=9))
    assert code == grpc.StatusCode.ABORTED and "revision 10" in msg
    assert upsert(memory, "laptops", LAPTOP_V2, if_revision=10).document.revision == 11
    code, _ = code_of(lambda: upsert(memory, "laptops", LAPTOP, if_revision=0))
    assert code == grpc.StatusCode.ABORTED
    assert upsert(memory, "brand-new", LEAVE, if_revision=0).document.revision == 1


def test_metadata_only_change_reuses_vectors(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "leave", LEAVE)
    up = upsert(memory, "leave", LEAVE, acl=["hr"], metadata={"owner": "hr"})
    assert up.changed and up.document.revision == 2 and "embed" not in up.timings_ms and "reuse" in up.timings_ms
    hits = search(memory, embedder_addr, "annual leave days", groups=["hr"]).hits
    assert hits[0].chunk.revision == 2 and list(hits[0].chunk.acl) == ["hr"]


def test_an_edit_embeds_only_the_chunks_it_changed(memory: RunningMemory, embedder_addr: str) -> None:
    """Unchanged chunks keep their vectors (same search score); only the edited section is sent to the embedder."""
    sections = {
        "Laptops": "New employees receive a MacBook on their first day from the IT help desk.",
        "Phones": "Staff who are on call get a company phone with an unlimited data plan.",
        "Monitors": "Every desk has two 27 inch monitors; ask facilities for a third one.",
    }
    filler = " ".join(f"Rule {i} of this section is written down in the handbook." for i in range(12))
    text = "# Equipment\n\n" + "".join(f"## {h}\n\n{body} {filler}\n\n" for h, body in sections.items())
    first = upsert(memory, "equipment", text).document
    assert first.chunk_count == 3
    before = search(memory, embedder_addr, "company phone for on call staff", top_k=1).hits[0]

    sent: list[str] = []
    real_embed = memory.core.embedder.embed

    def counting(texts: list[str], dim: int) -> object:
        sent.extend(texts)
        return real_embed(texts, dim)

    memory.core.embedder.embed = counting  # type: ignore[method-assign]
    up = upsert(memory, "equipment", text.replace("a MacBook", "a Chromebook"))
    assert up.changed and up.document.revision == 2 and up.document.chunk_count == 3
    assert len(sent) == 1 and "Chromebook" in sent[0]
    after = search(memory, embedder_addr, "company phone for on call staff", top_k=1).hits[0]
    assert after.chunk.revision == 2 and after.chunk.text == before.chunk.text
    assert after.score == pytest.approx(before.score, abs=1e-6)
    hit = search(memory, embedder_addr, "Which laptop do new employees receive?", top_k=1).hits[0]
    assert hit.chunk.revision == 2 and "Chromebook" in hit.chunk.text

    sent.clear()  # a new title changes what every chunk is embedded as: all are embedded again
    upsert(memory, "equipment", "---\ntitle: Hardware\n---\n" + text)
    assert len(sent) == 3


def test_delete(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "leave", LEAVE)
    upsert(memory, "leave", LEAVE + "\nUpdated.\n")
    code, msg = code_of(lambda: memory.stub.Delete(memory_pb2.DeleteRequest(doc_id="leave", if_revision=1)))
    assert code == grpc.StatusCode.ABORTED
    before = memory.stub.Stats(memory_pb2.StatsRequest()).generation
    assert memory.stub.Delete(memory_pb2.DeleteRequest(doc_id="leave")).revision == 2
    assert search(memory, embedder_addr, "annual leave").hits == []
    code, msg = code_of(lambda: memory.stub.Delete(memory_pb2.DeleteRequest(doc_id="leave")))
    assert code == grpc.StatusCode.NOT_FOUND and "'leave'" in msg
    code, _ = code_of(lambda: memory.stub.Get(memory_pb2.GetRequest(doc_id="leave")))
    assert code == grpc.StatusCode.NOT_FOUND
    stats = memory.stub.Stats(memory_pb2.StatsRequest())
    assert stats.documents == 0 and stats.chunks == 0 and stats.generation > before


def test_acl_and_collections(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "salaries", "# Salaries\n\nThe salary bands for 2024 are secret and listed here.", acl=["hr"])
    upsert(memory, "leave", LEAVE)
    upsert(memory, "leave", "# Leave in the other wiki\n\nThirty days of leave per year.", collection="eu")

    q = "What are the salary bands?"
    assert all(h.chunk.doc_id != "salaries" for h in search(memory, embedder_addr, q).hits)
    assert all(h.chunk.doc_id != "salaries" for h in search(memory, embedder_addr, q, groups=["it"]).hits)
    assert search(memory, embedder_addr, q, groups=["it", "hr"]).hits[0].chunk.doc_id == "salaries"
    code, hidden = code_of(lambda: memory.stub.Get(memory_pb2.GetRequest(doc_id="salaries", groups=["it"])))
    _, missing = code_of(lambda: memory.stub.Get(memory_pb2.GetRequest(doc_id="salarie", groups=["it"])))
    assert code == grpc.StatusCode.NOT_FOUND and hidden.replace("salaries", "X") == missing.replace("salarie", "X")
    code, _ = code_of(lambda: memory.stub.GetChunks(memory_pb2.GetChunksRequest(doc_id="salaries")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert memory.stub.Get(memory_pb2.GetRequest(doc_id="salaries", groups=["hr"])).document.acl == ["hr"]

    eu = search(memory, embedder_addr, "How much leave?", collection="eu").hits
    assert {h.chunk.collection for h in eu} == {"eu"} and "Thirty" in eu[0].chunk.text
    default = search(memory, embedder_addr, "How much leave?", collection="default", doc_ids=["leave"]).hits
    assert {h.chunk.doc_id for h in default} == {"leave"} and "13 days" in default[0].chunk.text
    assert memory.stub.Get(memory_pb2.GetRequest(doc_id="leave", collection="eu")).document.revision == 1
    stats = memory.stub.Stats(memory_pb2.StatsRequest())
    assert stats.documents == 3 and dict(stats.documents_per_collection) == {"default": 2, "eu": 1}
    assert stats.backend in ("edge", "qdrant") and stats.dim == 384


def test_list_paginates(memory: RunningMemory) -> None:
    for i in range(7):
        upsert(memory, f"page-{i}", f"# Page {i}\n\nContent of page number {i}.", acl=["x"] if i == 3 else [])
    seen: list[str] = []
    token = ""
    for _ in range(10):
        res = memory.stub.List(memory_pb2.ListRequest(page_size=2, page_token=token))
        assert len(res.documents) <= 2
        seen += [d.doc_id for d in res.documents]
        token = res.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"page-{i}" for i in range(7) if i != 3]
    everything = memory.stub.List(memory_pb2.ListRequest(filter=common_pb2.Filter(groups=["x"])))
    assert len(everything.documents) == 7 and everything.documents[0].title.startswith("Page")
    code, msg = code_of(lambda: memory.stub.List(memory_pb2.ListRequest(page_token="garbage!")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in msg


def test_bad_input_gets_precise_errors_and_nothing_is_lost(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "leave", LEAVE)
    cases: list[tuple[Callable[[], object], grpc.StatusCode, str]] = [
        (lambda: upsert(memory, "", LEAVE), grpc.StatusCode.INVALID_ARGUMENT, "doc_id"),
        (lambda: upsert(memory, "x", ""), grpc.StatusCode.INVALID_ARGUMENT, "text"),
        (lambda: upsert(memory, "x", " \n\t "), grpc.StatusCode.INVALID_ARGUMENT, "text"),
        (lambda: upsert(memory, "x" * 600, LEAVE), grpc.StatusCode.INVALID_ARGUMENT, "limit is 512"),
        (lambda: upsert(memory, "a\x00b", LEAVE), grpc.StatusCode.INVALID_ARGUMENT, "control"),
        (lambda: upsert(memory, "x", LEAVE, acl=[""]), grpc.StatusCode.INVALID_ARGUMENT, "acl"),
        (
            lambda: upsert(memory, "big", "a" * 10_000_000),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "10000000 bytes; the limit is 5242880 bytes (WIKIMEM_MAX_DOC_BYTES)",
        ),
        (
            lambda: memory.stub.Search(memory_pb2.SearchRequest(query=vectors.to_proto(np.ones((1, 100), np.float32)))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected [1, 384]",
        ),
        (
            lambda: memory.stub.Search(memory_pb2.SearchRequest(query=embed(embedder_addr, "leave"), top_k=1001)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "top_k",
        ),
        (
            lambda: memory.stub.Search(memory_pb2.SearchRequest(query=common_pb2.Vectors(data=b"123", shape=[1, 3]))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "bytes",
        ),
    ]
    for call, code, fragment in cases:
        got, msg = code_of(call)
        assert got == code and fragment in msg, (got, msg)
    # A page of only front matter (a redirect) is stored, with no chunks.
    redirect = upsert(memory, "redirect", "---\ntitle: Moved\nredirect_to: https://example.org\n---\n").document
    assert redirect.title == "Moved" and redirect.chunk_count == 0
    assert memory.stub.GetChunks(memory_pb2.GetChunksRequest(doc_id="redirect")).chunks == []
    assert upsert(memory, "redirect", "---\ntitle: Moved\nredirect_to: https://example.org\n---\n", acl=["a"]).changed
    # Nothing stored was lost and the service is still up.
    assert search(memory, embedder_addr, "annual leave").hits[0].chunk.doc_id == "leave"
    assert memory.stub.Stats(memory_pb2.StatsRequest()).documents == 2


def test_odd_unicode_round_trips_with_exact_offsets(memory: RunningMemory, embedder_addr: str) -> None:
    text = (
        "\ufeff# Ünïcödé 👩‍💻 test\r\n\r\nZero\u200bwidth, e\u0301, RTL שלום, NUL\x00 byte, 𝄞 clef,\u2028line sep."
        "\r\n\r\n## 日本語\r\n\r\n東京は日本の首都です。休暇は年に十三日です。\r\n"
    )
    doc = upsert(memory, "unicode/ünï 👩‍💻.md", text).document
    assert doc.char_count == len(text)
    got = memory.stub.Get(memory_pb2.GetRequest(doc_id="unicode/ünï 👩‍💻.md", include_text=True))
    assert got.text == text
    chunks = memory.stub.GetChunks(memory_pb2.GetChunksRequest(doc_id="unicode/ünï 👩‍💻.md")).chunks
    assert chunks and all(text[c.start : c.end] == c.text for c in chunks)
    hits = search(memory, embedder_addr, "東京は日本の首都", top_k=0).hits
    assert hits and all(text[h.chunk.start : h.chunk.end] == h.chunk.text for h in hits)


def test_top_k_zero_means_ten(memory: RunningMemory, embedder_addr: str) -> None:
    body = "\n\n".join(f"## Section {i}\n\n" + f"Topic {i} sentence with several words. " * 60 for i in range(8))
    assert upsert(memory, "long", "# Long\n\n" + body).document.chunk_count > 10
    assert len(search(memory, embedder_addr, "topic", top_k=0).hits) == 10
    assert len(search(memory, embedder_addr, "topic", top_k=3).hits) == 3


def test_failed_write_keeps_previous_revision(memory_factory: Callable[..., RunningMemory], embedder_addr: str) -> None:
    """Stop the embedder the memory uses: the upsert fails with UNAVAILABLE, revision 1 stays searchable."""
    from wikimem_embedder.server import build

    register, close = build()
    own = wserver.start(register, "127.0.0.1:0")
    try:
        mem = memory_factory("edge", own.address)
        upsert(mem, "laptops", LAPTOP)
    finally:
        own.stop(grace=0)
        close()
    code, msg = code_of(lambda: upsert(mem, "laptops", LAPTOP_V2))
    assert code == grpc.StatusCode.UNAVAILABLE and f"embedder at {own.address} unavailable" in msg
    hits = search(mem, embedder_addr, "Which computer do new employees receive?").hits
    assert hits and {h.chunk.revision for h in hits} == {1} and "MacBook" in hits[0].chunk.text
    assert mem.stub.Get(memory_pb2.GetRequest(doc_id="laptops", include_text=True)).text == LAPTOP
    stats = mem.stub.Stats(memory_pb2.StatsRequest())
    assert stats.chunks == mem.stub.Get(memory_pb2.GetRequest(doc_id="laptops")).document.chunk_count


def test_edge_data_survives_a_restart(memory_factory: Callable[..., RunningMemory], embedder_addr: str) -> None:
    first = memory_factory("edge")
    upsert(first, "laptops", LAPTOP)
    upsert(first, "laptops", LAPTOP_V2)
    upsert(first, "leave", LEAVE, acl=["staff"])
    generation = first.stub.Stats(memory_pb2.StatsRequest()).generation
    first.stop()

    again = memory_factory("edge")
    stats = again.stub.Stats(memory_pb2.StatsRequest())
    assert stats.documents == 2 and stats.generation == generation
    assert again.stub.Get(memory_pb2.GetRequest(doc_id="laptops", include_text=True)).text == LAPTOP_V2
    hits = search(again, embedder_addr, "annual leave days", groups=["staff"]).hits
    assert hits[0].chunk.doc_id == "leave"
    hits = search(again, embedder_addr, "Which computer do new employees receive?").hits
    assert {h.chunk.revision for h in hits if h.chunk.doc_id == "laptops"} == {2}
    assert not upsert(again, "laptops", LAPTOP_V2).changed


def test_searches_never_mix_revisions_during_writes(memory: RunningMemory, embedder_addr: str) -> None:
    body = "\n\n".join(f"## Part {i}\n\n" + f"Fact {i} about the travel policy and per diem. " * 30 for i in range(6))
    n = upsert(memory, "travel", "# Travel\n\n" + body).document.chunk_count
    query = embed(embedder_addr, "travel policy per diem")
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():  # metadata-only changes: new revisions without re-embedding, as fast as possible
            i += 1
            upsert(memory, "travel", "# Travel\n\n" + body, metadata={"v": str(i)})

    def guarded(loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except Exception as exc:
                errors.append(repr(exc))
                stop.set()

        return run

    def reader() -> None:
        while not stop.is_set():
            res = memory.stub.Search(
                memory_pb2.SearchRequest(query=query, top_k=50, filter=common_pb2.Filter(doc_ids=["travel"]))
            )
            revisions = {h.chunk.revision for h in res.hits}
            ordinals = [h.chunk.ordinal for h in res.hits]
            if len(revisions) != 1 or sorted(ordinals) != list(range(n)):
                errors.append(f"revisions {revisions}, ordinals {sorted(ordinals)}")

    threads = [threading.Thread(target=guarded(f)) for f in (writer, reader, reader, reader)]
    for t in threads:
        t.start()
    stop.wait(3.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert memory.stub.Get(memory_pb2.GetRequest(doc_id="travel")).document.revision > 3


def test_chunks_left_by_a_crash_mid_write_are_never_served_and_collected(
    memory: RunningMemory, embedder_addr: str
) -> None:
    """A crash after writing a new revision's chunks but before the registry flip leaves orphans: searches
    filter them out, and the edge backend deletes them when it opens."""
    from wikimem_memory.store.base import ChunkPoint, PointFilter, chunk_point_id

    upsert(memory, "leave", LEAVE)
    store = memory.core.store
    current = store.scroll(PointFilter(doc_ids=["leave"]), 100)[0]
    vec = store.retrieve([current[0].id], with_vectors=True)[0].vector
    orphan = dict(current[0].payload, revision=7, chunk_id="leave@7#0", text="orphan text")
    store.upsert([ChunkPoint(chunk_point_id("default", "leave", 7, 0), vec, orphan)])
    hits = search(memory, embedder_addr, "annual leave days", top_k=10).hits
    assert [h.chunk.revision for h in hits] == [1] * len(hits) and all("orphan" not in h.chunk.text for h in hits)
    assert memory.core.collect_orphans() == 1
    assert store.count() == len(current)


def test_a_recreated_document_continues_its_revisions(memory: RunningMemory) -> None:
    """After a delete, doc@1 must never name a different text: the new document starts after the old revisions."""
    assert upsert(memory, "recreated", LAPTOP).document.revision == 1
    assert upsert(memory, "recreated", LAPTOP_V2).document.revision == 2
    assert memory.stub.Delete(memory_pb2.DeleteRequest(doc_id="recreated")).revision == 2
    again = memory.stub.Upsert(memory_pb2.UpsertRequest(doc_id="recreated", text=LEAVE, if_revision=0))
    assert again.document.revision == 3 and again.changed
    stale = memory_pb2.UpsertRequest(doc_id="recreated", text=LAPTOP, revision=3)
    code, msg = code_of(lambda: memory.stub.Upsert(stale))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "latest revision 3" in msg
    assert memory.stub.Stats(memory_pb2.StatsRequest()).documents == 1


def test_each_write_reports_its_generation(memory: RunningMemory) -> None:
    """Upsert and Delete return the generation they produced, so orchestrator replicas can order writes to one
    document; a no-op returns the current generation (read under the document's lock), never a larger one."""
    first = upsert(memory, "ordered", LAPTOP)
    assert first.generation == memory.stub.Stats(memory_pb2.StatsRequest()).generation > 0
    second = upsert(memory, "ordered", LAPTOP_V2)
    assert second.changed and second.generation > first.generation
    upsert(memory, "elsewhere", LEAVE)  # another document moves the generation on
    current = memory.stub.Stats(memory_pb2.StatsRequest()).generation
    noop = upsert(memory, "ordered", LAPTOP_V2)
    assert not noop.changed and noop.generation == current
    deleted = memory.stub.Delete(memory_pb2.DeleteRequest(doc_id="ordered"))
    assert deleted.revision == 2 and deleted.generation > current
    assert deleted.generation == memory.stub.Stats(memory_pb2.StatsRequest()).generation
