"""End-to-end fixtures: the five real services (real models, Qdrant Edge, real Redis) wired together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wikimem.client import WikimemClient

from .system import System, start_system

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "wiki"
SHARED = REPO.parent / "shared" / "data"


def put_folder(client: WikimemClient, folder: Path, collection: str = "") -> int:
    count = 0
    for path in sorted(folder.rglob("*.md")):
        client.put_document(
            path.relative_to(folder).as_posix(),
            path.read_text(encoding="utf-8"),
            source=str(path),
            collection=collection,
        )
        count += 1
    return count


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[System]:
    """A system with the sample wiki (examples/wiki) ingested, caching in a real Redis."""
    running = start_system(tmp_path_factory.mktemp("wikimem-data"), redis_url=redis_server.url)
    try:
        with WikimemClient(running.address) as client:
            assert put_folder(client, EXAMPLES) >= 8
        yield running
    finally:
        running.close()


@pytest.fixture
def client(system: System) -> Iterator[WikimemClient]:
    with WikimemClient(system.address, timeout=60) as c:
        yield c
