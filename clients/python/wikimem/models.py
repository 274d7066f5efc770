"""Plain dataclasses the client returns (instead of protobuf messages), and their conversions."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wikimem_contract import metadata
from wikimem_contract.v1 import common_pb2, rag_pb2

#: Where the orchestrator listens unless told otherwise.
DEFAULT_ADDRESS = "127.0.0.1:50051"

#: Metadata key carrying the caller's groups (comma-separated) for access control.
GROUPS_METADATA_KEY = metadata.GROUPS

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
class AnswerSentence:
    """One sentence of an answer: whether a passage span supports it, and which of the answer's citations do.

    Generated answers are checked sentence by sentence outside the model; `in_answer` is False for an unsupported
    sentence that was dropped from `Answer.answer`.
    """

    text: str
    verified: bool
    #: Indices into `Answer.citations`, best first.
    citations: list[int]
    support: float
    in_answer: bool
    #: Why it is not verified ("" when it is).
    note: str = ""
    start: int = 0
    end: int = 0


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
    sentences: list[AnswerSentence] = field(default_factory=list)
    #: The reader backend that answered ("extractive", "local-llm", "openai") and its model ("" if extractive).
    reader: str = ""
    reader_model: str = ""
    #: Generative readers: the model's whole text before verification (may hold dropped sentences).
    generated: str = ""
    #: "none" (computed now), "exact" (answer cache) or "qa_memory" (a paraphrase's answer, still current).
    cache_source: str = "none"
    #: QA memory hits: similarity to the earlier question whose answer was reused, and that question.
    qa_similarity: float = 0.0
    qa_matched_question: str = ""


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


def sentence_from_proto(msg: rag_pb2.AnswerSentence) -> AnswerSentence:
    return AnswerSentence(
        text=msg.text,
        verified=msg.verified,
        citations=list(msg.citations),
        support=msg.support,
        in_answer=msg.in_answer,
        note=msg.note,
        start=msg.start,
        end=msg.end,
    )


_CACHE_SOURCES = {
    rag_pb2.CACHE_SOURCE_NONE: "none",
    rag_pb2.CACHE_SOURCE_EXACT: "exact",
    rag_pb2.CACHE_SOURCE_QA_MEMORY: "qa_memory",
}


def cache_source_name(msg: rag_pb2.AskResponse) -> str:
    """The answer's cache source by name; an orchestrator that does not report it: "exact" if cached."""
    return _CACHE_SOURCES.get(msg.cache_source, "exact" if msg.cached else "none")


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
        sentences=[sentence_from_proto(s) for s in msg.sentences],
        reader=msg.reader,
        reader_model=msg.reader_model,
        generated=msg.generated,
        cache_source=cache_source_name(msg),
        qa_similarity=msg.qa_similarity,
        qa_matched_question=msg.qa_matched_question,
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


#: `retrieval=` names (AskOptions.retrieval); "" = the server's WIKIMEM_RETRIEVAL_MODE.
RETRIEVAL_MODES = {
    "": common_pb2.RETRIEVAL_MODE_UNSPECIFIED,
    "dense": common_pb2.RETRIEVAL_MODE_DENSE,
    "bm25": common_pb2.RETRIEVAL_MODE_BM25,
    "hybrid": common_pb2.RETRIEVAL_MODE_HYBRID,
}


def retrieval_mode(name: str) -> common_pb2.RetrievalMode.ValueType:
    try:
        return RETRIEVAL_MODES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"retrieval={name!r}: use dense, bm25 or hybrid (or '' for the server's default)") from None


def ask_options(
    collection: str,
    retrieve_k: int,
    read_k: int,
    reader: str,
    no_cache: bool,
    include_passages: bool,
    max_tokens: int = 0,
    unsupported: str = "",
    no_qa_memory: bool = False,
    retrieval: str = "",
) -> rag_pb2.AskOptions:
    return rag_pb2.AskOptions(
        collection=collection,
        retrieve_k=retrieve_k,
        read_k=read_k,
        reader=reader,
        no_cache=no_cache,
        include_passages=include_passages,
        max_tokens=max_tokens,
        unsupported=unsupported,
        no_qa_memory=no_qa_memory,
        retrieval=retrieval_mode(retrieval),
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
            "cache_source": answer.cache_source,
            "reranked": answer.reranked,
            "warnings": list(answer.warnings),
            "score": answer.score,
            "generation": answer.generation,
            "timings_ms": dict(answer.timings_ms),
        }
    )
    if answer.cache_source == "qa_memory":
        out["qa_similarity"] = answer.qa_similarity
        out["qa_matched_question"] = answer.qa_matched_question
    if answer.reader:
        out["reader"] = answer.reader
    if answer.reader_model:
        out["reader_model"] = answer.reader_model
    if answer.sentences:
        out["sentences"] = [asdict(s) for s in answer.sentences]
    if answer.generated:
        out["generated"] = answer.generated
    if answer.passages:
        out["passages"] = [asdict(p) for p in answer.passages]
    return out


def document_to_dict(document: Document) -> dict[str, Any]:
    return asdict(document)
