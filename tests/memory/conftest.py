"""Fixtures of the memory tests: storage backends, a real embedder service, memory servers in-process."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from wikimem_common import server as wserver
from wikimem_contract.v1 import memory_pb2_grpc
from wikimem_memory.config import MemoryConfig
from wikimem_memory.server import open_service, registrar
from wikimem_memory.service import MemoryService
from wikimem_memory.store import Backend, open_backend

BACKENDS = ["edge", "qdrant"]


def memory_config(kind: str, data_root: Path, embedder_addr: str = "127.0.0.1:1") -> MemoryConfig:
    return MemoryConfig(
        data_dir=data_root / "memory",
        backend=kind,
        qdrant_url=":memory:" if kind == "qdrant" else None,
        embedder_addr=embedder_addr,
        embed_timeout_s=20.0,
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = open_backend(memory_config(request.param, tmp_path), optimize_in_background=False)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def embedder_addr() -> Iterator[str]:
    """The real embedder service (all-MiniLM-L6-v2 int8 ONNX), in-process."""
    from wikimem_embedder.server import build

    register, close = build()
    handle = wserver.start(register, "127.0.0.1:0")
    yield handle.address
    handle.stop(grace=0)
    close()


@dataclasses.dataclass
class RunningMemory:
    core: MemoryService
    handle: wserver.ServerHandle
    channel: grpc.Channel
    stub: memory_pb2_grpc.MemoryStub
    stopped: bool = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.channel.close()
        self.handle.stop(grace=0)
        self.core.close()


def start_memory(config: MemoryConfig) -> RunningMemory:
    core = open_service(config, optimize_in_background=False)
    handle = wserver.start(registrar(core), "127.0.0.1:0")
    channel = wserver.channel(handle.address)
    return RunningMemory(core, handle, channel, memory_pb2_grpc.MemoryStub(channel))


@pytest.fixture
def memory_factory(tmp_path: Path, embedder_addr: str) -> Iterator[Callable[..., RunningMemory]]:
    started: list[RunningMemory] = []

    def factory(kind: str = "edge", address: str | None = None) -> RunningMemory:
        running = start_memory(memory_config(kind, tmp_path, address or embedder_addr))
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture(params=BACKENDS)
def memory(request: pytest.FixtureRequest, memory_factory: Callable[..., RunningMemory]) -> RunningMemory:
    return memory_factory(request.param)
