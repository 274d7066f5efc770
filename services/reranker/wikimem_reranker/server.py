"""Wiring of the reranker service: `build(config) -> (register, close)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from wikimem_contract.v1 import reranker_pb2, reranker_pb2_grpc

from .config import RerankerConfig
from .service import Reranker
from .servicer import RerankerServicer

SERVICE_NAME = reranker_pb2.DESCRIPTOR.services_by_name["Reranker"].full_name


def registrar(core: Reranker) -> Callable[[grpc.Server], Sequence[str]]:
    def register(server: grpc.Server) -> Sequence[str]:
        reranker_pb2_grpc.add_RerankerServicer_to_server(RerankerServicer(core), server)
        return [SERVICE_NAME]

    return register


def build(
    config: RerankerConfig | None = None,
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    core = Reranker(config or RerankerConfig.from_env())
    return registrar(core), core.close
