"""The five services composed in this process *without gRPC*: each service is built with its own `build()`, its
servicer methods are taken from the handlers `register()` would add to a server, and the orchestrator's peers are
replaced by plain calls into the other servicers. Requests and responses are still protobuf messages, but nothing
is serialised or sent over a socket — so `services − direct` is the cost of splitting the pipeline into processes
(loopback gRPC, serialisation, thread hand-offs), with the same code on both sides.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wikimem_contract.v1 import common_pb2, embedder_pb2, memory_pb2, rag_pb2, reader_pb2, reranker_pb2
from wikimem_orchestrator.pipeline import Backends

Handler = Callable[[Any, Any], Any]


class _Context:
    """The least of a grpc.ServicerContext the servicers use: no metadata, no deadline; abort raises."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return None

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")

    def set_code(self, code: Any) -> None:  # pragma: no cover - error paths only
        pass

    def set_details(self, details: str) -> None:  # pragma: no cover
        pass

    def is_active(self) -> bool:
        return True


CONTEXT = _Context()


class _CaptureServer:
    """Stands in for grpc.Server in `register(server)`: keeps the method handlers instead of serving them."""

    def __init__(self) -> None:
        self.methods: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        self.methods.update(handlers)


def _methods(register: Callable[[Any], Any]) -> dict[str, Handler]:
    server = _CaptureServer()
    register(server)
    out: dict[str, Handler] = {}
    for name, handler in server.methods.items():
        out[name] = handler.unary_unary or handler.unary_stream
    return out


class DirectBackends:
    """The orchestrator's peers as direct calls (the query path of pipeline.Backends)."""

    def __init__(self, peers: Mapping[str, dict[str, Handler]]) -> None:
        self._p = peers

    def embedder_info(self, timeout: float) -> embedder_pb2.InfoResponse:
        return self._p["embedder"]["Info"](embedder_pb2.InfoRequest(), CONTEXT)

    def embed(self, text: str, timeout: float) -> embedder_pb2.EmbedResponse:
        return self._p["embedder"]["Embed"](embedder_pb2.EmbedRequest(texts=[text]), CONTEXT)

    def embed_texts(self, texts: Sequence[str], timeout: float) -> common_pb2.Vectors:
        response = self._p["embedder"]["Embed"](embedder_pb2.EmbedRequest(texts=list(texts)), CONTEXT)
        return response.vectors

    def search(self, request: memory_pb2.SearchRequest, timeout: float) -> memory_pb2.SearchResponse:
        return self._p["memory"]["Search"](request, CONTEXT)

    def generation(self, timeout: float) -> int:
        return int(self._p["memory"]["Stats"](memory_pb2.StatsRequest(), CONTEXT).generation)

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse:
        return self._p["memory"]["Get"](request, CONTEXT)

    def rerank(self, request: reranker_pb2.RerankRequest, timeout: float) -> reranker_pb2.RerankResponse:
        return self._p["reranker"]["Rerank"](request, CONTEXT)

    def read(self, request: reader_pb2.ReadRequest, timeout: float) -> reader_pb2.ReadResponse:
        return self._p["reader"]["Read"](request, CONTEXT)

    def read_stream(
        self, request: reader_pb2.ReadStreamRequest, timeout: float
    ) -> Iterator[reader_pb2.ReadStreamResponse]:
        return iter(self._p["reader"]["ReadStream"](request, CONTEXT))

    def close(self) -> None:
        pass


def _is_backends(backends: DirectBackends) -> Backends:
    """mypy checks here that DirectBackends still has every method of pipeline.Backends."""
    return backends


@dataclass
class DirectStack:
    """Build with `start()` on an existing data directory (the memory's data must already be there)."""

    data_dir: Path
    methods: dict[str, dict[str, Handler]] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        from wikimem_embedder.server import build as build_embedder
        from wikimem_memory.server import build as build_memory
        from wikimem_orchestrator import server as orchestrator_server
        from wikimem_reader.server import build as build_reader
        from wikimem_reranker.server import build as build_reranker

        saved = os.environ.get("WIKIMEM_DATA")
        os.environ["WIKIMEM_DATA"] = str(self.data_dir)
        try:
            for name, build in (
                ("embedder", build_embedder),
                ("reranker", build_reranker),
                ("reader", build_reader),
                ("memory", build_memory),
            ):
                register, close = build()
                self._closers.append(close)
                self.methods[name] = _methods(register)
            peers = dict(self.methods)
            original = orchestrator_server.GrpcBackends
            orchestrator_server.GrpcBackends = lambda _cfg: DirectBackends(peers)  # type: ignore[assignment,misc]
            try:
                register, close = orchestrator_server.build()
            finally:
                orchestrator_server.GrpcBackends = original  # type: ignore[misc]
            self._closers.append(close)
            self.methods["orchestrator"] = _methods(register)
        except BaseException:
            self.stop()
            raise
        finally:
            if saved is None:
                os.environ.pop("WIKIMEM_DATA", None)
            else:
                os.environ["WIKIMEM_DATA"] = saved

    def ask(self, question: str, no_cache: bool) -> rag_pb2.AskResponse:
        request = rag_pb2.AskRequest(question=question, options=rag_pb2.AskOptions(no_cache=no_cache))
        response: rag_pb2.AskResponse = self.methods["orchestrator"]["Ask"](request, CONTEXT)
        return response

    def stop(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers.clear()
