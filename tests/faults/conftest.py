"""The five real services as child processes of a supervising ProcessStack (what `wikimem serve` runs: crashed
children restarted with backoff), a real Redis this module may kill, and a second orchestrator on the same peers
with WIKIMEM_ON_RERANK_OVERLOAD=degrade. Shared by the fault tests of this package (module scope: the models load
once)."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from bench.service import service_process
from bench.suites.load import EditablePage, example_pages

# tests/conftest.py by its full name: a bare `conftest` is whichever conftest pytest imported last (e.g.
# tests/orchestrator's, when both directories are collected in one run)
from tests.conftest import RedisServer, _require_redis
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc
from wikimem_launcher.launcher import SERVICES, LaunchError, ProcessStack, RestartPolicy

REPO = Path(__file__).resolve().parents[2]


def _models_missing() -> str | None:
    for name in ("embedder", "reranker", "reader"):
        if not (REPO / "models" / name).is_dir():
            return f"models/{name} is missing"
    return None


@dataclass
class Faulty:
    stack: ProcessStack
    redis: RedisServer
    #: An orchestrator on the same peers with WIKIMEM_ON_RERANK_OVERLOAD=degrade (in-process cache).
    degrade_address: str
    events: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    #: Set: the supervisor restarts nothing (a killed service stays down until it is cleared).
    paused: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return self.stack.public_address

    def pid(self, name: str) -> int:
        return int(self.stack.children[name].process.pid)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 50.0) -> float:
        """Seconds until `name` runs again under a new pid and is SERVING (the supervisor restarted it)."""
        started = time.monotonic()
        while True:
            child = self.stack.children[name]
            if child.process.pid != old_pid and child.ready:
                return time.monotonic() - started
            assert not self.errors, self.errors
            assert time.monotonic() - started < timeout, f"{name} not restarted after {timeout}s: {self.events}"
            time.sleep(0.05)

    def rag(self, address: str | None = None) -> tuple[grpc.Channel, rag_pb2_grpc.RagStub]:
        channel = grpc.insecure_channel(address or self.address)
        return channel, rag_pb2_grpc.RagStub(channel)


def put_pages(address: str, pages: list[EditablePage]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = rag_pb2_grpc.RagStub(channel)
        for page in pages:
            stub.PutDocument(rag_pb2.PutDocumentRequest(doc_id=page.doc_id, text=page.text), timeout=120)


@pytest.fixture(scope="module")
def faulty() -> Iterator[Faulty]:
    missing = _models_missing()
    if missing:
        pytest.skip(missing)
    _require_redis()
    with tempfile.TemporaryDirectory(prefix="wikimem-faults-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        redis = RedisServer(root / "redis")
        redis.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIKIMEM_")}
        env.update(REDIS_URL=redis.url, WIKIMEM_LOG_FORMAT="json")
        events: list[str] = []
        stack = ProcessStack(
            address="127.0.0.1:0",
            data_dir=root / "data",
            log_dir=root / "logs",
            env=env,
            restart=RestartPolicy(backoff_s=0.2, backoff_max_s=1.0, max_fast=10),
            on_event=events.append,
        )
        stop = threading.Event()
        paused = threading.Event()
        errors: list[BaseException] = []

        def supervise() -> None:  # what `wikimem serve` does between its start and its stop
            while not stop.wait(0.1):
                if paused.is_set():
                    continue
                try:
                    stack.supervise()
                except LaunchError as exc:
                    errors.append(exc)
                    return

        try:
            stack.start()
            supervisor = threading.Thread(target=supervise, name="supervisor", daemon=True)
            supervisor.start()
            put_pages(stack.public_address, example_pages())
            peers = {f"WIKIMEM_{n.upper()}_ADDR": stack.children[n].address for n in SERVICES if n != "orchestrator"}
            degrade_env = dict(env, REDIS_URL="", WIKIMEM_ON_RERANK_OVERLOAD="degrade", **peers)
            with service_process("orchestrator", root / "degrade", env=degrade_env, timeout=120) as degrade:
                yield Faulty(stack, redis, degrade.address, events, errors, paused)
        finally:
            stop.set()
            stack.stop()
            redis.stop()
