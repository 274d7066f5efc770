"""Wiring of the embedder service: `build(config) -> (register, close)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc

from .config import EmbedderConfig
from .service import Embedder
from .servicer import EmbedderServicer

SERVICE_NAME = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name


def registrar(core: Embedder) -> Callable[[grpc.Server], Sequence[str]]:
    def register(server: grpc.Server) -> Sequence[str]:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(EmbedderServicer(core), server)
        return [SERVICE_NAME]

    return register


def build(
    config: EmbedderConfig | None = None,
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    core = Embedder(config or EmbedderConfig.from_env())
    return registrar(core), core.close
