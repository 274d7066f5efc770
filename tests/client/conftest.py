"""A small in-process fake of the Rag service, to test the client's and CLI's own mapping and error handling.

It implements the contract's behaviour that the client relies on (revisions, no-op puts, paging, NOT_FOUND,
compare-and-set, groups metadata) without models; the real services are tested end to end in tests/e2e.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from wikimem_contract import metadata
from wikimem_contract.v1 import common_pb2, rag_pb2, rag_pb2_grpc


@dataclass
class FakeRag(rag_pb2_grpc.RagServicer):
    docs: dict[tuple[str, str], tuple[common_pb2.Document, str]] = field(default_factory=dict)
    seen_groups: list[str] = field(default_factory=list)
    seen_options: list[rag_pb2.AskOptions] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _groups(self, context: grpc.ServicerContext) -> None:
        meta = dict(context.invocation_metadata())
        self.seen_groups.append(str(meta.get("x-wikimem-groups", "")))

    def _answer(self, request: rag_pb2.AskRequest, context: grpc.ServicerContext) -> rag_pb2.AskResponse:
        self._groups(context)
        self.seen_options.append(request.options)
        question = request.question
        if not question.strip() or "INVALID" in question:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "question must not be empty")
        if "BROKEN" in question:
            context.abort(grpc.StatusCode.UNAVAILABLE, "reader unavailable: connection refused")
        if "BUSY" in question:  # admission control's answer; "BUSY-NOHINT": without the retry hint
            if "NOHINT" not in question:
                context.set_trailing_metadata(((metadata.RETRY_AFTER_MS, "2500"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "orchestrator is at capacity (4 calls running, 4 queued)")
        words = set(question.lower().strip("?").split())
        with self.lock:
            for (_, collection), (doc, text) in sorted(self.docs.items()):
                if collection != request.options.collection:
                    continue
                for word in sorted(words, key=lambda w: (-len(w), w)):
                    pos = text.lower().find(word) if len(word) > 3 else -1
                    if pos >= 0:
                        start = max(0, pos - 10)
                        end = min(len(text), pos + len(word) + 10)
                        citation = common_pb2.Citation(
                            doc_id=doc.doc_id,
                            revision=doc.revision,
                            title=doc.title,
                            source=doc.source,
                            chunk_id=f"{doc.doc_id}@{doc.revision}#0",
                            start=start,
                            end=end,
                            quote=text[start:end],
                            answer_start=pos,
                            answer_end=pos + len(word),
                            score=1.5,
                        )
                        return rag_pb2.AskResponse(
                            answer=text[pos : pos + len(word)],
                            citations=[citation],
                            score=1.5,
                            reranked=True,
                            generation=7,
                            timings_ms={"embed": 1.0, "total": 3.0},
                        )
        return rag_pb2.AskResponse(
            abstained=True,
            abstain_reason="no passage answers the question",
            reranked=True,
            warnings=["fake: nothing matched"],
            timings_ms={"total": 1.0},
        )

    def Ask(self, request: rag_pb2.AskRequest, context: grpc.ServicerContext) -> rag_pb2.AskResponse:
        return self._answer(request, context)

    def AskStream(
        self, request: rag_pb2.AskStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[rag_pb2.AskStreamResponse]:
        result = self._answer(rag_pb2.AskRequest(question=request.question, options=request.options), context)
        for i in range(0, len(result.answer), 3):
            yield rag_pb2.AskStreamResponse(delta=result.answer[i : i + 3])
        yield rag_pb2.AskStreamResponse(result=result)

    def PutDocument(
        self, request: rag_pb2.PutDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.PutDocumentResponse:
        self._groups(context)
        if not request.text.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{request.doc_id}: text must not be empty")
        key = (request.doc_id, request.collection)
        sha = hashlib.sha256(request.text.encode()).hexdigest()
        with self.lock:
            current = self.docs.get(key)
            current_rev = current[0].revision if current else 0
            if request.HasField("if_revision") and request.if_revision != current_rev:
                context.abort(grpc.StatusCode.ABORTED, f"{request.doc_id} is at revision {current_rev}")
            title = request.title or (
                request.text.split("title:", 1)[1].split("\n", 1)[0].strip()
                if "title:" in request.text
                else request.doc_id
            )
            if current and current[0].content_sha256 == sha and current[0].source == request.source:
                return rag_pb2.PutDocumentResponse(document=current[0], changed=False)
            doc = common_pb2.Document(
                doc_id=request.doc_id,
                revision=current_rev + 1,
                title=title,
                source=request.source,
                collection=request.collection,
                acl=list(request.acl),
                content_sha256=sha,
                chunk_count=1,
                char_count=len(request.text),
            )
            self.docs[key] = (doc, request.text)
        return rag_pb2.PutDocumentResponse(document=doc, changed=True, timings_ms={"total": 1.0})

    def DeleteDocument(
        self, request: rag_pb2.DeleteDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.DeleteDocumentResponse:
        with self.lock:
            current = self.docs.pop((request.doc_id, request.collection), None)
        if current is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no document {request.doc_id!r}")
        assert current is not None
        return rag_pb2.DeleteDocumentResponse(revision=current[0].revision)

    def GetSource(self, request: rag_pb2.GetSourceRequest, context: grpc.ServicerContext) -> rag_pb2.GetSourceResponse:
        current = self.docs.get((request.doc_id, request.collection))
        if current is None or current[0].revision != request.revision:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.doc_id}@{request.revision} is gone")
        assert current is not None
        doc, text = current
        ctx = request.context_chars or 300
        return rag_pb2.GetSourceResponse(
            document=doc,
            passage=text[request.start : request.end],
            before=text[max(0, request.start - ctx) : request.start],
            after=text[request.end : request.end + ctx],
        )

    def ListDocuments(
        self, request: rag_pb2.ListDocumentsRequest, context: grpc.ServicerContext
    ) -> rag_pb2.ListDocumentsResponse:
        with self.lock:
            docs = [d for (_, c), (d, _) in self.docs.items() if c == request.collection]
        docs.sort(key=lambda d: d.doc_id)
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = docs[start : start + size]
        token = str(start + size) if start + size < len(docs) else ""
        return rag_pb2.ListDocumentsResponse(documents=page, next_page_token=token)


@dataclass
class FakeServer:
    address: str
    rag: FakeRag


@pytest.fixture()
def fake_server() -> Iterator[FakeServer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rag = FakeRag()
    rag_pb2_grpc.add_RagServicer_to_server(rag, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield FakeServer(address=f"127.0.0.1:{port}", rag=rag)
    finally:
        server.stop(0).wait()


@pytest.fixture()
def dead_address() -> str:
    """An address where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
