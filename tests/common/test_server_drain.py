"""SIGTERM drains: in-flight calls finish (up to WIKIMEM_DRAIN_GRACE_S), new ones are refused with UNAVAILABLE,
health says NOT_SERVING meanwhile; past the grace, what is left is cancelled and the process still exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

# A service run exactly as the real ones are (`wikimem_common.server.run`), whose Ask takes ASK_S seconds.
SLOW_RAG = """
import os, sys, time
from wikimem_common.server import run
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc

ASK_S = float(os.environ["ASK_S"])

class Slow(rag_pb2_grpc.RagServicer):
    def Ask(self, request, context):
        print("ask started", request.question, flush=True)
        time.sleep(ASK_S)
        return rag_pb2.AskResponse(answer="done " + request.question)

def build():
    def register(server):
        rag_pb2_grpc.add_RagServicer_to_server(Slow(), server)
        return ["wikimem.v1.Rag"]
    return register, lambda: print("closed", flush=True)

run("orchestrator", build, sys.argv[1:])
"""


class SlowServer:
    def __init__(self, tmp_path: Path, ask_s: float, grace_s: float | None) -> None:
        script = tmp_path / "slow_rag.py"
        script.write_text(SLOW_RAG)
        port_file = tmp_path / "port"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIKIMEM_")}
        env.update(ASK_S=str(ask_s), WIKIMEM_LOG_FORMAT="text")
        if grace_s is not None:
            env["WIKIMEM_DRAIN_GRACE_S"] = str(grace_s)
        self.log = tmp_path / "server.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), "--addr", "127.0.0.1:0", "--port-file", str(port_file)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        self.address = port_file.read_text().strip()
        self.channel = grpc.insecure_channel(self.address)
        self.rag = rag_pb2_grpc.RagStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def ask(self, question: str) -> str:
        return str(self.rag.Ask(rag_pb2.AskRequest(question=question), timeout=60).answer)

    def wait_started(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while self.log.read_text().count("ask started") < count:
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.02)

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture()
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def test_sigterm_lets_in_flight_asks_finish(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    # Asks longer than the old fixed 5 s grace; the default drain grace (30 s) covers them
    server = SlowServer(tmp_path, ask_s=6.0, grace_s=None)
    try:
        assert server.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        # an open health Watch (what a load balancer keeps) must neither hold the drain up nor miss the change
        watch = server.health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        asks: list[Future[str]] = [pool.submit(server.ask, f"q{i}") for i in range(4)]
        server.wait_started(4)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # draining: still answers health (NOT_SERVING), refuses new calls, and has not exited
        status = server.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            server.ask("late")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "draining" in (refused.value.details() or "")
        assert server.proc.poll() is None
        # every in-flight Ask completes with its answer
        assert sorted(f.result(timeout=30) for f in asks) == [f"done q{i}" for i in range(4)]
        assert server.proc.wait(timeout=15) == 0
        assert time.monotonic() - sent < 12
        log = server.log.read_text()
        assert "drained" in log and "closed" in log
        assert "ask started late" not in log  # the refused call never reached the servicer
    finally:
        server.close()


def test_grace_bounds_the_drain(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = SlowServer(tmp_path, ask_s=30.0, grace_s=1.0)
    try:
        slow = pool.submit(server.ask, "forever")
        server.wait_started(1)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as cancelled:
            slow.result(timeout=20)
        assert cancelled.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert server.proc.wait(timeout=20) == 0
        assert time.monotonic() - sent < 10  # the grace (1 s), not the 30 s call
        assert "drain grace expired" in server.log.read_text()
    finally:
        server.close()


def test_drain_waits_for_the_call_in_flight_and_refuses_new_ones() -> None:
    from wikimem_common.drain import Drain

    drain = Drain()
    assert drain.wait_idle(0)
    entered = threading.Event()
    release = threading.Event()

    class _Ctx:
        def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(code, details)

    def behavior(_request: object, _context: object) -> str:
        entered.set()
        release.wait(5)
        return "ok"

    call = drain._unary(behavior)
    worker = threading.Thread(target=call, args=(None, _Ctx()))
    worker.start()
    entered.wait(5)
    drain.start()
    assert drain.in_flight == 1 and not drain.wait_idle(0.1)
    with pytest.raises(RuntimeError, match="draining"):
        call(None, _Ctx())
    release.set()
    assert drain.wait_idle(5)
    worker.join()
    # after the drain, the server keeps refusing until calls stop coming for a moment (bounded by the timeout)
    t0 = time.monotonic()
    drain.wait_quiet(0.2, 5)
    assert 0.2 <= time.monotonic() - t0 < 1
    with pytest.raises(RuntimeError, match="draining"):
        call(None, _Ctx())
    t0 = time.monotonic()
    drain.wait_quiet(10, 0.3)
    assert 0.3 <= time.monotonic() - t0 < 1
