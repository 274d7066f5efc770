"""Ingest the 18F handbook (246 Markdown pages) through the Memory service with the real embedder and check the
chunk invariants on every page: exact offsets, no empty chunks, titles from front matter."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wikimem.v1 import memory_pb2

from .conftest import RunningMemory
from .test_memory_service import search

HANDBOOK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "handbook-18f"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.slow,
    pytest.mark.skipif(not (HANDBOOK / "pages").is_dir(), reason=f"18F handbook not found at {HANDBOOK}"),
]


def test_ingest_handbook_and_check_every_chunk(
    memory_factory: Callable[..., RunningMemory], embedder_addr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pages = HANDBOOK / "pages"
    files = sorted(pages.rglob("*.md"))
    assert len(files) == 246
    titles = {
        json.loads(line)["path"].removeprefix("pages/"): json.loads(line)["title"]
        for line in (HANDBOOK / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    }
    mem = memory_factory("edge")
    texts = {str(f.relative_to(pages)): f.read_text(encoding="utf-8") for f in files}

    def put(doc_id: str) -> memory_pb2.UpsertResponse:
        return mem.stub.Upsert(
            memory_pb2.UpsertRequest(doc_id=doc_id, text=texts[doc_id], source=f"handbook-18f/pages/{doc_id}")
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent writers: the embedder batches them together
        responses = list(pool.map(put, texts))
    seconds = time.perf_counter() - t0
    chunks_total = sum(r.document.chunk_count for r in responses)
    stages: dict[str, float] = {}
    for r in responses:
        for stage, ms in r.timings_ms.items():
            stages[stage] = stages.get(stage, 0.0) + ms / 1000
    with capsys.disabled():
        print(
            f"\n18F handbook: {len(files)} pages, {chunks_total} chunks ingested in {seconds:.1f}s "
            f"(summed over requests, s: {', '.join(f'{k} {v:.1f}' for k, v in sorted(stages.items()))})"
        )

    stats = mem.stub.Stats(memory_pb2.StatsRequest())
    assert stats.documents == 246 and stats.chunks == chunks_total
    for doc_id, text in texts.items():
        chunks = mem.stub.GetChunks(memory_pb2.GetChunksRequest(doc_id=doc_id)).chunks
        doc = mem.stub.Get(memory_pb2.GetRequest(doc_id=doc_id)).document
        if doc_id in titles and text.startswith("---"):
            assert doc.title.startswith(titles[doc_id]), doc_id  # the manifest cuts multi-line titles
        assert len(chunks) == doc.chunk_count
        assert chunks or text.rstrip().endswith("---"), f"{doc_id} has text but no chunks"
        for c in chunks:
            assert text[c.start : c.end] == c.text and c.text.strip(), (doc_id, c.ordinal)
            assert len(c.text.split()) <= 250
            assert c.start >= text.find("\n---", 3) + 4 if text.startswith("---") else True  # no front matter
    # Re-sending unchanged pages is a no-op.
    assert not put("about.md").changed

    hits = search(mem, embedder_addr, "What is the TTS Handbook?", top_k=5).hits
    assert "about.md" in {h.chunk.doc_id for h in hits}
