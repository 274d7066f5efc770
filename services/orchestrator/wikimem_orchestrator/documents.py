"""The write path (PutDocument, DeleteDocument) and document reads (GetSource, ListDocuments).

Every write that memory accepts is followed, before the call returns, by (1) recording the document's new
revision in the cache's revision map — only if the write's generation is newer than the one recorded, so replicas
racing on one document never leave an older revision — and (2) taking the write's generation as the one to key
answers on, so the next Ask misses the answer cache (read-your-writes); see cache.py for the whole design.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from wikimem_common.errors import InvalidArgument, NotFound
from wikimem_common.timing import Timings
from wikimem_contract.v1 import common_pb2, memory_pb2, rag_pb2

from .cache import DELETED, GenerationTracker, QueryCache, normalise_collection
from .config import OrchestratorConfig
from .pipeline import Deadline

log = logging.getLogger("wikimem.orchestrator.documents")


class MemoryBackend(Protocol):
    def upsert(self, request: memory_pb2.UpsertRequest, timeout: float) -> memory_pb2.UpsertResponse: ...

    def delete(self, request: memory_pb2.DeleteRequest, timeout: float) -> memory_pb2.DeleteResponse: ...

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse: ...

    def list(self, request: memory_pb2.ListRequest, timeout: float) -> memory_pb2.ListResponse: ...


class Documents:
    def __init__(
        self, config: OrchestratorConfig, memory: MemoryBackend, cache: QueryCache, generation: GenerationTracker
    ) -> None:
        self.config = config
        self.memory = memory
        self.cache = cache
        self.generation = generation

    def _written(self, collection: str, doc_id: str, revision: int, generation: int, timings: Timings) -> None:
        with timings.stage("invalidate"):
            warnings: list[str] = []
            self.cache.record_revision(normalise_collection(collection), doc_id, revision, warnings, generation)
            for warning in warnings:  # the generation still invalidates; the revision map is the second guard
                log.warning("revision map not updated", extra={"doc_id": doc_id, "warning": warning})
            if self.cache.enabled:
                self.generation.after_write(generation)

    def put(self, request: rag_pb2.PutDocumentRequest, deadline: Deadline) -> rag_pb2.PutDocumentResponse:
        timings = Timings()
        upsert = memory_pb2.UpsertRequest(
            doc_id=request.doc_id,
            text=request.text,
            title=request.title,
            source=request.source,
            collection=request.collection,
            acl=list(request.acl),
            metadata=dict(request.metadata),
            revision=request.revision,
        )
        if request.HasField("if_revision"):
            upsert.if_revision = request.if_revision
        with timings.stage("upsert"):
            result = self.memory.upsert(upsert, deadline.timeout(self.config.write_timeout_s))
        self._written(result.document.collection or request.collection, result.document.doc_id or request.doc_id,
                      int(result.document.revision), int(result.generation), timings)
        response = rag_pb2.PutDocumentResponse(
            document=result.document, changed=result.changed, generation=result.generation
        )
        timings.merge({f"memory.{k}": v for k, v in result.timings_ms.items() if k != "total"})
        timings.finish(response.timings_ms)
        return response

    def delete(self, request: rag_pb2.DeleteDocumentRequest, deadline: Deadline) -> rag_pb2.DeleteDocumentResponse:
        timings = Timings()
        delete = memory_pb2.DeleteRequest(doc_id=request.doc_id, collection=request.collection)
        if request.HasField("if_revision"):
            delete.if_revision = request.if_revision
        with timings.stage("delete"):
            result = self.memory.delete(delete, deadline.timeout(self.config.write_timeout_s))
        self._written(request.collection, request.doc_id, DELETED, int(result.generation), timings)
        response = rag_pb2.DeleteDocumentResponse(revision=result.revision, generation=result.generation)
        timings.finish(response.timings_ms)
        return response

    def get_source(
        self, request: rag_pb2.GetSourceRequest, groups: Sequence[str], deadline: Deadline
    ) -> rag_pb2.GetSourceResponse:
        if not request.doc_id.strip():
            raise InvalidArgument("doc_id must not be empty")
        if request.end < request.start:
            raise InvalidArgument(f"end ({request.end}) must not be before start ({request.start})")
        context = request.context_chars or self.config.context_chars
        if context > self.config.max_context_chars:
            raise InvalidArgument(f"context_chars is {context}; the limit is {self.config.max_context_chars}")
        get = memory_pb2.GetRequest(
            doc_id=request.doc_id, collection=request.collection, include_text=True, groups=list(groups)
        )
        try:
            found = self.memory.get(get, deadline.timeout(self.config.peer_timeout_s))
        except NotFound as exc:
            if request.revision:
                raise NotFound(f"revision {request.revision} of {request.doc_id} is gone: {exc.message}") from None
            raise
        current = int(found.document.revision)
        if request.revision and request.revision != current:
            raise NotFound(
                f"revision {request.revision} of {request.doc_id} is gone; the current revision is {current}"
            )
        text = found.text
        if request.end > len(text):
            raise InvalidArgument(
                f"span [{request.start}, {request.end}) is out of range: revision {current} of {request.doc_id} "
                f"has {len(text)} characters"
            )
        start, end = int(request.start), int(request.end)
        return rag_pb2.GetSourceResponse(
            document=found.document,
            passage=text[start:end],
            before=text[max(0, start - context) : start],
            after=text[end : end + context],
        )

    def list(
        self, request: rag_pb2.ListDocumentsRequest, groups: Sequence[str], deadline: Deadline
    ) -> rag_pb2.ListDocumentsResponse:
        result = self.memory.list(
            memory_pb2.ListRequest(
                filter=common_pb2.Filter(collection=request.collection, groups=list(groups)),
                page_size=request.page_size or self.config.list_page_size,
                page_token=request.page_token,
            ),
            deadline.timeout(self.config.peer_timeout_s),
        )
        return rag_pb2.ListDocumentsResponse(documents=result.documents, next_page_token=result.next_page_token)
