"""A Qdrant server (through qdrant-client) as the vector store and the registry.

The registry lives in Qdrant too (a second, vectorless collection with one point per document whose payload
holds the metadata and the full text, plus meta points holding the generation and the embedding model), so
several memory replicas can share one Qdrant. Tests use `QdrantClient(":memory:")`, which speaks the same API
in-process.

Chunk points carry the dense vector (unnamed) and the sparse BM25 vector `bm25` (IDF modifier); a collection made
before lexical retrieval existed is used dense-only (`lexical=False`, a warning in the log).
"""

from __future__ import annotations

import logging
import threading
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from wikimem_common.config import ConfigError
from wikimem_common.errors import FailedPrecondition

from .base import (
    ID_NAMESPACE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    LEGACY_EMBEDDING_MODEL,
    LEGACY_EMBEDDING_MODEL_ADOPTED,
    LEXICAL_VECTOR,
    NO_LEXICAL_INDEX,
    PUBLIC,
    ChunkPoint,
    DocRecord,
    Hit,
    PointFilter,
    SparseVector,
    WriteConflict,
    next_generation,
    point_of_record,
    read_list,
    registry_point_id,
)

log = logging.getLogger("wikimem.memory.qdrant")

_GENERATION_ID = str(uuid.uuid5(ID_NAMESPACE, "meta\x00generation"))
_EMBEDDING_MODEL_ID = str(uuid.uuid5(ID_NAMESPACE, "meta\x00embedding_model"))


def _tombstone_id(collection: str, doc_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"tombstone\x00{collection}\x00{doc_id}"))


def qdrant_filter(flt: PointFilter | None) -> qm.Filter | None:
    if flt is None:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    if flt.collection is not None:
        must.append(qm.FieldCondition(key="collection", match=qm.MatchValue(value=flt.collection)))
    if flt.groups is not None:
        must.append(qm.FieldCondition(key="read", match=qm.MatchAny(any=[PUBLIC, *flt.groups])))
    if flt.doc_ids is not None:
        must.append(qm.FieldCondition(key="doc_id", match=qm.MatchAny(any=list(flt.doc_ids))))
    if flt.revision is not None:
        must.append(qm.FieldCondition(key="revision", match=qm.MatchValue(value=flt.revision)))
    if flt.exclude_revision is not None:
        must_not.append(qm.FieldCondition(key="revision", match=qm.MatchValue(value=flt.exclude_revision)))
    if flt.revision_below is not None:
        must.append(qm.FieldCondition(key="revision", range=qm.Range(lt=flt.revision_below)))
    if not must and not must_not:
        return None
    return qm.Filter(must=must or None, must_not=must_not or None)


class _Serialized:
    """qdrant-client's in-process (:memory:) engine is not thread-safe; a server is. Serialise calls to it."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


def connect(url: str, api_key: str | None) -> QdrantClient:
    if url == ":memory:":
        return cast(QdrantClient, _Serialized(QdrantClient(":memory:")))
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"QDRANT_URL={url!r} must be an http(s) URL of a Qdrant server (or :memory: for tests)")
    return QdrantClient(url=url, api_key=api_key or None, timeout=30)


def _ensure_indexes(client: QdrantClient, name: str, keywords: Sequence[str], integers: Sequence[str]) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
        for key in keywords:
            client.create_payload_index(name, key, field_schema=qm.PayloadSchemaType.KEYWORD)
        for key in integers:
            client.create_payload_index(name, key, field_schema=qm.PayloadSchemaType.INTEGER)


def _hits(points: list[Any]) -> list[Hit]:
    """Best first; equal scores by id, so both backends order ties alike."""
    hits = [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]
    return sorted(hits, key=lambda h: (-h.score, h.id))


@dataclass(frozen=True)
class Layout:
    """How a new collection spreads over a distributed Qdrant: shards, copies per shard, acks per write."""

    shards: int = 1
    replication: int = 1
    write_consistency: int = 1

    def create(self, client: QdrantClient, name: str, **params: Any) -> None:
        client.create_collection(
            name,
            shard_number=self.shards,
            replication_factor=self.replication,
            write_consistency_factor=self.write_consistency,
            **params,
        )


class QdrantVectorStore:
    backend = "qdrant"

    def __init__(self, client: QdrantClient, collection: str, dim: int, layout: Layout | None = None) -> None:
        self._client = client
        self.name = collection
        self.dim = dim
        self.lexical = True
        if client.collection_exists(collection):
            params = client.get_collection(collection).config.params
            size = getattr(params.vectors, "size", None)
            if size != dim:
                raise ConfigError(f"Qdrant collection {collection!r} holds {size}-d vectors; the memory needs {dim}-d")
            if LEXICAL_VECTOR not in (params.sparse_vectors or {}):
                self.lexical = False  # made before lexical retrieval existed: dense only
                log.warning(NO_LEXICAL_INDEX, extra={"collection": collection})
        else:
            (layout or Layout()).create(
                client,
                collection,
                vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE),
                sparse_vectors_config={LEXICAL_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
            _ensure_indexes(client, collection, KEYWORD_FIELDS, INTEGER_FIELDS)

    def _to_point(self, p: ChunkPoint) -> qm.PointStruct:
        dense = np.asarray(p.vector, dtype=np.float32).tolist()
        if not self.lexical:
            return qm.PointStruct(id=p.id, vector=dense, payload=p.payload)
        sparse = p.sparse or SparseVector([], [])
        vector: dict[str, Any] = {
            "": dense,
            LEXICAL_VECTOR: qm.SparseVector(indices=list(sparse.indices), values=list(sparse.values)),
        }
        return qm.PointStruct(id=p.id, vector=vector, payload=p.payload)

    def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        self._client.upsert(self.name, points=[self._to_point(p) for p in points], wait=True)

    def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(self.name, points_selector=qm.PointIdsList(points=list(ids)), wait=True)

    def delete_where(self, flt: PointFilter) -> None:
        f = qdrant_filter(flt)
        if f is None:
            raise ValueError("refusing to delete every point: give a filter")
        self._client.delete(self.name, points_selector=qm.FilterSelector(filter=f), wait=True)

    def _dense_request(self, vector: npt.NDArray[np.float32], limit: int, flt: PointFilter) -> qm.QueryRequest:
        return qm.QueryRequest(
            query=np.asarray(vector, dtype=np.float32).tolist(),
            limit=limit,
            filter=qdrant_filter(flt),
            with_payload=True,
        )

    def _lexical_request(
        self, query: SparseVector, limit: int, flt: PointFilter, idf_corpus: PointFilter
    ) -> qm.QueryRequest:
        if not self.lexical:
            raise FailedPrecondition(NO_LEXICAL_INDEX)
        corpus = qdrant_filter(idf_corpus)
        return qm.QueryRequest(
            query=qm.SparseVector(indices=list(query.indices), values=list(query.values)),
            using=LEXICAL_VECTOR,
            limit=limit,
            filter=qdrant_filter(flt),
            params=qm.SearchParams(idf=qm.IdfCorpusParams(corpus=corpus) if corpus else qm.IdfScope.GLOBAL),
            with_payload=True,
        )

    def _batch(self, requests: list[qm.QueryRequest]) -> list[list[Hit]]:
        return [_hits(r.points) for r in self._client.query_batch_points(self.name, requests=requests)]

    def search(self, vector: npt.NDArray[np.float32], limit: int, flt: PointFilter) -> list[Hit]:
        return self._batch([self._dense_request(vector, limit, flt)])[0]

    def search_lexical(self, query: SparseVector, limit: int, flt: PointFilter, idf_corpus: PointFilter) -> list[Hit]:
        request = self._lexical_request(query, limit, flt, idf_corpus)
        return self._batch([request])[0] if query.indices else []

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
        dense, sparse = self._batch(requests)
        return dense, sparse

    @staticmethod
    def _point(record: Any, with_vectors: bool) -> ChunkPoint:
        return point_of_record(record.id, record.vector if with_vectors else None, record.payload)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[ChunkPoint]:
        if not ids:
            return []
        records = self._client.retrieve(self.name, ids=list(ids), with_payload=True, with_vectors=with_vectors)
        return [self._point(r, with_vectors) for r in records]

    def scroll(self, flt: PointFilter, limit: int, offset: str | None = None) -> tuple[list[ChunkPoint], str | None]:
        records, nxt = self._client.scroll(
            self.name, scroll_filter=qdrant_filter(flt), limit=limit, offset=offset, with_payload=True
        )
        return [self._point(r, False) for r in records], (str(nxt) if nxt is not None else None)

    def count(self, flt: PointFilter | None = None) -> int:
        return int(self._client.count(self.name, count_filter=qdrant_filter(flt), exact=True).count)

    def optimize(self) -> bool:
        return False  # the server optimizes on its own

    def close(self) -> None:
        pass  # the client is shared with the registry; QdrantBackend closes it


class QdrantRegistry:
    """Documents as payload-only points in a vectorless collection (id = uuid5 of collection and doc id)."""

    def __init__(self, client: QdrantClient, collection: str, layout: Layout | None = None) -> None:
        self._client = client
        self.name = collection
        #: Cached once recorded (it never changes then); "" is read again, another replica may record it.
        self._embedding_model = ""
        if not client.collection_exists(collection):
            (layout or Layout()).create(client, collection, vectors_config={})
            _ensure_indexes(client, collection, ("kind", "collection", "doc_id", "read"), ("revision",))
        elif not self.embedding_model() and self._has_documents():
            log.warning(LEGACY_EMBEDDING_MODEL_ADOPTED, extra={"collection": collection})
            self.record_embedding_model(LEGACY_EMBEDDING_MODEL)

    def _has_documents(self) -> bool:
        doc_filter = qm.Filter(must=[qm.FieldCondition(key="kind", match=qm.MatchValue(value="doc"))])
        records, _ = self._client.scroll(self.name, scroll_filter=doc_filter, limit=1, with_payload=False)
        return bool(records)

    def _fetch(
        self, collection: str, doc_id: str, fields: list[str] | qm.PayloadSelectorExclude
    ) -> dict[str, Any] | None:
        records = self._client.retrieve(
            self.name, ids=[registry_point_id(collection, doc_id)], with_payload=fields, with_vectors=False
        )
        return dict(records[0].payload or {}) if records else None

    def get(self, collection: str, doc_id: str) -> DocRecord | None:
        payload = self._fetch(collection, doc_id, qm.PayloadSelectorExclude(exclude=["text"]))
        return DocRecord.from_json(payload) if payload else None

    def get_text(self, collection: str, doc_id: str) -> str | None:
        payload = self._fetch(collection, doc_id, ["text"])
        return str(payload["text"]) if payload else None

    def revisions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        ids = [registry_point_id(c, d) for c, d in keys]
        if not ids:
            return {}
        records = self._client.retrieve(
            self.name, ids=ids, with_payload=["collection", "doc_id", "revision"], with_vectors=False
        )
        out: dict[tuple[str, str], int] = {}
        for r in records:
            p = r.payload or {}
            out[(str(p["collection"]), str(p["doc_id"]))] = int(p["revision"])
        return out

    def _bump(self) -> int:
        # Read-modify-write: replicas sharing a server may skip or repeat a value under contention, which only
        # costs a cache miss (the generation stays monotonic per replica's view).
        records = self._client.retrieve(self.name, ids=[_GENERATION_ID], with_payload=True)
        current = int((records[0].payload or {}).get("generation", 0)) if records else 0
        nxt = next_generation(current)
        self._client.upsert(
            self.name,
            points=[qm.PointStruct(id=_GENERATION_ID, vector={}, payload={"kind": "meta", "generation": nxt})],
            wait=True,
        )
        return nxt

    def _revision_is(self, expect: int) -> qm.Filter:
        return qm.Filter(must=[qm.FieldCondition(key="revision", match=qm.MatchValue(value=expect))])

    def _current_revision(self, collection: str, doc_id: str) -> int:
        return self.revisions([(collection, doc_id)]).get((collection, doc_id), 0)

    def put(self, record: DocRecord, text: str, expect: int | None = None) -> int:
        payload = {**record.to_json(), "kind": "doc", "read": read_list(record.acl), "text": text}
        point = qm.PointStruct(id=registry_point_id(record.collection, record.doc_id), vector={}, payload=payload)
        if expect is None:
            self._client.upsert(self.name, points=[point], wait=True)
        else:
            # Compare-and-set on the registry point: insert only if there is none (expect 0), else update only the
            # point still at the revision the writer read. The engine applies it atomically; a read-back tells
            # whether it did (revisions are unique per write, so our revision there means our write).
            if expect == 0:
                self._client.upsert(self.name, points=[point], wait=True, update_mode=qm.UpdateMode.INSERT_ONLY)
            else:
                self._client.upsert(
                    self.name,
                    points=[point],
                    wait=True,
                    update_filter=self._revision_is(expect),
                    update_mode=qm.UpdateMode.UPDATE_ONLY,
                )
            current = self._current_revision(record.collection, record.doc_id)
            if current != record.revision:
                raise WriteConflict(
                    f"document {record.doc_id!r} is at revision {current}, not {expect}: another writer replaced it"
                )
        return self._bump()

    def delete(self, collection: str, doc_id: str, expect: int | None = None) -> int:
        current = self._current_revision(collection, doc_id) if expect is None else expect
        if current:
            previous = self.deleted_revision(collection, doc_id)
            tombstone = {
                "kind": "tombstone", "collection": collection, "doc_id": doc_id, "revision": max(current, previous)
            }
            self._client.upsert(
                self.name,
                points=[qm.PointStruct(id=_tombstone_id(collection, doc_id), vector={}, payload=tombstone)],
                wait=True,
            )
        point_id = registry_point_id(collection, doc_id)
        if expect is None:
            selector: qm.PointIdsList | qm.FilterSelector = qm.PointIdsList(points=[point_id])
        else:
            selector = qm.FilterSelector(
                filter=qm.Filter(
                    must=[
                        qm.HasIdCondition(has_id=[point_id]),
                        qm.FieldCondition(key="revision", match=qm.MatchValue(value=expect)),
                    ]
                )
            )
        self._client.delete(self.name, points_selector=selector, wait=True)
        if expect is not None:
            now = self._current_revision(collection, doc_id)
            if now:
                raise WriteConflict(
                    f"document {doc_id!r} is at revision {now}, not {expect}: another writer replaced it"
                )
        return self._bump()

    def deleted_revision(self, collection: str, doc_id: str) -> int:
        records = self._client.retrieve(self.name, ids=[_tombstone_id(collection, doc_id)], with_payload=True)
        return int((records[0].payload or {}).get("revision", 0)) if records else 0

    def list(
        self,
        collection: str,
        groups: Sequence[str] | None,
        doc_ids: Sequence[str] | None,
        limit: int,
        after: str | None,
    ) -> tuple[list[DocRecord], str | None]:
        must: list[Any] = [
            qm.FieldCondition(key="kind", match=qm.MatchValue(value="doc")),
            qm.FieldCondition(key="collection", match=qm.MatchValue(value=collection)),
        ]
        if groups is not None:
            must.append(qm.FieldCondition(key="read", match=qm.MatchAny(any=[PUBLIC, *groups])))
        if doc_ids:
            must.append(qm.FieldCondition(key="doc_id", match=qm.MatchAny(any=list(doc_ids))))
        records, nxt = self._client.scroll(
            self.name,
            scroll_filter=qm.Filter(must=must),
            limit=limit,
            offset=after or None,
            with_payload=qm.PayloadSelectorExclude(exclude=["text"]),
        )
        return [DocRecord.from_json(dict(r.payload or {})) for r in records], (str(nxt) if nxt is not None else None)

    def generation(self) -> int:
        records = self._client.retrieve(self.name, ids=[_GENERATION_ID], with_payload=True)
        return int((records[0].payload or {}).get("generation", 0)) if records else 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        offset: Any = None
        doc_filter = qm.Filter(must=[qm.FieldCondition(key="kind", match=qm.MatchValue(value="doc"))])
        while True:
            records, offset = self._client.scroll(
                self.name, scroll_filter=doc_filter, limit=1024, offset=offset, with_payload=["collection"]
            )
            for r in records:
                name = str((r.payload or {}).get("collection", ""))
                out[name] = out.get(name, 0) + 1
            if offset is None:
                return out

    def embedding_model(self) -> str:
        if not self._embedding_model:
            records = self._client.retrieve(self.name, ids=[_EMBEDDING_MODEL_ID], with_payload=True)
            self._embedding_model = str((records[0].payload or {}).get("embedding_model", "")) if records else ""
        return self._embedding_model

    def record_embedding_model(self, model_id: str) -> str:
        # Read, write, read back: replicas recording different models at the same moment end up agreeing on the
        # last write (a narrow race, only on the first write to an empty store; the server has no insert-if-absent).
        if self.embedding_model():
            return self._embedding_model
        payload = {"kind": "meta", "embedding_model": model_id}
        self._client.upsert(
            self.name, points=[qm.PointStruct(id=_EMBEDDING_MODEL_ID, vector={}, payload=payload)], wait=True
        )
        return self.embedding_model()

    def close(self) -> None:
        pass
