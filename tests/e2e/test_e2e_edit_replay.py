"""Replay of 300 real edits of the 18F handbook against the running system (edge backend).

Every page is first put at its oldest text, then the edits are applied in commit order through the client. After
each edit the Memory service is asked directly: GetChunks must return exactly the new revision's chunks (with
their exact text), and a search for a changed line must return the new revision and no chunk of an older one —
the first search after PutDocument returned, without retrying (read-your-writes). At the end the memory must
hold exactly the chunks of the final pages: no leftovers of old revisions.

Prints the PutDocument latency (send → ack) and the ack → first search returning the new revision latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from wikimem.client import WikimemClient
from wikimem_contract.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, memory_pb2, memory_pb2_grpc
from wikimem_memory.chunking import chunk_document
from wikimem_memory.config import MemoryConfig

from .conftest import SHARED
from .system import System, start_system

HISTORY = SHARED / "handbook-18f" / "edit_history.jsonl"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not HISTORY.exists(), reason=f"{HISTORY} is absent (shared data set not installed)"),
]


def load_edits() -> list[dict[str, str]]:
    """The edits oldest first (the file lists them newest first; each edit's `before` is the previous `after`)."""
    rows = [json.loads(line) for line in HISTORY.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.reverse()
    return rows


def doc_id_of(path: str) -> str:
    return path.removeprefix("pages/")


def probe_line(before: str, after: str) -> str:
    """The longest body line of `after` that `before` does not have (else the longest body line of `after`).
    Heading lines come last: a heading is a chunk's context, not part of its text."""
    body = after[chunk_document(after).body_start :]
    old = {ln.strip() for ln in before.splitlines()}
    lines = [ln.strip() for ln in body.splitlines() if len(ln.strip()) > 3]
    new = [ln for ln in lines if ln not in old]
    for pool in ([ln for ln in new if not ln.startswith("#")], new, lines):
        if pool:
            return max(pool, key=len)
    return body.strip() or after.strip()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = start_system(tmp_path_factory.mktemp("wikimem-replay"), backend="edge")
    try:
        yield running
    finally:
        running.close()


def test_replay_300_real_edits(system: System) -> None:
    edits = load_edits()
    assert len(edits) == 300
    memory_channel = grpc.insecure_channel(system.handles["memory"].address)
    embedder_channel = grpc.insecure_channel(system.handles["embedder"].address)
    memory = memory_pb2_grpc.MemoryStub(memory_channel)
    embedder = embedder_pb2_grpc.EmbedderStub(embedder_channel)
    client = WikimemClient(system.address, timeout=300)
    try:
        # 1. every page at its oldest text
        first: dict[str, str] = {}
        for e in edits:
            first.setdefault(doc_id_of(e["path"]), e["before"])
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda kv: client.put_document(kv[0], kv[1], source=f"pages/{kv[0]}"), first.items()))
        final = dict(first)

        put_ms: list[float] = []
        visible_ms: list[float] = []
        global_hits = 0
        for n, e in enumerate(edits):
            doc_id, after = doc_id_of(e["path"]), e.get("after") or ""
            assert final[doc_id] == e["before"], f"edit {n} ({e['commit']}) does not apply to the current text"
            where = f"edit {n} {e['commit'][:8]} {doc_id}"
            if not after.strip():  # a deleted page
                client.delete_document(doc_id)
                final.pop(doc_id)
                with pytest.raises(grpc.RpcError) as gone:
                    memory.GetChunks(memory_pb2.GetChunksRequest(doc_id=doc_id))
                assert gone.value.code() == grpc.StatusCode.NOT_FOUND, where
                continue
            query = probe_line(e["before"], after)
            vector = embedder.Embed(embedder_pb2.EmbedRequest(texts=[query])).vectors  # before the write: not timed

            sent = time.perf_counter()
            result = client.put_document(doc_id, after, source=e["path"])
            acked = time.perf_counter()
            revision = result.document.revision
            assert result.changed, where
            search = memory.Search(
                memory_pb2.SearchRequest(
                    query=vector, top_k=10, filter=common_pb2.Filter(doc_ids=[doc_id]), query_text=query
                )
            )
            seen = time.perf_counter()
            final[doc_id] = after
            put_ms.append((acked - sent) * 1000)
            visible_ms.append((seen - acked) * 1000)

            # the first search after the ack already sees the new revision, and only it
            assert search.hits, where
            assert {h.chunk.revision for h in search.hits} == {revision}, where
            # the whole memory: no chunk of an older revision of this page comes back
            wide = memory.Search(memory_pb2.SearchRequest(query=vector, top_k=20, query_text=query))
            mine = [h for h in wide.hits if h.chunk.doc_id == doc_id]
            assert all(h.chunk.revision == revision for h in mine), where
            global_hits += bool(mine)
            # exactly the new revision's chunks, with their exact text
            chunks = memory.GetChunks(memory_pb2.GetChunksRequest(doc_id=doc_id)).chunks
            assert len(chunks) == result.document.chunk_count, where
            assert all(c.revision == revision and c.text == after[c.start : c.end] for c in chunks), where
            # the changed line is indexed: every non-blank character of it lies inside a chunk of the new revision
            at = after.find(query, chunk_document(after).body_start)
            if at >= 0 and not query.startswith("#"):
                covered = {i for c in chunks for i in range(max(c.start, at), min(c.end, at + len(query)))}
                assert all(at + i in covered for i, ch in enumerate(query) if not ch.isspace()), where

        print(
            f"\nreplayed {len(edits)} edits of {len(first)} pages"
            f"\nPutDocument send→ack ms: p50 {percentile(put_ms, 50):.1f}  p99 {percentile(put_ms, 99):.1f}"
            f"  max {max(put_ms):.1f}"
            f"\nack→first search returning the new revision ms: p50 {percentile(visible_ms, 50):.1f}"
            f"  p99 {percentile(visible_ms, 99):.1f}  max {max(visible_ms):.1f}"
            f"\nchanged line's page in the unfiltered top 20: {global_hits}/{len(put_ms)}"
        )

        # 2. no duplicates, no leftovers: the memory holds exactly the chunks of the final pages
        cfg = MemoryConfig.from_env()  # the chunking settings the system was started with
        expected = sum(
            len(
                chunk_document(
                    text,
                    doc_id=doc_id,
                    source=f"pages/{doc_id}",
                    target_words=cfg.chunk_target_words,
                    max_words=cfg.chunk_max_words,
                    overlap_words=cfg.chunk_overlap_words,
                ).chunks
            )
            for doc_id, text in final.items()
        )
        stats = memory.Stats(memory_pb2.StatsRequest())
        print(f"final: {stats.documents} pages, {stats.chunks} chunks (expected {expected})")
        assert stats.documents == len(final)
        assert stats.chunks == expected
        listed = list(client.list_documents(page_size=500))
        assert {d.doc_id for d in listed} == set(final)
        assert sum(d.chunk_count for d in listed) == expected
        assert global_hits >= 0.5 * len(put_ms)  # the changed line finds its page in the whole wiki
    finally:
        client.close()
        memory_channel.close()
        embedder_channel.close()
