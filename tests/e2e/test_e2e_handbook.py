"""The 18F handbook (246 real pages): ingest it, ask questions written by hand, check the cited page."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from wikimem.client import WikimemClient
from wikimem_contract.v1 import memory_pb2, memory_pb2_grpc

from .conftest import SHARED
from .handbook_questions import QUESTIONS
from .system import System, start_system

HANDBOOK = SHARED / "handbook-18f"
PAGES = HANDBOOK / "pages"
READ_K = 5  # passages the orchestrator hands the reader (WIKIMEM_READ_K default)

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not PAGES.is_dir(), reason=f"needs the 18F handbook at {PAGES} (../shared/data)"),
]


@pytest.fixture(scope="module")
def handbook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = start_system(tmp_path_factory.mktemp("handbook"))
    files = sorted(PAGES.rglob("*.md"))
    t0 = time.perf_counter()
    with WikimemClient(running.address, timeout=600) as client, ThreadPoolExecutor(4) as pool:

        def put(path: Path) -> None:
            client.put_document(path.relative_to(PAGES).as_posix(), path.read_text(encoding="utf-8"), source=str(path))

        list(pool.map(put, files))
    print(f"\ningested {len(files)} handbook pages in {time.perf_counter() - t0:.1f}s")
    try:
        yield running
    finally:
        running.close()


def test_obvious_questions_cite_the_right_page(handbook: System) -> None:
    right_page = right_answer = 0
    latencies: list[float] = []
    misses: list[str] = []
    with WikimemClient(handbook.address, timeout=120) as client:
        assert len(list(client.list_documents())) == 246
        for q in QUESTIONS:
            t0 = time.perf_counter()
            answer = client.ask(q.question, no_cache=True, include_passages=True)
            latencies.append((time.perf_counter() - t0) * 1000)
            cited = answer.citations[0].doc_id if answer.citations else None
            # The page is found when the answer cites it or, when the reader abstains (no citation), when it is
            # among the READ_K passages the reader was given: retrieval + reranking found it either way.
            given = {p.doc_id for p in answer.passages[:READ_K]}
            right_page += cited in q.pages if cited else bool(given & set(q.pages))
            right_answer += any(a in answer.answer.lower() for a in q.answers)
            if cited not in q.pages or not any(a in answer.answer.lower() for a in q.answers):
                misses.append(f"{q.question!r}: answered {answer.answer!r} citing {cited}")
            for c in answer.citations:  # every citation is exact, whatever it cites
                assert client.get_source(c.doc_id, c.revision, c.start, c.end).passage == c.quote
    print(f"\nask latency p50 {statistics.median(latencies):.0f} ms (uncached); misses: {misses}")
    # Retrieval + reranking must find the page every time; the small extractive reader (held-out SQuAD EM 60)
    # still picks a wrong span, or abstains, on some questions (see models/reader/MODEL_CARD.md).
    assert right_page == len(QUESTIONS), misses
    assert right_answer >= len(QUESTIONS) - 2, misses


def test_every_page_is_chunked_exactly_with_its_title(handbook: System) -> None:
    """Chunk invariants on every real page: exact offsets, no empty chunks, no front matter, manifest titles."""
    titles = {
        json.loads(line)["path"].removeprefix("pages/"): json.loads(line)["title"]
        for line in (HANDBOOK / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    }
    with grpc.insecure_channel(handbook.handles["memory"].address) as channel:
        memory = memory_pb2_grpc.MemoryStub(channel)
        total = 0
        for path in sorted(PAGES.rglob("*.md")):
            doc_id, text = path.relative_to(PAGES).as_posix(), path.read_text(encoding="utf-8")
            doc = memory.Get(memory_pb2.GetRequest(doc_id=doc_id), timeout=10).document
            chunks = memory.GetChunks(memory_pb2.GetChunksRequest(doc_id=doc_id), timeout=10).chunks
            if doc_id in titles and text.startswith("---"):
                assert doc.title.startswith(titles[doc_id]), doc_id  # the manifest cuts multi-line titles
            assert len(chunks) == doc.chunk_count and doc.revision == 1
            assert chunks or text.rstrip().endswith("---"), f"{doc_id} has text but no chunks"
            body_start = text.find("\n---", 3) + 4 if text.startswith("---") else 0
            for c in chunks:
                assert text[c.start : c.end] == c.text and c.text.strip(), (doc_id, c.ordinal)
                assert len(c.text.split()) <= 250 and c.start >= body_start, (doc_id, c.ordinal)
            total += len(chunks)
        assert memory.Stats(memory_pb2.StatsRequest(), timeout=10).chunks == total
