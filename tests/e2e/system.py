"""All five real services started in-process on free ports, wired together as `wikimem serve` wires them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from wikimem_common.server import ServerHandle, start
from wikimem_contract.v1 import rag_pb2_grpc

SERVICES = ("embedder", "reranker", "reader", "memory", "orchestrator")


@dataclass
class System:
    handles: dict[str, ServerHandle] = field(default_factory=dict)
    channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return self.handles["orchestrator"].address

    @property
    def rag(self) -> rag_pb2_grpc.RagStub:
        assert self.channel is not None
        return rag_pb2_grpc.RagStub(self.channel)

    def stop(self, name: str) -> None:
        """Stop one service (to test how the others cope)."""
        self.handles[name].stop(grace=0)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        for name in reversed(SERVICES):
            if name in self.handles:
                self.handles[name].stop(grace=1)


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_system(data_dir: Path, redis_url: str | None = None, backend: str = "edge") -> System:
    """Start embedder, reranker, reader, memory and orchestrator with their `build()` from the environment."""
    from wikimem_embedder.server import build as build_embedder
    from wikimem_memory.server import build as build_memory
    from wikimem_orchestrator.server import build as build_orchestrator
    from wikimem_reader.server import build as build_reader
    from wikimem_reranker.server import build as build_reranker

    system = System()
    builders = {
        "embedder": build_embedder,
        "reranker": build_reranker,
        "reader": build_reader,
        "memory": build_memory,
        "orchestrator": build_orchestrator,
    }
    env: dict[str, str] = {
        "WIKIMEM_DATA": str(data_dir),
        "WIKIMEM_MEMORY_BACKEND": backend,
        "QDRANT_URL": ":memory:" if backend == "qdrant" else "",
        "REDIS_URL": redis_url or "",
    }
    try:
        for name in SERVICES:
            with _env(env):
                register, close = builders[name]()
            handle = start(register, "127.0.0.1:0")
            handle.on_stop.append(close)
            system.handles[name] = handle
            env[f"WIKIMEM_{name.upper()}_ADDR" if name != "orchestrator" else "WIKIMEM_ADDR"] = handle.address
    except BaseException:
        system.close()
        raise
    system.channel = grpc.insecure_channel(system.address)
    return system


def start_orchestrator(system: System, redis_url: str | None = None, env: dict[str, str] | None = None) -> ServerHandle:
    """One more orchestrator replica on the same embedder, memory, reranker and reader (e.g. two replicas sharing
    one Redis); `env` adds orchestrator settings. The caller stops it (`handle.stop()` runs its close too)."""
    from wikimem_orchestrator.server import build as build_orchestrator

    values = {f"WIKIMEM_{name.upper()}_ADDR": system.handles[name].address for name in SERVICES[:4]}
    values["REDIS_URL"] = redis_url or ""
    values.update(env or {})
    with _env(values):
        register, close = build_orchestrator()
    handle = start(register, "127.0.0.1:0")
    handle.on_stop.append(close)
    return handle
