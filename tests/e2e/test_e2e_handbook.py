"""The 18F handbook (246 real pages): ingest it, ask questions written by hand, check the cited page."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wikimem.client import WikimemClient

from .conftest import SHARED
from .handbook_questions import QUESTIONS
from .system import System, start_system

PAGES = SHARED / "handbook-18f" / "pages"

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
            answer = client.ask(q.question, no_cache=True)
            latencies.append((time.perf_counter() - t0) * 1000)
            cited = answer.citations[0].doc_id if answer.citations else None
            right_page += cited in q.pages
            right_answer += any(a in answer.answer.lower() for a in q.answers)
            if cited not in q.pages or not any(a in answer.answer.lower() for a in q.answers):
                misses.append(f"{q.question!r}: answered {answer.answer!r} citing {cited}")
            for c in answer.citations:  # every citation is exact, whatever it cites
                assert client.get_source(c.doc_id, c.revision, c.start, c.end).passage == c.quote
    print(f"\nask latency p50 {statistics.median(latencies):.0f} ms (uncached); misses: {misses}")
    assert right_page == len(QUESTIONS), misses
    assert right_answer >= len(QUESTIONS) - 1, misses
