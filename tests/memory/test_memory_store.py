"""One conformance suite for both vector-store backends (edge: qdrant-edge-py; qdrant: qdrant-client :memory:),
plus a congruence check that both return the same search results, and edge persistence across a reopen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wikimem_memory.store import Backend, open_backend
from wikimem_memory.store.base import (
    ChunkPoint,
    DocRecord,
    PointFilter,
    chunk_point_id,
    read_list,
)

from .conftest import memory_config

DIM = 384


def unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def corpus() -> list[ChunkPoint]:
    """40 chunk points: 8 documents x 5 chunks over 2 collections, some with acls, revisions 1 and 2."""
    vecs = unit_vectors(40, seed=7)
    points = []
    for d in range(8):
        collection = "default" if d < 6 else "other"
        acl = [] if d % 3 else [f"team-{d}"]
        revision = 1 + d % 2
        for o in range(5):
            points.append(
                ChunkPoint(
                    id=chunk_point_id(collection, f"doc-{d}", revision, o),
                    vector=vecs[d * 5 + o],
                    payload={
                        "chunk_id": f"doc-{d}@{revision}#{o}",
                        "doc_id": f"doc-{d}",
                        "revision": revision,
                        "collection": collection,
                        "ordinal": o,
                        "text": f"chunk {o} of doc {d} — ünïcødé ✓",
                        "acl": acl,
                        "read": read_list(acl),
                    },
                )
            )
    return points


def ids_of(points: list) -> set[str]:
    return {p.id for p in points}


@pytest.fixture
def loaded(backend: Backend) -> Backend:
    backend.store.upsert(corpus())
    return backend


class TestVectorStoreConformance:
    def test_upsert_count_retrieve(self, loaded: Backend) -> None:
        store = loaded.store
        pts = corpus()
        assert store.count() == 40
        assert store.count(PointFilter(collection="other")) == 10
        got = store.retrieve([pts[3].id, pts[17].id, "00000000-0000-0000-0000-000000000000"], with_vectors=True)
        assert ids_of(got) == {pts[3].id, pts[17].id}
        by_id = {p.id: p for p in got}
        np.testing.assert_allclose(by_id[pts[3].id].vector, pts[3].vector, atol=1e-5)
        assert by_id[pts[3].id].payload["text"] == pts[3].payload["text"]
        # Upserting the same id replaces the point.
        replaced = ChunkPoint(pts[3].id, pts[3].vector, {**pts[3].payload, "text": "new"})
        store.upsert([replaced])
        assert store.count() == 40
        assert store.retrieve([pts[3].id])[0].payload["text"] == "new"

    def test_search_ranks_by_cosine_and_filters_inside_the_search(self, loaded: Backend) -> None:
        store = loaded.store
        pts = corpus()
        hits = store.search(pts[12].vector, 5, PointFilter())
        assert hits[0].id == pts[12].id and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # Collection: only "other" points, even though the query is a "default" point.
        hits = store.search(pts[12].vector, 50, PointFilter(collection="other"))
        assert len(hits) == 10 and {h.payload["collection"] for h in hits} == {"other"}
        # ACL: no groups → only public chunks; a group adds its own documents.
        public = store.search(pts[0].vector, 50, PointFilter(collection="default", groups=[]))
        assert {h.payload["doc_id"] for h in public} == {"doc-1", "doc-2", "doc-4", "doc-5"}
        team = store.search(pts[0].vector, 50, PointFilter(collection="default", groups=["team-0", "nobody"]))
        assert {h.payload["doc_id"] for h in team} == {"doc-0", "doc-1", "doc-2", "doc-4", "doc-5"}
        assert team[0].id == pts[0].id
        # Doc ids and revisions.
        some = store.search(pts[0].vector, 50, PointFilter(doc_ids=["doc-2", "doc-7"]))
        assert {h.payload["doc_id"] for h in some} == {"doc-2", "doc-7"}
        rev2 = store.search(pts[0].vector, 50, PointFilter(revision=2))
        assert {h.payload["revision"] for h in rev2} == {2} and len(rev2) == 20
        not2 = store.search(pts[0].vector, 50, PointFilter(exclude_revision=2))
        assert {h.payload["revision"] for h in not2} == {1} and len(not2) == 20

    def test_delete_by_ids_and_filter(self, loaded: Backend) -> None:
        store = loaded.store
        pts = corpus()
        store.delete_ids([pts[0].id, pts[1].id])
        assert store.count() == 38 and store.retrieve([pts[0].id]) == []
        store.delete_where(PointFilter(collection="default", doc_ids=["doc-2"], exclude_revision=99))
        assert store.count(PointFilter(doc_ids=["doc-2"])) == 0
        assert store.count() == 33
        with pytest.raises(ValueError):
            store.delete_where(PointFilter())

    def test_scroll_pages_cover_every_point_once(self, loaded: Backend) -> None:
        seen: list[str] = []
        offset = None
        while True:
            page, offset = loaded.store.scroll(PointFilter(collection="default"), 7, offset)
            assert len(page) <= 7
            seen += [p.id for p in page]
            if offset is None:
                break
        assert len(seen) == len(set(seen)) == 30


def record(doc: str, revision: int = 1, collection: str = "default", acl: list[str] | None = None) -> DocRecord:
    return DocRecord(
        collection=collection,
        doc_id=doc,
        revision=revision,
        title=f"Title {doc}",
        source=f"{doc}.md",
        acl=acl or [],
        content_sha256="ab" * 32,
        chunk_count=3,
        char_count=100,
        updated_at=1700000000.5,
        metadata={"team": "wiki", "ünï": "ok"},
    )


class TestRegistryConformance:
    def test_put_get_text_revisions_generation(self, backend: Backend) -> None:
        reg = backend.registry
        assert reg.generation() == 0 and reg.get("default", "a") is None and reg.get_text("default", "a") is None
        g1 = reg.put(record("a"), "text of a — ✓\r\n\x00odd")
        g2 = reg.put(record("a", revision=2), "second")
        g3 = reg.put(record("a", collection="other"), "other a")
        assert g1 < g2 < g3 == reg.generation()
        assert reg.get("default", "a") == record("a", revision=2)
        assert reg.get_text("default", "a") == "second"
        assert reg.get_text("other", "a") == "other a"
        assert reg.revisions([("default", "a"), ("other", "a"), ("default", "zzz")]) == {
            ("default", "a"): 2,
            ("other", "a"): 1,
        }
        assert reg.counts() == {"default": 1, "other": 1}
        g4 = reg.delete("default", "a")
        assert g4 > g3 and reg.get("default", "a") is None and reg.revisions([("default", "a")]) == {}
        reg.put(record("b"), "text of b — ✓\r\n\x00odd")
        assert reg.get_text("default", "b") == "text of b — ✓\r\n\x00odd"

    def test_list_pages_with_acl_and_doc_ids(self, backend: Backend) -> None:
        reg = backend.registry
        for i in range(23):
            reg.put(record(f"d{i:02d}", acl=["secret"] if i % 4 == 0 else []), f"text {i}")
        reg.put(record("elsewhere", collection="other"), "x")

        def all_pages(groups: list[str] | None, doc_ids: list[str] | None = None) -> list[str]:
            out: list[str] = []
            cursor = None
            for _ in range(50):
                page, cursor = reg.list("default", groups, doc_ids, 5, cursor)
                assert len(page) <= 5
                out += [r.doc_id for r in page]
                if cursor is None:
                    return out
            raise AssertionError("listing did not end")

        everyone = all_pages([])
        assert sorted(everyone) == [f"d{i:02d}" for i in range(23) if i % 4]
        assert len(everyone) == len(set(everyone))
        assert sorted(all_pages(["secret"])) == [f"d{i:02d}" for i in range(23)]
        assert sorted(all_pages(None, ["d01", "d04", "nope"])) == ["d01", "d04"]
        assert sorted(all_pages([], ["d01", "d04"])) == ["d01"]


def test_backends_return_congruent_search_results(tmp_path: Path) -> None:
    """Same points and queries on both engines → same hits in the same order, same scores."""
    backends = [
        open_backend(memory_config(kind, tmp_path / kind), optimize_in_background=False) for kind in ("edge", "qdrant")
    ]
    try:
        for b in backends:
            b.store.upsert(corpus())
        queries = unit_vectors(15, seed=99)
        filters = [
            PointFilter(),
            PointFilter(collection="default", groups=[]),
            PointFilter(collection="default", groups=["team-3"], exclude_revision=1),
            PointFilter(doc_ids=["doc-1", "doc-6", "doc-7"]),
        ]
        for q in queries:
            for flt in filters:
                edge, qdrant = (b.store.search(q, 8, flt) for b in backends)
                assert [h.id for h in edge] == [h.id for h in qdrant]
                np.testing.assert_allclose([h.score for h in edge], [h.score for h in qdrant], atol=1e-5)
                assert [h.payload for h in edge] == [h.payload for h in qdrant]
    finally:
        for b in backends:
            b.close()


def test_edge_data_survives_reopen(tmp_path: Path) -> None:
    config = memory_config("edge", tmp_path)
    first = open_backend(config, optimize_in_background=False)
    first.store.upsert(corpus())
    generation = first.registry.put(record("doc-1", revision=2), "persisted text")
    first.store.optimize()  # builds segments/HNSW; the data must survive it too
    first.store.upsert(corpus()[:1])
    first.close()

    again = open_backend(config, optimize_in_background=False)
    try:
        assert again.store.count() == 40
        pts = corpus()
        assert again.store.search(pts[9].vector, 1, PointFilter())[0].id == pts[9].id
        assert again.registry.get("default", "doc-1") == record("doc-1", revision=2)
        assert again.registry.get_text("default", "doc-1") == "persisted text"
        assert again.registry.generation() == generation > 0
    finally:
        again.close()


def test_edge_directory_is_single_process(tmp_path: Path) -> None:
    from wikimem_common.config import ConfigError

    config = memory_config("edge", tmp_path)
    first = open_backend(config, optimize_in_background=False)
    try:
        with pytest.raises(ConfigError, match="in use by another process"):
            open_backend(config, optimize_in_background=False)
    finally:
        first.close()


def test_background_optimizer_runs_after_bulk_writes(tmp_path: Path) -> None:
    import time

    from wikimem_memory.store.edge import BackgroundOptimizer, EdgeVectorStore

    store = EdgeVectorStore(tmp_path / "shard", DIM)
    optimizer = BackgroundOptimizer(store, interval_s=0.05, min_changes=30, quiet_s=0.1)
    try:
        store.upsert(corpus()[:10])
        time.sleep(0.4)
        assert optimizer.runs == 0  # too few changes to be worth it
        store.upsert(corpus()[10:])
        deadline = time.monotonic() + 20
        while optimizer.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert optimizer.runs == 1 and store.changes == 0
        pts = corpus()
        assert store.search(pts[33].vector, 1, PointFilter())[0].id == pts[33].id
    finally:
        optimizer.close()
        store.close()
