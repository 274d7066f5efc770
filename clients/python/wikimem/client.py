"""Synchronous client for the wikimem orchestrator (gRPC `wikimem.v1.Rag`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem.credentials import credential_metadata
from wikimem.errors import from_rpc_error
from wikimem.models import (
    CHANNEL_OPTIONS,
    Answer,
    Document,
    PutResult,
    Source,
    answer_from_proto,
    ask_options,
    default_address,
    delete_request,
    document_from_proto,
    groups_metadata,
    put_request,
    put_result_from_proto,
    source_from_proto,
)
from wikimem.transport import open_channel
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

T = TypeVar("T")


class WikimemClient:
    """Ask questions and edit documents.

    `address` defaults to `$WIKIMEM_ADDR` (else 127.0.0.1:50051); `groups` are the caller's groups for access
    control, sent as metadata on every call. Failures raise a `wikimem.errors.WikimemError` subclass.
    The client is thread-safe; close it (or use it as a context manager) to release the channel.
    """

    def __init__(
        self,
        address: str | None = None,
        groups: Iterable[str] | None = None,
        timeout: float | None = 60.0,
        *,
        tls: bool | None = None,
        ca_file: str | None = None,
        token: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.address = address or default_address()
        self.groups = [g for g in (groups or ()) if g]
        self.timeout = timeout
        # credential: `token` (OIDC/JWT bearer) or `api_key`, else $WIKIMEM_TOKEN / $WIKIMEM_API_KEY (credentials.py)
        self._metadata = groups_metadata(self.groups) + credential_metadata(token, api_key)
        # TLS: `tls=True` or a `ca_file` (else $WIKIMEM_TLS / $WIKIMEM_CA_FILE); plaintext otherwise
        self._channel = open_channel(self.address, CHANNEL_OPTIONS, tls=tls, ca_file=ca_file)
        self._stub = rag_pb2_grpc.RagStub(self._channel)

    def __enter__(self) -> WikimemClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def ask(
        self,
        question: str,
        *,
        collection: str = "",
        retrieve_k: int = 0,
        read_k: int = 0,
        reader: str = "",
        no_cache: bool = False,
        include_passages: bool = False,
        max_tokens: int = 0,
        unsupported: str = "",
        no_qa_memory: bool = False,
        retrieval: str = "",
        timeout: float | None = None,
    ) -> Answer:
        """Answer `question` from the wiki, with citations; `abstained` is set when the wiki has no answer."""
        options = ask_options(
            collection, retrieve_k, read_k, reader, no_cache, include_passages, max_tokens, unsupported,
            no_qa_memory=no_qa_memory,
            retrieval=retrieval,
        )
        response = self._call(self._stub.Ask, rag_pb2.AskRequest(question=question, options=options), timeout)
        return answer_from_proto(response)

    def ask_stream(
        self,
        question: str,
        *,
        collection: str = "",
        retrieve_k: int = 0,
        read_k: int = 0,
        reader: str = "",
        no_cache: bool = False,
        include_passages: bool = False,
        max_tokens: int = 0,
        unsupported: str = "",
        no_qa_memory: bool = False,
        retrieval: str = "",
        timeout: float | None = None,
    ) -> Iterator[str | Answer]:
        """Yield answer text deltas (str) as they are produced, then the final `Answer`."""
        options = ask_options(
            collection, retrieve_k, read_k, reader, no_cache, include_passages, max_tokens, unsupported,
            no_qa_memory=no_qa_memory,
            retrieval=retrieval,
        )
        request = rag_pb2.AskStreamRequest(question=question, options=options)
        try:
            for event in self._stub.AskStream(
                request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
            ):
                kind = event.WhichOneof("event")
                if kind == "delta":
                    yield event.delta
                elif kind == "result":
                    yield answer_from_proto(event.result)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def put_document(
        self,
        doc_id: str,
        text: str,
        *,
        title: str = "",
        source: str = "",
        collection: str = "",
        acl: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        revision: int = 0,
        if_revision: int | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        """Insert or replace a whole document. Unchanged content is a no-op (`changed` is False).

        `if_revision` makes it a compare-and-set (0 = must not exist yet); a mismatch raises `AbortedError`.
        """
        request = put_request(
            doc_id,
            text,
            title=title,
            source=source,
            collection=collection,
            acl=acl,
            metadata=metadata,
            revision=revision,
            if_revision=if_revision,
        )
        return put_result_from_proto(self._call(self._stub.PutDocument, request, timeout))

    def delete_document(
        self, doc_id: str, *, collection: str = "", if_revision: int | None = None, timeout: float | None = None
    ) -> int:
        """Delete a document; returns the revision that was deleted."""
        response = self._call(self._stub.DeleteDocument, delete_request(doc_id, collection, if_revision), timeout)
        return int(response.revision)

    def get_source(
        self,
        doc_id: str,
        revision: int,
        start: int,
        end: int,
        *,
        collection: str = "",
        context_chars: int = 0,
        timeout: float | None = None,
    ) -> Source:
        """The cited span `[start, end)` of that revision with context; `NotFoundError` once the revision is gone."""
        request = rag_pb2.GetSourceRequest(
            doc_id=doc_id, revision=revision, start=start, end=end, collection=collection, context_chars=context_chars
        )
        return source_from_proto(self._call(self._stub.GetSource, request, timeout))

    def list_documents(
        self, *, collection: str = "", page_size: int = 100, timeout: float | None = None
    ) -> Iterator[Document]:
        """Every document visible to this client's groups, fetched page by page."""
        token = ""
        while True:
            request = rag_pb2.ListDocumentsRequest(collection=collection, page_size=page_size, page_token=token)
            response = self._call(self._stub.ListDocuments, request, timeout)
            for doc in response.documents:
                yield document_from_proto(doc)
            token = response.next_page_token
            if not token:
                return

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        """The gRPC health status of the server ("SERVING", "NOT_SERVING", ...); raises if unreachable."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        response = self._call(stub.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
