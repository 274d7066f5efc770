"""Fixtures of the LLM tests: the pinned 0.5B GGUF in-process (local-llm) and behind llama_cpp.server (openai)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wikimem_reader.config import LocalLlmConfig, OpenAIConfig
from wikimem_reader.local_llm import LocalLlmReader
from wikimem_reader.openai_chat import OpenAIChatReader

from .llm_support import MODEL, LlamaServer, gguf_path, skip_reason


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = skip_reason()
    for item in items:
        if item.get_closest_marker("llm") is not None and reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(gguf_path(), tmp_path_factory.mktemp("llama-server") / "server.log")
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_llm() -> Iterator[LocalLlmReader]:
    reader = LocalLlmReader(LocalLlmConfig(model=MODEL))
    reader.load()
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def openai_reader(llama_server: LlamaServer) -> OpenAIChatReader:
    return OpenAIChatReader(OpenAIConfig(base_url=llama_server.base_url))
