"""gRPC adapter for wikimem.v1.Rag: caller groups and deadline from the call, then the core, then the proto."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from wikimem_common.errors import grpc_errors
from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

from .documents import Documents
from .pipeline import Deadline, Pipeline, parse_groups

GROUPS_METADATA = metadata.GROUPS


def caller_groups(context: grpc.ServicerContext) -> tuple[str, ...]:
    values = [str(v) for k, v in context.invocation_metadata() or () if k == GROUPS_METADATA]
    return parse_groups(",".join(values))


def caller_deadline(context: grpc.ServicerContext) -> Deadline:
    return Deadline(context.time_remaining())


class RagServicer(rag_pb2_grpc.RagServicer):
    def __init__(self, pipeline: Pipeline, documents: Documents) -> None:
        self.pipeline = pipeline
        self.documents = documents

    @grpc_errors
    def Ask(self, request: rag_pb2.AskRequest, context: grpc.ServicerContext) -> rag_pb2.AskResponse:
        params = self.pipeline.params(request.question, request.options, caller_groups(context))
        return self.pipeline.ask(params, caller_deadline(context))

    @grpc_errors
    def AskStream(
        self, request: rag_pb2.AskStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[rag_pb2.AskStreamResponse]:
        params = self.pipeline.params(request.question, request.options, caller_groups(context))
        for event in self.pipeline.run(params, caller_deadline(context), stream=True):
            if isinstance(event, str):
                yield rag_pb2.AskStreamResponse(delta=event)
            else:
                yield rag_pb2.AskStreamResponse(result=event)

    @grpc_errors
    def PutDocument(
        self, request: rag_pb2.PutDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.PutDocumentResponse:
        return self.documents.put(request, caller_deadline(context))

    @grpc_errors
    def DeleteDocument(
        self, request: rag_pb2.DeleteDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.DeleteDocumentResponse:
        return self.documents.delete(request, caller_deadline(context))

    @grpc_errors
    def GetSource(self, request: rag_pb2.GetSourceRequest, context: grpc.ServicerContext) -> rag_pb2.GetSourceResponse:
        """revision 0 means "the current one"; NOT_FOUND once the requested revision has been replaced."""
        return self.documents.get_source(request, caller_groups(context), caller_deadline(context))

    @grpc_errors
    def ListDocuments(
        self, request: rag_pb2.ListDocumentsRequest, context: grpc.ServicerContext
    ) -> rag_pb2.ListDocumentsResponse:
        return self.documents.list(request, caller_groups(context), caller_deadline(context))
