"""gRPC adapter for wikimem.v1.Embedder."""

from __future__ import annotations

import grpc

from wikimem_common import vectors
from wikimem_common.errors import grpc_errors
from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc

from .service import Embedder


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, core: Embedder) -> None:
        self.core = core

    @grpc_errors
    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedder_pb2.EmbedResponse:
        result = self.core.embed(request.texts)
        response = embedder_pb2.EmbedResponse(
            vectors=vectors.to_proto(result.vectors), tokens=result.tokens, model_id=self.core.config.model_id
        )
        result.timings.finish(response.timings_ms)
        return response

    @grpc_errors
    def Info(self, request: embedder_pb2.InfoRequest, context: grpc.ServicerContext) -> embedder_pb2.InfoResponse:
        config = self.core.config
        return embedder_pb2.InfoResponse(
            model_id=config.model_id,
            dim=self.core.dim,
            max_length=config.max_length,
            max_batch_size=config.max_batch,
            backend="onnxruntime-cpu",
        )
