"""Plain dataclasses the client returns (instead of protobuf messages), and their conversions."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wikimem.v1 import common_pb2, rag_pb2

#: Where the orchestrator listens unless told otherwise.
DEFAULT_ADDRESS = "127.0.0.1:50051"

#: Metadata key carrying the caller's groups (comma-separated) for access control.
GROUPS_METADATA_KEY = "x-wikimem-groups"

#: Large enough for a big document; the server answers over-sized ones with a precise error.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def default_address() -> str:
    return os.environ.get("WIKIMEM_ADDR") or DEFAULT_ADDRESS


def groups_metadata(groups: Iterable[str] | None) -> tuple[tuple[str, str], ...]:
    cleaned = [g.strip() for g in (groups or ()) if g and g.strip()]
    return ((GROUPS_METADATA_KEY, ",".join(cleaned)),) if cleaned else ()


@dataclass(frozen=True)
class Citation:
    """Where an answer came from: `quote == document_text[start:end]` (code points) at that revision."""

    doc_id: str
    revision: int
    title: str
    source: str
    start: int
    end: int
    quote: str
    answer_start: int
    answer_end: int
    chunk_id: str = ""
    score: float = 0.0


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk and its score (only when asked for with `include_passages`)."""

    chunk_id: str
    doc_id: str
    revision: int
    title: str
    start: int
    end: int
    text: str
    heading: str
    score: float


@dataclass(frozen=True)
class Answer:
    answer: str
    abstained: bool
    abstain_reason: str
    citations: list[Citation]
    cached: bool
    reranked: bool
    warnings: list[str]
    timings_ms: dict[str, float]
    score: float = 0.0
    generation: int = 0
    passages: list[Passage] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    doc_id: str
    revision: int
    title: str
    source: str
    collection: str
    acl: list[str]
    content_sha256: str
    chunk_count: int
    char_count: int
    updated_at: float
    metadata: dict[str, str]


@dataclass(frozen=True)
class PutResult:
    document: Document
    #: False when nothing changed (same text, title, source and acl): a no-op on the server.
    changed: bool
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Source:
    """A cited span with its surrounding context: `before + passage + after` is contiguous document text."""

    document: Document
    passage: str
    before: str
    after: str


def citation_from_proto(msg: common_pb2.Citation) -> Citation:
    return Citation(
        doc_id=msg.doc_id,
        revision=msg.revision,
        title=msg.title,
        source=msg.source,
        start=msg.start,
        end=msg.end,
        quote=msg.quote,
        answer_start=msg.answer_start,
        answer_end=msg.answer_end,
        chunk_id=msg.chunk_id,
        score=msg.score,
    )


def passage_from_proto(msg: common_pb2.ScoredChunk) -> Passage:
    c = msg.chunk
    return Passage(
        chunk_id=c.chunk_id,
        doc_id=c.doc_id,
        revision=c.revision,
        title=c.title,
        start=c.start,
        end=c.end,
        text=c.text,
        heading=c.heading,
        score=msg.score,
    )


def answer_from_proto(msg: rag_pb2.AskResponse) -> Answer:
    return Answer(
        answer=msg.answer,
        abstained=msg.abstained,
        abstain_reason=msg.abstain_reason,
        citations=[citation_from_proto(c) for c in msg.citations],
        cached=msg.cached,
        reranked=msg.reranked,
        warnings=list(msg.warnings),
        timings_ms=dict(msg.timings_ms),
        score=msg.score,
        generation=msg.generation,
        passages=[passage_from_proto(p) for p in msg.passages],
    )


def document_from_proto(msg: common_pb2.Document) -> Document:
    return Document(
        doc_id=msg.doc_id,
        revision=msg.revision,
        title=msg.title,
        source=msg.source,
        collection=msg.collection,
        acl=list(msg.acl),
        content_sha256=msg.content_sha256,
        chunk_count=msg.chunk_count,
        char_count=msg.char_count,
        updated_at=msg.updated_at,
        metadata=dict(msg.metadata),
    )


def put_result_from_proto(msg: rag_pb2.PutDocumentResponse) -> PutResult:
    return PutResult(document=document_from_proto(msg.document), changed=msg.changed, timings_ms=dict(msg.timings_ms))


def source_from_proto(msg: rag_pb2.GetSourceResponse) -> Source:
    return Source(document=document_from_proto(msg.document), passage=msg.passage, before=msg.before, after=msg.after)


def ask_options(
    collection: str, retrieve_k: int, read_k: int, reader: str, no_cache: bool, include_passages: bool
) -> rag_pb2.AskOptions:
    return rag_pb2.AskOptions(
        collection=collection,
        retrieve_k=retrieve_k,
        read_k=read_k,
        reader=reader,
        no_cache=no_cache,
        include_passages=include_passages,
    )


def put_request(
    doc_id: str,
    text: str,
    *,
    title: str,
    source: str,
    collection: str,
    acl: Sequence[str],
    metadata: Mapping[str, str] | None,
    revision: int,
    if_revision: int | None,
) -> rag_pb2.PutDocumentRequest:
    request = rag_pb2.PutDocumentRequest(
        doc_id=doc_id,
        text=text,
        title=title,
        source=source,
        collection=collection,
        acl=list(acl),
        metadata=dict(metadata or {}),
        revision=revision,
    )
    if if_revision is not None:
        request.if_revision = if_revision
    return request


def delete_request(doc_id: str, collection: str, if_revision: int | None) -> rag_pb2.DeleteDocumentRequest:
    request = rag_pb2.DeleteDocumentRequest(doc_id=doc_id, collection=collection)
    if if_revision is not None:
        request.if_revision = if_revision
    return request


def answer_to_dict(answer: Answer, question: str | None = None) -> dict[str, Any]:
    """The JSON object `wikimem ask --json` prints for one answer."""
    out: dict[str, Any] = {} if question is None else {"question": question}
    out.update(
        {
            "answer": answer.answer,
            "abstained": answer.abstained,
            "abstain_reason": answer.abstain_reason,
            "citations": [asdict(c) for c in answer.citations],
            "cached": answer.cached,
            "reranked": answer.reranked,
            "warnings": list(answer.warnings),
            "score": answer.score,
            "generation": answer.generation,
            "timings_ms": dict(answer.timings_ms),
        }
    )
    if answer.passages:
        out["passages"] = [asdict(p) for p in answer.passages]
    return out


def document_to_dict(document: Document) -> dict[str, Any]:
    return asdict(document)
