"""BM25 in the store, on both backends: the sparse vector lives in the chunk point, the engine applies IDF over the
caller's corpus, filters run inside the search, replace / delete take effect at once, both engines agree, and a
store made before lexical retrieval existed opens dense-only instead of failing."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from wikimem_common.errors import FailedPrecondition
from wikimem_memory import lexical
from wikimem_memory.store import Backend, open_backend
from wikimem_memory.store.base import ChunkPoint, PointFilter, VectorStore, chunk_point_id, read_list
from wikimem_memory.store.qdrant import QdrantVectorStore

from .conftest import memory_config

DIM = 384

#: (doc, collection, acl, text): "default" holds five public and one restricted doc, "other" one more.
DOCS = [
    ("pumps", "default", [], "The QX-1200 pump moves coolant through the reactor loop. Pumps are checked weekly."),
    ("valves", "default", [], "Valves and pumps: every valve is tested monthly, every pump weekly, by the night crew."),
    ("lunch", "default", [], "The canteen serves lunch from noon; vegetarian dishes are marked green."),
    ("badges", "default", [], "Visitor badges are printed at reception. Lost badges are reported to security."),
    ("coolant", "default", [], "Coolant levels in the reactor loop are logged hourly; a drop means a leak."),
    ("secret", "default", ["ops"], "The emergency shutdown code for the reactor loop is kept by the ops team."),
    ("elsewhere", "other", [], "Pumps pumps pumps: the other wiki talks about pumps and reactor pumps a lot."),
]


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def point(i: int, doc: str, collection: str, acl: list[str], text: str, revision: int = 1) -> ChunkPoint:
    return ChunkPoint(
        id=chunk_point_id(collection, doc, revision, 0),
        vector=vec(i),
        sparse=lexical.document_vector(text),
        payload={
            "chunk_id": f"{doc}@{revision}#0",
            "doc_id": doc,
            "revision": revision,
            "collection": collection,
            "ordinal": 0,
            "text": text,
            "acl": acl,
            "read": read_list(acl),
        },
    )


def corpus() -> list[ChunkPoint]:
    return [point(i, *d) for i, d in enumerate(DOCS)]


def reference_bm25(query: str, docs: list[tuple[str, str]]) -> dict[str, float]:
    """BM25 computed here from the terms (same constants, Lucene IDF over `docs`), to check the engines."""
    vectors = {doc: lexical.document_vector(text) for doc, text in docs}
    df: Counter[int] = Counter(i for v in vectors.values() for i in v.indices)
    n = sum(1 for v in vectors.values() if len(v))
    q = lexical.query_vector(query)
    scores: dict[str, float] = {}
    for doc, v in vectors.items():
        weights = dict(zip(v.indices, v.values, strict=True))
        s = sum(
            qw * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * weights[t]
            for t, qw in zip(q.indices, q.values, strict=True)
            if t in weights
        )
        if s > 0:
            scores[doc] = s
    return scores


@pytest.fixture
def loaded(backend: Backend) -> Backend:
    assert backend.store.lexical
    backend.store.upsert(corpus())
    return backend


def search(
    b: Backend, text: str, flt: PointFilter, corpus_filter: PointFilter | None = None
) -> list[tuple[str, float]]:
    hits = b.store.search_lexical(lexical.query_vector(text), 50, flt, corpus_filter or PointFilter())
    return [(h.payload["doc_id"], h.score) for h in hits]


class TestLexicalConformance:
    def test_scores_are_bm25_with_idf_over_the_given_corpus(self, loaded: Backend) -> None:
        query = "weekly pump checks in the reactor loop"
        # IDF over the public part of "default" (what an outsider may search there).
        public = PointFilter(collection="default", groups=[])
        got = search(loaded, query, public, public)
        expected = reference_bm25(query, [(d, t) for d, c, acl, t in DOCS if c == "default" and not acl])
        assert [d for d, _ in got] == sorted(expected, key=lambda d: -expected[d])
        for doc, score in got:
            assert score == pytest.approx(expected[doc], rel=1e-4)
        # Only documents that share a term are returned; a query with no known term finds nothing.
        assert {d for d, _ in got} == {"pumps", "valves", "coolant"}
        assert search(loaded, "zebra xylophone", PointFilter()) == []
        assert search(loaded, "the and of", PointFilter()) == []  # stopwords only: no terms

    def test_the_idf_corpus_keeps_other_collections_and_hidden_documents_out_of_the_scores(
        self, loaded: Backend
    ) -> None:
        """'pumps' is everywhere in the other wiki; scoped IDF keeps that from changing this wiki's scores."""
        flt = PointFilter(collection="default", groups=[])
        scoped = dict(search(loaded, "pumps", flt, PointFilter(collection="default", groups=[])))
        global_ = dict(search(loaded, "pumps", flt, PointFilter()))
        assert scoped.keys() == global_.keys() == {"pumps", "valves"}
        assert scoped["pumps"] > global_["pumps"]  # rarer in the scoped corpus -> higher IDF
        # The restricted document shares "reactor loop": it changes IDF only for callers who may read it.
        outsider = dict(search(loaded, "reactor", flt, flt))
        ops = PointFilter(collection="default", groups=["ops"])
        insider = dict(search(loaded, "reactor", ops, ops))
        assert "secret" not in outsider and "secret" in insider
        assert insider["coolant"] < outsider["coolant"]

    def test_filters_run_inside_the_search(self, loaded: Backend) -> None:
        q = "reactor loop pumps"
        assert {d for d, _ in search(loaded, q, PointFilter(collection="other"))} == {"elsewhere"}
        outsider = {d for d, _ in search(loaded, q, PointFilter(collection="default", groups=["nobody"]))}
        assert "secret" not in outsider and "elsewhere" not in outsider and "pumps" in outsider
        insider = {d for d, _ in search(loaded, q, PointFilter(collection="default", groups=["ops"]))}
        assert "secret" in insider
        assert {d for d, _ in search(loaded, q, PointFilter(doc_ids=["coolant", "lunch"]))} == {"coolant"}
        assert search(loaded, q, PointFilter(revision=2)) == []
        # Limit: the best ones.
        hits = loaded.store.search_lexical(lexical.query_vector(q), 2, PointFilter(), PointFilter())
        assert len(hits) == 2 and hits[0].score >= hits[1].score

    def test_replace_and_delete_take_effect_at_once(self, loaded: Backend) -> None:
        store = loaded.store
        flt = PointFilter(collection="default")
        assert "lunch" in {d for d, _ in search(loaded, "vegetarian canteen", flt)}
        # Same point id, new text: the old terms stop matching, the new ones match (never both).
        replaced = point(2, "lunch", "default", [], "Breakfast is served from eight in the cafeteria.")
        store.upsert([replaced])
        assert search(loaded, "vegetarian canteen", flt) == []
        assert [d for d, _ in search(loaded, "breakfast cafeteria", flt)] == ["lunch"]
        # A new revision under a new id, then the old one deleted (what the service does on replace).
        rev2 = point(3, "badges", "default", [], "Contractor passes are issued by facilities.", revision=2)
        store.upsert([rev2])
        store.delete_where(PointFilter(collection="default", doc_ids=["badges"], exclude_revision=2))
        assert search(loaded, "visitor badges reception", flt) == []
        assert search(loaded, "contractor passes", flt)[0][0] == "badges"
        store.delete_ids([rev2.id])
        assert search(loaded, "contractor passes", flt) == []
        # The sparse vector round-trips with the point.
        got = store.retrieve([replaced.id], with_vectors=True)[0]
        assert got.sparse is not None and replaced.sparse is not None and got.vector.shape == (DIM,)
        assert got.sparse.indices == replaced.sparse.indices
        np.testing.assert_allclose(got.sparse.values, replaced.sparse.values, rtol=1e-6)  # stored as float32


def test_backends_return_congruent_lexical_results(tmp_path: Path) -> None:
    backends = [
        open_backend(memory_config(kind, tmp_path / kind), optimize_in_background=False) for kind in ("edge", "qdrant")
    ]
    try:
        for b in backends:
            b.store.upsert(corpus())
        queries = ["pump", "reactor loop coolant leak", "badges lunch", "weekly monthly tested", "pumps reactor"]
        filters = [
            PointFilter(),
            PointFilter(collection="default", groups=[]),
            PointFilter(collection="default", groups=["ops"], exclude_revision=2),
            PointFilter(doc_ids=["pumps", "elsewhere", "secret"]),
        ]
        for q in queries:
            for flt in filters:
                edge, qdrant = (b.store.search_lexical(lexical.query_vector(q), 5, flt, flt) for b in backends)
                assert [h.id for h in edge] == [h.id for h in qdrant], (q, flt)
                np.testing.assert_allclose([h.score for h in edge], [h.score for h in qdrant], rtol=1e-5)
    finally:
        for b in backends:
            b.close()


def test_edge_lexical_index_survives_reopen_and_optimize(tmp_path: Path) -> None:
    config = memory_config("edge", tmp_path)
    first = open_backend(config, optimize_in_background=False)
    first.store.upsert(corpus())
    first.store.optimize()
    before = search(first, "reactor loop", PointFilter())
    first.close()
    again = open_backend(config, optimize_in_background=False)
    try:
        assert again.store.lexical and search(again, "reactor loop", PointFilter()) == before != []
    finally:
        again.close()


def _assert_dense_only(s: VectorStore, points: list[ChunkPoint]) -> None:
    assert not s.lexical
    s.upsert(points)  # writes keep working (dense only; the sparse vectors are left out)
    assert s.count() == len(points)
    assert s.search(points[4].vector, 1, PointFilter())[0].id == points[4].id  # dense search still works
    with pytest.raises(FailedPrecondition, match="re-ingest"):
        s.search_lexical(lexical.query_vector("pumps"), 5, PointFilter(), PointFilter())


def test_a_pre_lexical_edge_shard_opens_dense_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A data directory made before this change (dense vectors only) keeps working for dense search and says
    clearly, in the log and on bm25 requests, that lexical retrieval needs a re-ingest; nothing is rewritten."""
    shard_dir = tmp_path / "memory" / "shard"
    shard_dir.mkdir(parents=True)
    old = qe.EdgeShard.create(
        str(shard_dir), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine))
    )
    points = corpus()
    old.update(qe.UpdateOperation.upsert_points([qe.Point(p.id, p.vector.tolist(), p.payload) for p in points]))
    old.flush()
    old.close()
    with caplog.at_level("WARNING"):
        b = open_backend(memory_config("edge", tmp_path), optimize_in_background=False)
    try:
        assert any("re-ingest" in r.getMessage() for r in caplog.records)
        assert b.store.count() == len(points)
        _assert_dense_only(b.store, points)
    finally:
        b.close()
    again = open_backend(memory_config("edge", tmp_path), optimize_in_background=False)  # still opens, unchanged
    try:
        assert not again.store.lexical and again.store.count() == len(points)
    finally:
        again.close()


def test_a_pre_lexical_qdrant_collection_is_used_dense_only() -> None:
    client = QdrantClient(":memory:")
    client.create_collection("old_chunks", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE))
    store = QdrantVectorStore(client, "old_chunks", DIM)
    _assert_dense_only(store, corpus())
    client.close()


def test_an_edge_shard_of_another_embedding_size_is_an_error_not_a_downgrade(tmp_path: Path) -> None:
    from wikimem_common.config import ConfigError
    from wikimem_memory.store.edge import EdgeVectorStore

    EdgeVectorStore(tmp_path / "shard", DIM).close()
    with pytest.raises(ConfigError, match="another embedding size"):
        EdgeVectorStore(tmp_path / "shard", 128)
    again = EdgeVectorStore(tmp_path / "shard", DIM)  # untouched: still lexical
    try:
        assert again.lexical
    finally:
        again.close()
