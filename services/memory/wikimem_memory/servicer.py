"""The Memory gRPC adapter: request → core → response (errors mapped by @grpc_errors)."""

from __future__ import annotations

from typing import Any

import grpc

from wikimem_common import vectors
from wikimem_common.errors import grpc_errors
from wikimem_common.timing import Timings
from wikimem_contract.v1 import common_pb2, memory_pb2, memory_pb2_grpc

from . import documents as validate
from .service import MemoryService, SearchQuery, UpsertInput
from .store.base import DocRecord

#: Retrieval modes by name and back (UNSPECIFIED maps to "": the configured default).
MODES: dict[str, common_pb2.RetrievalMode.ValueType] = {
    "dense": common_pb2.RETRIEVAL_MODE_DENSE,
    "bm25": common_pb2.RETRIEVAL_MODE_BM25,
    "hybrid": common_pb2.RETRIEVAL_MODE_HYBRID,
}
MODE_NAMES = {value: name for name, value in MODES.items()}


def mode_name(mode: int) -> str:
    """ "" for UNSPECIFIED (the configured default); an unknown number stays visible so the core rejects it."""
    if mode == common_pb2.RETRIEVAL_MODE_UNSPECIFIED:
        return ""
    return MODE_NAMES.get(mode, f"#{mode}")  # type: ignore[call-overload]


def document_proto(record: DocRecord) -> common_pb2.Document:
    return common_pb2.Document(
        doc_id=record.doc_id,
        revision=record.revision,
        title=record.title,
        source=record.source,
        collection=record.collection,
        acl=record.acl,
        content_sha256=record.content_sha256,
        chunk_count=record.chunk_count,
        char_count=record.char_count,
        updated_at=record.updated_at,
        metadata=record.metadata,
    )


def chunk_proto(payload: dict[str, Any]) -> common_pb2.Chunk:
    return common_pb2.Chunk(
        chunk_id=payload["chunk_id"],
        doc_id=payload["doc_id"],
        revision=int(payload["revision"]),
        title=payload.get("title", ""),
        source=payload.get("source", ""),
        collection=payload["collection"],
        ordinal=int(payload["ordinal"]),
        start=int(payload["start"]),
        end=int(payload["end"]),
        text=payload["text"],
        heading=payload.get("heading", ""),
        acl=list(payload.get("acl", [])),
    )


class MemoryServicer(memory_pb2_grpc.MemoryServicer):
    def __init__(self, core: MemoryService) -> None:
        self.core = core

    @grpc_errors
    def Upsert(self, request: memory_pb2.UpsertRequest, context: grpc.ServicerContext) -> memory_pb2.UpsertResponse:
        timings = Timings()
        record, changed, generation = self.core.upsert(
            UpsertInput(
                doc_id=request.doc_id,
                text=request.text,
                title=request.title,
                source=request.source,
                collection=request.collection,
                acl=list(request.acl),
                metadata=dict(request.metadata),
                revision=validate.revision(request.revision),
                if_revision=validate.revision(request.if_revision, "if_revision")
                if request.HasField("if_revision")
                else None,
            ),
            timings,
        )
        response = memory_pb2.UpsertResponse(document=document_proto(record), changed=changed, generation=generation)
        timings.finish(response.timings_ms)
        return response

    @grpc_errors
    def Delete(self, request: memory_pb2.DeleteRequest, context: grpc.ServicerContext) -> memory_pb2.DeleteResponse:
        timings = Timings()
        revision, generation = self.core.delete(
            request.collection,
            request.doc_id,
            validate.revision(request.if_revision, "if_revision") if request.HasField("if_revision") else None,
            timings,
        )
        response = memory_pb2.DeleteResponse(revision=revision, generation=generation)
        timings.finish(response.timings_ms)
        return response

    @grpc_errors
    def Search(self, request: memory_pb2.SearchRequest, context: grpc.ServicerContext) -> memory_pb2.SearchResponse:
        timings = Timings()
        # An empty query (no shape) is allowed: bm25 does not need the vector, the core checks the others.
        query = vectors.from_proto(request.query) if request.query.shape or request.query.data else None
        result = self.core.search(
            SearchQuery(query, request.query_text, mode_name(request.mode), request.embedding_model),
            request.top_k,
            request.filter.collection,
            list(request.filter.groups),
            list(request.filter.doc_ids),
            timings,
        )
        response = memory_pb2.SearchResponse(
            hits=[
                common_pb2.ScoredChunk(chunk=chunk_proto(h.payload), score=h.score, dense_score=h.dense)
                for h in result.hits
            ],
            generation=result.generation,
            mode=MODES[result.mode],
            warnings=result.warnings,
        )
        timings.finish(response.timings_ms)
        return response

    @grpc_errors
    def Get(self, request: memory_pb2.GetRequest, context: grpc.ServicerContext) -> memory_pb2.GetResponse:
        record, text = self.core.get(request.collection, request.doc_id, list(request.groups), request.include_text)
        return memory_pb2.GetResponse(document=document_proto(record), text=text)

    @grpc_errors
    def List(self, request: memory_pb2.ListRequest, context: grpc.ServicerContext) -> memory_pb2.ListResponse:
        records, token = self.core.list(
            request.filter.collection,
            list(request.filter.groups),
            list(request.filter.doc_ids),
            request.page_size,
            request.page_token,
        )
        return memory_pb2.ListResponse(documents=[document_proto(r) for r in records], next_page_token=token)

    @grpc_errors
    def GetChunks(
        self, request: memory_pb2.GetChunksRequest, context: grpc.ServicerContext
    ) -> memory_pb2.GetChunksResponse:
        payloads = self.core.get_chunks(request.collection, request.doc_id, list(request.groups))
        return memory_pb2.GetChunksResponse(chunks=[chunk_proto(p) for p in payloads])

    @grpc_errors
    def Stats(self, request: memory_pb2.StatsRequest, context: grpc.ServicerContext) -> memory_pb2.StatsResponse:
        s = self.core.stats()
        return memory_pb2.StatsResponse(
            documents=s["documents"],
            chunks=s["chunks"],
            generation=s["generation"],
            backend=s["backend"],
            dim=s["dim"],
            documents_per_collection=s["documents_per_collection"],
            embedding_model=s["embedding_model"],
        )
