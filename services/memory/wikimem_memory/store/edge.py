"""Embedded Qdrant Edge (qdrant-edge-py) as the vector store: one shard directory, one process.

Each point holds the dense vector (unnamed) and the sparse BM25 vector `bm25` with Qdrant's IDF modifier. A shard
made before lexical retrieval existed has only the dense vector: it opens as a dense-only store (`lexical=False`,
a warning in the log) instead of failing, and keeps answering dense searches.

`optimize()` builds HNSW and merges segments but holds the GIL while it runs, so it never runs on the request
path: `BackgroundOptimizer` calls it from a thread once enough points changed and writes have been quiet for a
moment (after a bulk ingest), at most once per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from wikimem_common.config import ConfigError
from wikimem_common.errors import FailedPrecondition

from .base import (
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    LEXICAL_VECTOR,
    NO_LEXICAL_INDEX,
    PUBLIC,
    ChunkPoint,
    Hit,
    PointFilter,
    SparseVector,
    point_of_record,
)

log = logging.getLogger("wikimem.memory.edge")


def edge_filter(flt: PointFilter | None) -> qe.Filter | None:
    if flt is None:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    if flt.collection is not None:
        must.append(qe.FieldCondition("collection", match=qe.MatchValue(flt.collection)))
    if flt.groups is not None:
        must.append(qe.FieldCondition("read", match=qe.MatchAny([PUBLIC, *flt.groups])))
    if flt.doc_ids is not None:
        must.append(qe.FieldCondition("doc_id", match=qe.MatchAny(list(flt.doc_ids))))
    if flt.revision is not None:
        must.append(qe.FieldCondition("revision", match=qe.MatchValue(flt.revision)))
    if flt.exclude_revision is not None:
        must_not.append(qe.FieldCondition("revision", match=qe.MatchValue(flt.exclude_revision)))
    if flt.revision_below is not None:
        must.append(qe.FieldCondition("revision", range=qe.RangeFloat(lt=flt.revision_below)))
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


def _hits(points: list[Any]) -> list[Hit]:
    """Best first; equal scores by id, so both backends order ties alike."""
    hits = [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]
    return sorted(hits, key=lambda h: (-h.score, h.id))


class EdgeVectorStore:
    backend = "edge"

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        dense = qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)
        sparse = {LEXICAL_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        config = qe.EdgeConfig(vectors=dense, sparse_vectors=sparse)
        self.lexical = True
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            try:
                self._shard = qe.EdgeShard.load(str(path), config)
            except Exception as exc:
                self._shard = self._load_dense_only(path, dense, exc)
                self.lexical = False
                log.warning(NO_LEXICAL_INDEX, extra={"path": str(path)})
        else:
            self._shard = qe.EdgeShard.create(str(path), config)
            for name in KEYWORD_FIELDS:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            for name in INTEGER_FIELDS:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))
        self.changes = 0
        self.last_write = 0.0
        self._closed = False

    @staticmethod
    def _load_dense_only(path: Path, dense: qe.EdgeVectorParams, first: Exception) -> qe.EdgeShard:
        """A shard made before lexical retrieval existed (dense vectors only) opens as such: it keeps serving
        dense searches, and bm25 / hybrid searches report NO_LEXICAL_INDEX. Any other reason the shard did not
        open (another embedding size, damage) stays an error."""
        problem = ConfigError(
            f"cannot open the Qdrant Edge shard at {path} with dim {dense.size}: {first}; "
            "another process may hold it, or it was created with another embedding size"
        )
        try:
            shard = qe.EdgeShard.load(str(path), qe.EdgeConfig(vectors=dense))
        except Exception:
            raise problem from first
        try:  # a shard that has the sparse vector failed for another reason: do not downgrade it
            probe = qe.Query.Nearest(qe.SparseVector([0], [1.0]), using=LEXICAL_VECTOR)
            shard.query(qe.QueryRequest(limit=1, query=probe))
        except Exception:
            return shard  # "Not existing vector name": dense only
        shard.close()
        raise problem from first

    def _touch(self, n: int) -> None:
        self.changes += n
        self.last_write = time.monotonic()

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        self._shard.update(qe.UpdateOperation.upsert_points([self._to_point(p) for p in points]))
        self._touch(len(points))

    def _to_point(self, p: ChunkPoint) -> qe.Point:
        dense = np.asarray(p.vector, dtype=np.float32).tolist()
        if not self.lexical:
            return qe.Point(p.id, dense, p.payload)
        sparse = p.sparse or SparseVector([], [])
        return qe.Point(
            p.id, {"": dense, LEXICAL_VECTOR: qe.SparseVector(list(sparse.indices), list(sparse.values))}, p.payload
        )

    def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self._shard.update(qe.UpdateOperation.delete_points(list(ids)))
            self._touch(len(ids))

    def delete_where(self, flt: PointFilter) -> None:
        f = edge_filter(flt)
        if f is None:
            raise ValueError("refusing to delete every point: give a filter")
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(f))
        self._touch(1)

    def _dense_request(self, vector: npt.NDArray[np.float32], limit: int, flt: PointFilter) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            filter=edge_filter(flt),
            with_payload=True,
        )

    def _lexical_request(
        self, query: SparseVector, limit: int, flt: PointFilter, idf_corpus: PointFilter
    ) -> qe.QueryRequest:
        if not self.lexical:
            raise FailedPrecondition(NO_LEXICAL_INDEX)
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(qe.SparseVector(list(query.indices), list(query.values)), using=LEXICAL_VECTOR),
            filter=edge_filter(flt),
            params=qe.SearchParams(idf=qe.IdfParams(corpus=edge_filter(idf_corpus))),
            with_payload=True,
        )

    def search(self, vector: npt.NDArray[np.float32], limit: int, flt: PointFilter) -> list[Hit]:
        return _hits(self._shard.query(self._dense_request(vector, limit, flt)))

    def search_lexical(self, query: SparseVector, limit: int, flt: PointFilter, idf_corpus: PointFilter) -> list[Hit]:
        request = self._lexical_request(query, limit, flt, idf_corpus)
        return _hits(self._shard.query(request)) if query.indices else []

    def search_hybrid(
        self,
        vector: npt.NDArray[np.float32],
        query: SparseVector,
        limit: int,
        flt: PointFilter,
        idf_corpus: PointFilter,
    ) -> tuple[list[Hit], list[Hit]]:
        requests = [self._dense_request(vector, limit, flt), self._lexical_request(query, limit, flt, idf_corpus)]
        if not query.indices:
            return self.search(vector, limit, flt), []
        dense, sparse = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return _hits(dense), _hits(sparse)

    @staticmethod
    def _point(record: Any, with_vectors: bool) -> ChunkPoint:
        return point_of_record(record.id, record.vector if with_vectors else None, record.payload)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[ChunkPoint]:
        if not ids:
            return []
        records = self._shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [self._point(r, with_vectors) for r in records]

    def scroll(self, flt: PointFilter, limit: int, offset: str | None = None) -> tuple[list[ChunkPoint], str | None]:
        records, nxt = self._shard.scroll(
            qe.ScrollRequest(offset=offset, limit=limit, filter=edge_filter(flt), with_payload=True, with_vector=False)
        )
        return [self._point(r, False) for r in records], (str(nxt) if nxt is not None else None)

    def count(self, flt: PointFilter | None = None) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True, filter=edge_filter(flt))))

    def optimize(self) -> bool:
        changed = bool(self._shard.optimize())
        self.changes = 0
        return changed

    def flush(self) -> None:
        self._shard.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shard.flush()
            self._shard.close()


class BackgroundOptimizer:
    """Runs `store.optimize()` in a daemon thread when at least `min_changes` points changed since the last run
    and no write happened for `quiet_s` seconds; checks every `interval_s`."""

    def __init__(
        self,
        store: EdgeVectorStore,
        interval_s: float,
        min_changes: int,
        quiet_s: float = 2.0,
    ) -> None:
        self._store = store
        self._interval = interval_s
        self._min_changes = min_changes
        self._quiet = quiet_s
        self._stop = threading.Event()
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, name="edge-optimizer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            store = self._store
            if store.changes < self._min_changes or time.monotonic() - store.last_write < self._quiet:
                continue
            t0 = time.perf_counter()
            try:
                changed = store.optimize()
            except Exception:
                log.exception("optimize failed")
                continue
            self.runs += 1
            log.info("optimized", extra={"changed": changed, "ms": round((time.perf_counter() - t0) * 1000, 1)})

    def close(self) -> None:
        """Stop; waits for a running optimize so the store can be closed safely afterwards."""
        self._stop.set()
        self._thread.join(timeout=120)
