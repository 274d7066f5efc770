"""Edge validation: requests checked against what the downstream services accept, before any work is done.

Everything here answers INVALID_ARGUMENT with a message naming the field and its limit (ids: the code point),
so a bad request never reaches a store (where 2**64-1 overflowed SQLite: INTERNAL) or a reader (where read_k 65
failed after retrieval and reranking).
"""

from __future__ import annotations

from wikimem_common import identifiers
from wikimem_common.errors import InvalidArgument
from wikimem_contract.v1 import rag_pb2

from .config import OrchestratorConfig


def doc_id(value: str, config: OrchestratorConfig) -> str:
    """The NFC form of a document id; invisible, bidi-control and look-alike characters are refused."""
    return identifiers.doc_id(value, config.max_doc_id_chars)


def lookup_doc_id(value: str, config: OrchestratorConfig) -> str:
    """An id to read or delete, exactly as stored (a document from before the id rules can still be removed)."""
    return identifiers.lookup_doc_id(value, config.max_doc_id_chars)


def revision(value: int, field: str) -> int:
    return identifiers.revision(value, field)


def ask_options(options: rag_pb2.AskOptions, config: OrchestratorConfig) -> None:
    """The numeric options of an Ask within what memory and the reader take (the pipeline checks the rest)."""
    if options.read_k > config.max_read_k:
        raise InvalidArgument(
            f"options.read_k is {options.read_k}; the limit is {config.max_read_k} (passages the reader takes)"
        )
    if options.retrieve_k > config.max_retrieve_k:
        raise InvalidArgument(f"options.retrieve_k is {options.retrieve_k}; the limit is {config.max_retrieve_k}")
    if options.max_tokens > config.max_answer_tokens:
        raise InvalidArgument(f"options.max_tokens is {options.max_tokens}; the limit is {config.max_answer_tokens}")
    if len(options.reader) > 64:
        raise InvalidArgument(f"options.reader is {len(options.reader)} characters; name a reader backend")


def put_request(request: rag_pb2.PutDocumentRequest, config: OrchestratorConfig) -> str:
    revision(request.revision, "revision")
    if request.HasField("if_revision"):
        revision(request.if_revision, "if_revision")
    return doc_id(request.doc_id, config)


def delete_request(request: rag_pb2.DeleteDocumentRequest, config: OrchestratorConfig) -> str:
    if request.HasField("if_revision"):
        revision(request.if_revision, "if_revision")
    return lookup_doc_id(request.doc_id, config)


def source_request(request: rag_pb2.GetSourceRequest, config: OrchestratorConfig) -> str:
    revision(request.revision, "revision")
    return lookup_doc_id(request.doc_id, config)


def list_request(request: rag_pb2.ListDocumentsRequest, config: OrchestratorConfig) -> None:
    if request.page_size > config.max_list_page_size:
        raise InvalidArgument(f"page_size is {request.page_size}; the limit is {config.max_list_page_size}")
