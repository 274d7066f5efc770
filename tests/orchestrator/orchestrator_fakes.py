"""Small in-process fakes of the orchestrator's peers, to test the orchestrator's own logic.

They keep the contract's behaviour the orchestrator relies on (revisions, generation, ACL filtering, exact chunk
offsets, passage-relative answer spans) but score by word overlap instead of models. The real services are
tested end to end in tests/e2e.

The fake reader answers with the first "ticket code" (like VPN-42) in the best passage that shares a word with
the question, and abstains when no passage has one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from wikimem_common import vectors
from wikimem_common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, ServiceError, grpc_errors
from wikimem_common.server import ServerHandle, start
from wikimem_contract.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    rag_pb2,
    rag_pb2_grpc,
    reader_pb2,
    reader_pb2_grpc,
    reranker_pb2,
    reranker_pb2_grpc,
)

CODE = re.compile(r"\b[A-Z]{2,}-\d+\b")


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 3}


@dataclass
class Calls:
    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, object] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, request: object) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            self.last[name] = request

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


class FakeEmbedder(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        #: EmbedResponse.model_id ("" like an embedder from before it existed); Info says "fake-embedder".
        self.model_id = ""
        #: Set: requests of more than one text fail UNAVAILABLE (the question's own embedding still works).
        self.fail_batches = False
        #: The texts of every Embed request, in arrival order.
        self.requests: list[list[str]] = []

    @grpc_errors
    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedder_pb2.EmbedResponse:
        self.calls.add("embed", request)
        with self.calls.lock:
            self.requests.append(list(request.texts))
        if self.fail_batches and len(request.texts) > 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake embedder: batches refused")
        matrix = np.ones((len(request.texts), 4), dtype=np.float32) / 2
        return embedder_pb2.EmbedResponse(
            vectors=vectors.to_proto(matrix), tokens=len(request.texts), model_id=self.model_id
        )

    @grpc_errors
    def Info(self, request: embedder_pb2.InfoRequest, context: grpc.ServicerContext) -> embedder_pb2.InfoResponse:
        return embedder_pb2.InfoResponse(model_id="fake-embedder", dim=4, max_length=128)


@dataclass
class StoredDoc:
    document: common_pb2.Document
    text: str
    chunks: list[common_pb2.Chunk]


class FakeMemory(memory_pb2_grpc.MemoryServicer):
    """Documents chunked at blank lines; search = word overlap with query_text, ACL and collection enforced."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.docs: dict[tuple[str, str], StoredDoc] = {}
        self.last_revision: dict[tuple[str, str], int] = {}
        self.generation = 0
        self.lock = threading.Lock()
        self.fail: dict[str, ServiceError] = {}

    def _maybe_fail(self, name: str, context: grpc.ServicerContext) -> None:
        if name in self.fail:
            raise self.fail[name]

    @staticmethod
    def _chunks(doc: common_pb2.Document, text: str) -> list[common_pb2.Chunk]:
        chunks = []
        for ordinal, m in enumerate(re.finditer(r"\S(?:.|\n(?!\s*\n))*", text)):
            chunks.append(
                common_pb2.Chunk(
                    chunk_id=f"{doc.doc_id}@{doc.revision}#{ordinal}", doc_id=doc.doc_id, revision=doc.revision,
                    title=doc.title, source=doc.source, collection=doc.collection, ordinal=ordinal,
                    start=m.start(), end=m.end(), text=m.group(0), heading=doc.title, acl=list(doc.acl),
                )
            )
        return chunks

    @grpc_errors
    def Upsert(self, request: memory_pb2.UpsertRequest, context: grpc.ServicerContext) -> memory_pb2.UpsertResponse:
        self.calls.add("upsert", request)
        self._maybe_fail("upsert", context)
        if not request.doc_id.strip():
            raise InvalidArgument("doc_id must not be empty")
        collection = request.collection or "default"
        key = (collection, request.doc_id)
        with self.lock:
            current = self.docs.get(key)
            current_rev = current.document.revision if current else 0
            if request.HasField("if_revision") and request.if_revision != current_rev:
                raise Aborted(f"{request.doc_id} is at revision {current_rev}, not {request.if_revision}")
            if current and current.text == request.text and current.document.title == request.title and (
                list(current.document.acl) == list(request.acl)
            ):
                return memory_pb2.UpsertResponse(document=current.document, changed=False, generation=self.generation)
            base = max(current_rev, self.last_revision.get(key, 0))
            if request.revision and request.revision <= base:
                raise FailedPrecondition(f"revision {request.revision} is not greater than {base}")
            revision = request.revision or base + 1
            doc = common_pb2.Document(
                doc_id=request.doc_id, revision=revision, title=request.title, source=request.source,
                collection=collection, acl=list(request.acl), metadata=dict(request.metadata),
                char_count=len(request.text),
            )
            chunks = self._chunks(doc, request.text)
            doc.chunk_count = len(chunks)
            self.docs[key] = StoredDoc(doc, request.text, chunks)
            self.last_revision[key] = revision
            self.generation += 1
            generation = self.generation
        # metadata "test_reply_delay_s": committed now, acknowledged later (to order replies against other writes)
        time.sleep(float(request.metadata.get("test_reply_delay_s", "0")))
        return memory_pb2.UpsertResponse(document=doc, changed=True, generation=generation)

    @grpc_errors
    def Delete(self, request: memory_pb2.DeleteRequest, context: grpc.ServicerContext) -> memory_pb2.DeleteResponse:
        self.calls.add("delete", request)
        key = (request.collection or "default", request.doc_id)
        with self.lock:
            current = self.docs.get(key)
            if current is None:
                raise NotFound(f"document {request.doc_id} does not exist")
            if request.HasField("if_revision") and request.if_revision != current.document.revision:
                raise Aborted(f"{request.doc_id} is at revision {current.document.revision}")
            del self.docs[key]
            self.generation += 1
            return memory_pb2.DeleteResponse(revision=current.document.revision, generation=self.generation)

    @staticmethod
    def _visible(doc: common_pb2.Document, groups: list[str]) -> bool:
        return not doc.acl or bool(set(doc.acl) & set(groups))

    @grpc_errors
    def Search(self, request: memory_pb2.SearchRequest, context: grpc.ServicerContext) -> memory_pb2.SearchResponse:
        self.calls.add("search", request)
        self._maybe_fail("search", context)
        vectors.from_proto(request.query)
        query = words(request.query_text)
        collection = request.filter.collection or "default"
        with self.lock:
            scored = []
            for (coll, _), stored in sorted(self.docs.items()):
                if coll != collection or not self._visible(stored.document, list(request.filter.groups)):
                    continue
                for chunk in stored.chunks:
                    overlap = len(query & words(chunk.text))
                    if overlap:
                        scored.append(common_pb2.ScoredChunk(chunk=chunk, score=overlap / (1 + len(chunk.text))))
            scored.sort(key=lambda s: -s.score)
            return memory_pb2.SearchResponse(hits=scored[: request.top_k], generation=self.generation)

    @grpc_errors
    def Get(self, request: memory_pb2.GetRequest, context: grpc.ServicerContext) -> memory_pb2.GetResponse:
        self.calls.add("get", request)
        with self.lock:
            stored = self.docs.get((request.collection or "default", request.doc_id))
            if stored is None or not self._visible(stored.document, list(request.groups)):
                raise NotFound(f"document {request.doc_id} does not exist")
            return memory_pb2.GetResponse(document=stored.document, text=stored.text if request.include_text else "")

    @grpc_errors
    def GetChunks(
        self, request: memory_pb2.GetChunksRequest, context: grpc.ServicerContext
    ) -> memory_pb2.GetChunksResponse:
        with self.lock:
            stored = self.docs.get((request.collection or "default", request.doc_id))
            if stored is None or not self._visible(stored.document, list(request.groups)):
                raise NotFound(f"document {request.doc_id} does not exist")
            return memory_pb2.GetChunksResponse(chunks=stored.chunks)

    @grpc_errors
    def List(self, request: memory_pb2.ListRequest, context: grpc.ServicerContext) -> memory_pb2.ListResponse:
        self.calls.add("list", request)
        collection = request.filter.collection or "default"
        with self.lock:
            docs = [
                s.document for (coll, _), s in sorted(self.docs.items())
                if coll == collection and self._visible(s.document, list(request.filter.groups))
            ]
        return memory_pb2.ListResponse(documents=docs[: request.page_size])

    @grpc_errors
    def Stats(self, request: memory_pb2.StatsRequest, context: grpc.ServicerContext) -> memory_pb2.StatsResponse:
        self.calls.add("stats", request)
        with self.lock:
            return memory_pb2.StatsResponse(documents=len(self.docs), generation=self.generation, backend="fake")


class FakeReranker(reranker_pb2_grpc.RerankerServicer):
    """Scores by word overlap divided by length; `reverse` makes it prefer what vector order ranks last."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.reverse = False

    @grpc_errors
    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        self.calls.add("rerank", request)
        query = words(request.query)
        scores = [float(len(query & words(p))) - len(p) / 1e4 for p in request.passages]
        if self.reverse:
            scores = [float(i) for i in range(len(scores))]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return reranker_pb2.RerankResponse(scores=scores, order=order)


class FakeReader(reader_pb2_grpc.ReaderServicer):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.bad_span = False
        #: Set: act as a generative reader writing this text (unverified; the orchestrator checks it).
        self.generate: str | None = None

    def _read(self, question: str, passages: list[reader_pb2.ReadPassage]) -> reader_pb2.ReadResponse:
        if not passages:
            return reader_pb2.ReadResponse(abstained=True, abstain_reason="no passages", backend="fake")
        if self.generate is not None:
            answer = reader_pb2.ReadAnswer(text=self.generate, generated=True)
            return reader_pb2.ReadResponse(answers=[answer], backend="fake-llm", model="fake-model")
        query = words(question)
        for index, passage in enumerate(passages):
            m = CODE.search(passage.text)
            if m and query & words(passage.text):
                start, end = (m.start(), len(passage.text) + 5) if self.bad_span else (m.start(), m.end())
                answer = reader_pb2.ReadAnswer(text=m.group(0), score=2.5, passage_index=index, start=start, end=end)
                return reader_pb2.ReadResponse(answers=[answer], backend="fake")
        return reader_pb2.ReadResponse(
            abstained=True, abstain_reason="no supported answer (score -3.0 < threshold 0.0)", backend="fake"
        )

    @grpc_errors
    def Read(self, request: reader_pb2.ReadRequest, context: grpc.ServicerContext) -> reader_pb2.ReadResponse:
        self.calls.add("read", request)
        if not request.question.strip():
            raise InvalidArgument("question must not be empty")
        return self._read(request.question, list(request.passages))

    @grpc_errors
    def ReadStream(
        self, request: reader_pb2.ReadStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[reader_pb2.ReadStreamResponse]:
        self.calls.add("read_stream", request)
        result = self._read(request.question, list(request.passages))
        if result.answers and (request.options.max_answers <= 1 or result.answers[0].generated):
            text = result.answers[0].text
            half = len(text) // 2
            yield reader_pb2.ReadStreamResponse(delta=text[:half])
            yield reader_pb2.ReadStreamResponse(delta=text[half:])
        yield reader_pb2.ReadStreamResponse(result=result)


def serve(add: Callable[[grpc.Server], None], name: str, address: str = "127.0.0.1:0") -> ServerHandle:
    def register(server: grpc.Server) -> list[str]:
        add(server)
        return [f"wikimem.v1.{name}"]

    return start(register, address, max_workers=4)


@dataclass
class Peers:
    calls: Calls
    embedder: FakeEmbedder
    memory: FakeMemory
    reranker: FakeReranker
    reader: FakeReader
    handles: dict[str, ServerHandle]

    def address(self, name: str) -> str:
        return self.handles[name].address

    def stop(self, name: str) -> None:
        self.handles[name].stop(grace=0)

    def stop_all(self) -> None:
        for handle in self.handles.values():
            handle.stop(grace=0)


def start_peers() -> Peers:
    calls = Calls()
    embedder, memory = FakeEmbedder(calls), FakeMemory(calls)
    reranker, reader = FakeReranker(calls), FakeReader(calls)
    handles = {
        "embedder": serve(lambda s: embedder_pb2_grpc.add_EmbedderServicer_to_server(embedder, s), "Embedder"),
        "memory": serve(lambda s: memory_pb2_grpc.add_MemoryServicer_to_server(memory, s), "Memory"),
        "reranker": serve(lambda s: reranker_pb2_grpc.add_RerankerServicer_to_server(reranker, s), "Reranker"),
        "reader": serve(lambda s: reader_pb2_grpc.add_ReaderServicer_to_server(reader, s), "Reader"),
    }
    return Peers(calls, embedder, memory, reranker, reader, handles)


HANDBOOK = (
    "Laptops are issued on the first day; the network team sets them up.\n\n"
    "To reach the office network from home, connect to the VPN. The VPN profile is named VPN-42 and "
    "it needs the authenticator app.\n\n"
    "Expenses are filed in the finance portal. Travel over 500 EUR needs approval code FIN-7 first."
)
#: Matches two chunks of HANDBOOK (so the reranker is consulted); the answer is VPN-42.
VPN_Q = "What is the name of the VPN profile for the network?"


class Orchestrator:
    """A running orchestrator and a stub; `ask` / `put` pass caller groups as x-wikimem-groups metadata."""

    def __init__(self, handle: ServerHandle, close: Callable[[], None]) -> None:
        self.handle = handle
        self._close = close
        self.channel = grpc.insecure_channel(handle.address)
        self.stub = rag_pb2_grpc.RagStub(self.channel)

    @staticmethod
    def meta(groups: str | None) -> list[tuple[str, str]]:
        return [] if groups is None else [("x-wikimem-groups", groups)]

    def ask(self, question: str, groups: str | None = None, **options: Any) -> rag_pb2.AskResponse:
        request = rag_pb2.AskRequest(question=question, options=rag_pb2.AskOptions(**options))
        return self.stub.Ask(request, metadata=self.meta(groups), timeout=30)

    def put(self, doc_id: str, text: str, groups: str | None = None, **fields: Any) -> rag_pb2.PutDocumentResponse:
        request = rag_pb2.PutDocumentRequest(doc_id=doc_id, text=text, **fields)
        return self.stub.PutDocument(request, metadata=self.meta(groups), timeout=30)

    def stop(self) -> None:
        self.channel.close()
        self.handle.stop(grace=0)
        self._close()
