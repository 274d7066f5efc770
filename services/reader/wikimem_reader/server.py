"""Wiring of the reader service: `build(config) -> (register, close)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from wikimem_common.config import ConfigError
from wikimem_common.errors import ServiceError
from wikimem_contract.v1 import reader_pb2, reader_pb2_grpc

from .backend import ReaderBackend
from .config import ExtractiveConfig, LocalLlmConfig, OpenAIConfig, ReaderConfig
from .extractive import ExtractiveReader
from .local_llm import LocalLlmReader
from .openai_chat import OpenAIChatReader
from .service import Reader
from .servicer import ReaderServicer

SERVICE_NAME = reader_pb2.DESCRIPTOR.services_by_name["Reader"].full_name


def registrar(core: Reader) -> Callable[[grpc.Server], Sequence[str]]:
    def register(server: grpc.Server) -> Sequence[str]:
        reader_pb2_grpc.add_ReaderServicer_to_server(ReaderServicer(core), server)
        return [SERVICE_NAME]

    return register


def create(
    config: ReaderConfig | None = None,
    extractive: ExtractiveConfig | None = None,
    local_llm: LocalLlmConfig | None = None,
    openai: OpenAIConfig | None = None,
) -> Reader:
    """The reader with its backends: extractive, local-llm and openai (the generative ones are cheap until used;
    the configured default is loaded at once, so a missing model fails the start, not the first request)."""
    config = config or ReaderConfig.from_env()
    backends: list[ReaderBackend] = [
        ExtractiveReader(extractive or ExtractiveConfig.from_env()),
        LocalLlmReader(local_llm or LocalLlmConfig.from_env()),
        OpenAIChatReader(openai or OpenAIConfig.from_env()),
    ]
    reader = Reader(config, {backend.name: backend for backend in backends})
    default = reader.backends[config.default_backend]
    try:
        if isinstance(default, LocalLlmReader):
            default.load()
        elif isinstance(default, OpenAIChatReader):
            default.resolve_model()
    except ServiceError as exc:
        reader.close()
        raise ConfigError(f"WIKIMEM_READER_BACKEND={config.default_backend}: {exc.message}") from None
    return reader


def build(
    config: ReaderConfig | None = None,
) -> tuple[Callable[[grpc.Server], Sequence[str]], Callable[[], None]]:
    core = create(config)
    return registrar(core), core.close
