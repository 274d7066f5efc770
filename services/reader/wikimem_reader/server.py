"""Wiring of the reader service: `build(config) -> (register, close)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from wikimem.v1 import reader_pb2, reader_pb2_grpc

from .config import ExtractiveConfig, ReaderConfig
from .extractive import ExtractiveReader
from .service import Reader
from .servicer import ReaderServicer

SERVICE_NAME = reader_pb2.DESCRIPTOR.services_by_name["Reader"].full_name


def registrar(core: Reader) -> Callable[[grpc.Server], Sequence[str]]:
    def register(server: grpc.Server) -> Sequence[str]:
        reader_pb2_grpc.add_ReaderServicer_to_server(ReaderServicer(core), server)
        return [SERVICE_NAME]

    return register


def create(config: ReaderConfig | None = None, extractive: ExtractiveConfig | None = None) -> Reader:
    """The reader with its backends (today: extractive)."""
    backend = ExtractiveReader(extractive or ExtractiveConfig.from_env())
    return Reader(config or ReaderConfig.from_env(), {backend.name: backend})


def build(
    config: ReaderConfig | None = None,
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    core = create(config)
    return registrar(core), core.close
