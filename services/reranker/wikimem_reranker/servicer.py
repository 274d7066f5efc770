"""gRPC adapter for wikimem.v1.Reranker."""

from __future__ import annotations

import grpc

from wikimem_common.errors import grpc_errors
from wikimem_contract.v1 import reranker_pb2, reranker_pb2_grpc

from .service import Reranker


class RerankerServicer(reranker_pb2_grpc.RerankerServicer):
    def __init__(self, core: Reranker) -> None:
        self.core = core

    @grpc_errors
    def Rerank(self, request: reranker_pb2.RerankRequest, context: grpc.ServicerContext) -> reranker_pb2.RerankResponse:
        result = self.core.rerank(request.query, request.passages)
        response = reranker_pb2.RerankResponse(scores=result.scores, order=result.order)
        result.timings.finish(response.timings_ms)
        return response
