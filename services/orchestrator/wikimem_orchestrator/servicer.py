"""gRPC adapter for wikimem.v1.Rag: the caller's identity and deadline from the call, then the core, then the proto.

Every call first resolves who is calling (auth/authenticator.py: a verified token or API key, or with auth off
the anonymous caller and the groups it claims), and is recorded in the audit log when it writes or is denied
(audit.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from wikimem_common.errors import grpc_errors
from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

from . import validation
from .audit import AuditLog
from .auth import AuthConfig, Authenticator, Identity
from .auth.policy import Policy
from .documents import Documents
from .pipeline import AskParams, Deadline, Pipeline, parse_groups
from .sentence_warming import Foreground

GROUPS_METADATA = metadata.GROUPS


def caller_groups(context: grpc.ServicerContext) -> tuple[str, ...]:
    """The groups a caller claims in x-wikimem-groups (trusted only when authentication is off)."""
    values = [str(v) for k, v in context.invocation_metadata() or () if k == GROUPS_METADATA]
    return parse_groups(",".join(values))


def caller_deadline(context: grpc.ServicerContext) -> Deadline:
    return Deadline(context.time_remaining())


class RagServicer(rag_pb2_grpc.RagServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        documents: Documents,
        authenticator: Authenticator | None = None,
        audit: AuditLog | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.documents = documents
        self.auth = authenticator or Authenticator(AuthConfig())
        self.policy = Policy(self.auth.config)
        self.audit = audit or AuditLog()
        #: Asks and writes in flight, which background work (sentence warming) lets go first.
        self.foreground = foreground or Foreground()

    def _identify(self, context: grpc.ServicerContext) -> Identity:
        return self.auth.identify(context.invocation_metadata())

    def _ask_params(self, request: rag_pb2.AskRequest | rag_pb2.AskStreamRequest, identity: Identity) -> AskParams:
        validation.ask_options(request.options, self.pipeline.config)
        self.policy.require_reader(identity, request.options.reader)
        self.pipeline.reader_limit.check(identity, request.options.reader)  # per-caller rate (overload.py)
        return self.pipeline.params(request.question, request.options, identity.groups)

    @grpc_errors
    def Ask(self, request: rag_pb2.AskRequest, context: grpc.ServicerContext) -> rag_pb2.AskResponse:
        with self.foreground.busy(), self.audit.record("Ask", context, collection=request.options.collection) as entry:
            entry.identity = self._identify(context)
            params = self._ask_params(request, entry.identity)
            return self.pipeline.ask(params, caller_deadline(context))

    @grpc_errors
    def AskStream(
        self, request: rag_pb2.AskStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[rag_pb2.AskStreamResponse]:
        with (
            self.foreground.busy(),
            self.audit.record("AskStream", context, collection=request.options.collection) as entry,
        ):
            entry.identity = self._identify(context)
            params = self._ask_params(request, entry.identity)
            for event in self.pipeline.run(params, caller_deadline(context), stream=True):
                if isinstance(event, str):
                    yield rag_pb2.AskStreamResponse(delta=event)
                else:
                    yield rag_pb2.AskStreamResponse(result=event)

    @grpc_errors
    def PutDocument(
        self, request: rag_pb2.PutDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.PutDocumentResponse:
        with self.foreground.busy(), self.audit.record(
            "PutDocument", context, collection=request.collection, doc_id=request.doc_id, revision=request.revision
        ) as entry:
            entry.identity = self._identify(context)
            response = self.documents.put(request, caller_deadline(context), entry.identity)
            entry.revision = int(response.document.revision)
            return response

    @grpc_errors
    def DeleteDocument(
        self, request: rag_pb2.DeleteDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.DeleteDocumentResponse:
        with self.audit.record(
            "DeleteDocument", context, collection=request.collection, doc_id=request.doc_id
        ) as entry:
            entry.identity = self._identify(context)
            response = self.documents.delete(request, caller_deadline(context), entry.identity)
            entry.revision = int(response.revision)
            return response

    @grpc_errors
    def GetSource(self, request: rag_pb2.GetSourceRequest, context: grpc.ServicerContext) -> rag_pb2.GetSourceResponse:
        """revision 0 means "the current one"; NOT_FOUND once the requested revision has been replaced."""
        with self.audit.record(
            "GetSource", context, collection=request.collection, doc_id=request.doc_id, revision=request.revision
        ) as entry:
            entry.identity = self._identify(context)
            return self.documents.get_source(request, entry.identity.groups, caller_deadline(context))

    @grpc_errors
    def ListDocuments(
        self, request: rag_pb2.ListDocumentsRequest, context: grpc.ServicerContext
    ) -> rag_pb2.ListDocumentsResponse:
        with self.audit.record("ListDocuments", context, collection=request.collection) as entry:
            entry.identity = self._identify(context)
            return self.documents.list(request, entry.identity.groups, caller_deadline(context))
