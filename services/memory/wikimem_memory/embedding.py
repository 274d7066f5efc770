"""Client of the Embedder service, as the memory uses it: batches of chunk texts → float32 matrix + model id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import grpc
import numpy as np
import numpy.typing as npt

from wikimem_common import server as wserver
from wikimem_common import vectors
from wikimem_common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, ServiceError, Unavailable
from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc


class Embeddings(NamedTuple):
    matrix: npt.NDArray[np.float32]
    #: The model that made the vectors (EmbedResponse.model_id); "" from an embedder too old to say, or when
    #: nothing was embedded.
    model_id: str


class EmbedderClient:
    def __init__(self, address: str, batch: int = 128, timeout_s: float = 120.0) -> None:
        self.address = address
        self._batch = batch
        self._timeout = timeout_s
        self._channel = wserver.channel(address)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)

    def _error(self, exc: grpc.RpcError) -> ServiceError:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgument(f"embedder at {self.address} rejected the chunks: {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(f"embedder at {self.address} is overloaded: {details}; retry later")
        return Unavailable(f"embedder at {self.address} unavailable: {details}; check that it is running")

    def embed(self, texts: Sequence[str], dim: int) -> Embeddings:
        """Embed `texts` (in batches); raises Unavailable when the embedder cannot be reached."""
        parts: list[npt.NDArray[np.float32]] = []
        model_id = ""
        for i in range(0, len(texts), self._batch):
            request = embedder_pb2.EmbedRequest(texts=list(texts[i : i + self._batch]))
            try:
                response = self._stub.Embed(request, timeout=self._timeout, wait_for_ready=False)
            except grpc.RpcError as exc:
                raise self._error(exc) from exc
            matrix = vectors.from_proto(response.vectors)
            if matrix.shape[1] != dim:
                raise FailedPrecondition(
                    f"embedder at {self.address} returns {matrix.shape[1]}-d vectors; this memory stores {dim}-d "
                    "(set WIKIMEM_MEMORY_DIM to match the embedding model, with a fresh data directory)"
                )
            if i and response.model_id != model_id:  # the embedder was swapped between two batches
                raise Unavailable(
                    f"embedder at {self.address} changed its model from {model_id!r} to {response.model_id!r} "
                    "during the request; retry"
                )
            model_id = response.model_id
            parts.append(matrix)
        if not parts:
            return Embeddings(np.zeros((0, dim), dtype=np.float32), "")
        return Embeddings(np.concatenate(parts), model_id)

    def close(self) -> None:
        self._channel.close()
