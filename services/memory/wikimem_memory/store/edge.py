"""Embedded Qdrant Edge (qdrant-edge-py) as the vector store: one shard directory, one process.

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

from .base import INTEGER_FIELDS, KEYWORD_FIELDS, PUBLIC, ChunkPoint, Hit, PointFilter

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
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeVectorStore:
    backend = "edge"

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            try:
                self._shard = qe.EdgeShard.load(str(path), config)
            except Exception as exc:
                raise ConfigError(
                    f"cannot open the Qdrant Edge shard at {path} with dim {dim}: {exc}; "
                    "another process may hold it, or it was created with another embedding size"
                ) from exc
        else:
            self._shard = qe.EdgeShard.create(str(path), config)
            for name in KEYWORD_FIELDS:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            for name in INTEGER_FIELDS:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))
        self.changes = 0
        self.last_write = 0.0
        self._closed = False

    def _touch(self, n: int) -> None:
        self.changes += n
        self.last_write = time.monotonic()

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        self._shard.update(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, np.asarray(p.vector, dtype=np.float32).tolist(), p.payload) for p in points]
            )
        )
        self._touch(len(points))

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

    def search(self, vector: npt.NDArray[np.float32], limit: int, flt: PointFilter) -> list[Hit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            filter=edge_filter(flt),
            with_payload=True,
        )
        points = self._shard.query(request)
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    @staticmethod
    def _point(record: Any, with_vectors: bool) -> ChunkPoint:
        vector = np.asarray(record.vector, dtype=np.float32) if with_vectors else np.zeros(0, dtype=np.float32)
        return ChunkPoint(id=str(record.id), vector=vector, payload=dict(record.payload or {}))

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
