"""asyncio client for the wikimem orchestrator, the same API as `WikimemClient` over `grpc.aio`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
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
from wikimem.transport import open_aio_channel
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc


class AsyncWikimemClient:
    """Like `WikimemClient`, but every method is a coroutine (streams and listings are async iterators).

    Create it inside a running event loop; `await client.close()` (or `async with`) releases the channel.
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
        self._channel = open_aio_channel(self.address, CHANNEL_OPTIONS, tls=tls, ca_file=ca_file)
        self._stub = rag_pb2_grpc.RagStub(self._channel)

    async def __aenter__(self) -> AsyncWikimemClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def ask(
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
        options = ask_options(
            collection, retrieve_k, read_k, reader, no_cache, include_passages, max_tokens, unsupported,
            no_qa_memory=no_qa_memory,
            retrieval=retrieval,
        )
        response = await self._call(self._stub.Ask, rag_pb2.AskRequest(question=question, options=options), timeout)
        return answer_from_proto(response)

    async def ask_stream(
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
    ) -> AsyncIterator[str | Answer]:
        """Yield answer text deltas (str), then the final `Answer`."""
        options = ask_options(
            collection, retrieve_k, read_k, reader, no_cache, include_passages, max_tokens, unsupported,
            no_qa_memory=no_qa_memory,
            retrieval=retrieval,
        )
        request = rag_pb2.AskStreamRequest(question=question, options=options)
        call = self._stub.AskStream(
            request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata
        )
        try:
            async for event in call:
                kind = event.WhichOneof("event")
                if kind == "delta":
                    yield event.delta
                elif kind == "result":
                    yield answer_from_proto(event.result)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def put_document(
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
        return put_result_from_proto(await self._call(self._stub.PutDocument, request, timeout))

    async def delete_document(
        self, doc_id: str, *, collection: str = "", if_revision: int | None = None, timeout: float | None = None
    ) -> int:
        request = delete_request(doc_id, collection, if_revision)
        response = await self._call(self._stub.DeleteDocument, request, timeout)
        return int(response.revision)

    async def get_source(
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
        request = rag_pb2.GetSourceRequest(
            doc_id=doc_id, revision=revision, start=start, end=end, collection=collection, context_chars=context_chars
        )
        return source_from_proto(await self._call(self._stub.GetSource, request, timeout))

    async def list_documents(
        self, *, collection: str = "", page_size: int = 100, timeout: float | None = None
    ) -> AsyncIterator[Document]:
        token = ""
        while True:
            request = rag_pb2.ListDocumentsRequest(collection=collection, page_size=page_size, page_token=token)
            response = await self._call(self._stub.ListDocuments, request, timeout)
            for doc in response.documents:
                yield document_from_proto(doc)
            token = response.next_page_token
            if not token:
                return

    async def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        stub = health_pb2_grpc.HealthStub(self._channel)
        response = await self._call(stub.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
