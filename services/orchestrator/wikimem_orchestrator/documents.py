"""The write path (PutDocument, DeleteDocument) and document reads (GetSource, ListDocuments).

Every write that memory accepts is followed, before the call returns, by (1) recording the document's new
revision in the cache's revision map — only if the write's generation is newer than the one recorded, so replicas
racing on one document never leave an older revision — and (2) taking the write's generation as the one to key
answers on, so the next Ask misses the answer cache (read-your-writes); see cache.py for the whole design.

Who may write (auth/policy.py): the collection's writers; for an existing document, only a caller who can read it
(or an admin). The memory filters reads by groups, so the check is a Get with the caller's groups: a document they
cannot see looks exactly like a missing one, and every answer an outsider gets for it is the one they would get for
a missing document (NOT_FOUND; no revision in any message). The write then carries `if_revision` = the revision
that was checked, so the document cannot change hands between the check and the write (a lost race re-checks).
Within one orchestrator, checked writes of one document take turns (KeyedLocks), so only writes through other
replicas can make a check stale; those re-check after a short random pause.

A written document is then handed to the sentence warmer (sentence_warming.py), which computes its sentence
vectors in the background for the first Ask that reads it; that never delays or fails the write.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Protocol

from wikimem_common.errors import Aborted, InvalidArgument, NotFound
from wikimem_common.locks import KeyedLocks
from wikimem_common.timing import Timings
from wikimem_contract.v1 import common_pb2, memory_pb2, rag_pb2

from . import validation
from .auth.identity import Identity, anonymous
from .auth.policy import Policy
from .cache import DELETED, GenerationTracker, QueryCache, normalise_collection
from .config import OrchestratorConfig
from .pipeline import Deadline
from .sentence_warming import SentenceWarmer

#: Checked writes that lose a race (the document changed between the check and the write) are re-checked this
#: many times before the caller gets ABORTED.
MAX_WRITE_ATTEMPTS = 8

log = logging.getLogger("wikimem.orchestrator.documents")


class MemoryBackend(Protocol):
    def upsert(self, request: memory_pb2.UpsertRequest, timeout: float) -> memory_pb2.UpsertResponse: ...

    def delete(self, request: memory_pb2.DeleteRequest, timeout: float) -> memory_pb2.DeleteResponse: ...

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse: ...

    def list(self, request: memory_pb2.ListRequest, timeout: float) -> memory_pb2.ListResponse: ...


def _pause(attempt: int) -> None:
    """Before re-checking a write that lost a race with another replica: 5-10 ms, doubling, at most ~0.3 s."""
    time.sleep(min(0.3, 0.005 * 2**attempt) * random.uniform(1.0, 2.0))


class Documents:
    def __init__(
        self,
        config: OrchestratorConfig,
        memory: MemoryBackend,
        cache: QueryCache,
        generation: GenerationTracker,
        policy: Policy | None = None,
        warmer: SentenceWarmer | None = None,
    ) -> None:
        self.config = config
        self.memory = memory
        self.cache = cache
        self.generation = generation
        self.policy = policy or Policy(config.auth)
        self.warmer = warmer
        self._turns = KeyedLocks()

    def _current(self, identity: Identity, collection: str, doc_id: str, deadline: Deadline) -> int | None:
        """The document's revision if the caller can read it; None if it is missing or hidden from them."""
        get = memory_pb2.GetRequest(doc_id=doc_id, collection=collection, groups=list(identity.groups))
        try:
            return int(self.memory.get(get, deadline.timeout(self.config.peer_timeout_s)).document.revision)
        except NotFound:
            return None

    @staticmethod
    def _missing(doc_id: str, collection: str) -> NotFound:
        """What a caller gets for a document that is missing or that it may not read: the same, word for word."""
        return NotFound(f"document {doc_id!r} not found in collection {normalise_collection(collection)!r}")

    def _expected(
        self, identity: Identity, collection: str, doc_id: str, if_revision: int | None, deadline: Deadline,
        creating: bool,
    ) -> int:
        """The `if_revision` a checked write carries: the caller may write what it sees (or nothing: 0)."""
        current = self._current(identity, collection, doc_id, deadline)
        if current is None:
            if not creating or (if_revision is not None and if_revision != 0):
                raise self._missing(doc_id, collection)
            return 0
        if if_revision is not None and if_revision != current:
            raise Aborted(f"document {doc_id!r} is at revision {current}, not {if_revision} (if_revision)")
        return current

    def _written(self, collection: str, doc_id: str, revision: int, generation: int, timings: Timings) -> None:
        with timings.stage("invalidate"):
            warnings: list[str] = []
            self.cache.record_revision(normalise_collection(collection), doc_id, revision, warnings, generation)
            for warning in warnings:  # the generation still invalidates; the revision map is the second guard
                log.warning("revision map not updated", extra={"doc_id": doc_id, "warning": warning})
            if self.cache.enabled:
                self.generation.after_write(generation)

    def put(
        self, request: rag_pb2.PutDocumentRequest, deadline: Deadline, identity: Identity | None = None
    ) -> rag_pb2.PutDocumentResponse:
        caller = identity or anonymous()
        doc_id = validation.put_request(request, self.config)
        self.policy.require_writer(caller, request.collection)
        self.policy.require_acl_member(caller, list(request.acl))
        timings = Timings()
        upsert = memory_pb2.UpsertRequest(
            doc_id=doc_id,
            text=request.text,
            title=request.title,
            source=request.source,
            collection=request.collection,
            acl=list(request.acl),
            metadata=dict(request.metadata),
            revision=request.revision,
        )
        wanted = request.if_revision if request.HasField("if_revision") else None
        checked = not self.policy.is_admin(caller)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            with self._turns.hold((normalise_collection(request.collection), doc_id)):
                if checked:
                    with timings.stage("check"):
                        upsert.if_revision = self._expected(caller, request.collection, doc_id, wanted, deadline, True)
                elif wanted is not None:
                    upsert.if_revision = wanted
                try:
                    with timings.stage("upsert"):
                        result = self.memory.upsert(upsert, deadline.timeout(self.config.write_timeout_s))
                    break
                except Aborted:
                    if not checked:
                        raise
                    if upsert.if_revision == 0 and self._current(caller, request.collection, doc_id, deadline) is None:
                        raise self._missing(doc_id, request.collection) from None  # it exists, hidden from the caller
            _pause(attempt)
        else:
            raise Aborted(f"document {doc_id!r} kept changing during {MAX_WRITE_ATTEMPTS} attempts; try again")
        collection, written_id = result.document.collection or request.collection, result.document.doc_id or doc_id
        self._written(collection, written_id, int(result.document.revision), int(result.generation), timings)
        if self.warmer is not None:  # also for an unchanged document: its vectors may have been evicted since
            self.warmer.submit(normalise_collection(collection), written_id, list(result.document.acl))
        response = rag_pb2.PutDocumentResponse(
            document=result.document, changed=result.changed, generation=result.generation
        )
        timings.merge({f"memory.{k}": v for k, v in result.timings_ms.items() if k != "total"})
        timings.finish(response.timings_ms)
        return response

    def delete(
        self, request: rag_pb2.DeleteDocumentRequest, deadline: Deadline, identity: Identity | None = None
    ) -> rag_pb2.DeleteDocumentResponse:
        caller = identity or anonymous()
        doc_id = validation.delete_request(request, self.config)
        self.policy.require_writer(caller, request.collection)
        timings = Timings()
        delete = memory_pb2.DeleteRequest(doc_id=doc_id, collection=request.collection)
        wanted = request.if_revision if request.HasField("if_revision") else None
        checked = not self.policy.is_admin(caller)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            with self._turns.hold((normalise_collection(request.collection), doc_id)):
                if checked:
                    with timings.stage("check"):
                        delete.if_revision = self._expected(caller, request.collection, doc_id, wanted, deadline, False)
                elif wanted is not None:
                    delete.if_revision = wanted
                try:
                    with timings.stage("delete"):
                        result = self.memory.delete(delete, deadline.timeout(self.config.write_timeout_s))
                    break
                except Aborted:
                    if not checked:
                        raise
                except NotFound:
                    if not checked:
                        raise
                    raise self._missing(doc_id, request.collection) from None
            _pause(attempt)
        else:
            raise Aborted(f"document {doc_id!r} kept changing during {MAX_WRITE_ATTEMPTS} attempts; try again")
        self._written(request.collection, doc_id, DELETED, int(result.generation), timings)
        response = rag_pb2.DeleteDocumentResponse(revision=result.revision, generation=result.generation)
        timings.finish(response.timings_ms)
        return response

    def get_source(
        self, request: rag_pb2.GetSourceRequest, groups: Sequence[str], deadline: Deadline
    ) -> rag_pb2.GetSourceResponse:
        validation.source_request(request, self.config)
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
        validation.list_request(request, self.config)
        result = self.memory.list(
            memory_pb2.ListRequest(
                filter=common_pb2.Filter(collection=request.collection, groups=list(groups)),
                page_size=request.page_size or self.config.list_page_size,
                page_token=request.page_token,
            ),
            deadline.timeout(self.config.peer_timeout_s),
        )
        return rag_pb2.ListDocumentsResponse(documents=result.documents, next_page_token=result.next_page_token)
