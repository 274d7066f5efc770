"""Admission control on a real gRPC server: bounded in-flight calls and queue, RESOURCE_EXHAUSTED with a retry hint
when full, queued calls bounded by their deadline, calls refused early when their deadline cannot be met; health
is never queued; writes have a lane of their own (admitted while Asks fill the service, bounded apart); the
per-caller token bucket."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem_common.admission import LANE_METHODS, Admission, AdmissionConfig, Lane, RateLimiter, parse_rate
from wikimem_common.config import ConfigError
from wikimem_common.server import ServerHandle, start
from wikimem_contract import metadata
from wikimem_contract.v1 import rag_pb2, rag_pb2_grpc


class Gate(rag_pb2_grpc.RagServicer):
    """Ask blocks until released (or sleeps `question` seconds when it parses as a number)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release_writes = threading.Event()
        self.started: list[str] = []
        self.lock = threading.Lock()

    def Ask(self, request: rag_pb2.AskRequest, context: grpc.ServicerContext) -> rag_pb2.AskResponse:
        with self.lock:
            self.started.append(request.question)
        try:
            time.sleep(float(request.question))
        except ValueError:
            self.release.wait(30)
        return rag_pb2.AskResponse(answer="ok " + request.question)

    def PutDocument(
        self, request: rag_pb2.PutDocumentRequest, context: grpc.ServicerContext
    ) -> rag_pb2.PutDocumentResponse:
        """Blocks until `release_writes` for doc ids starting with "blocked"."""
        with self.lock:
            self.started.append("put " + request.doc_id)
        if request.doc_id.startswith("blocked"):
            self.release_writes.wait(30)
        return rag_pb2.PutDocumentResponse(changed=True)


@pytest.fixture
def gated() -> Iterator[tuple[Gate, ServerHandle, rag_pb2_grpc.RagStub]]:
    gate = Gate()

    def register(server: grpc.Server) -> list[str]:
        rag_pb2_grpc.add_RagServicer_to_server(gate, server)
        return ["wikimem.v1.Rag"]

    writes = Lane("writes", 1, 1, LANE_METHODS["orchestrator"]["writes"])
    handle = start(register, "127.0.0.1:0", admission=Admission(AdmissionConfig("orchestrator", 1, 1, (writes,))))
    channel = grpc.insecure_channel(handle.address)
    try:
        yield gate, handle, rag_pb2_grpc.RagStub(channel)
    finally:
        gate.release.set()
        channel.close()
        handle.stop(grace=0)


def _ask(stub: rag_pb2_grpc.RagStub, question: str, timeout: float = 20.0) -> str:
    return str(stub.Ask(rag_pb2.AskRequest(question=question), timeout=timeout).answer)


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_full_queue_is_refused_at_once_with_a_retry_hint(
    gated: tuple[Gate, ServerHandle, rag_pb2_grpc.RagStub],
) -> None:
    gate, handle, stub = gated
    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(_ask, stub, "first")
        _wait(lambda: gate.started == ["first"])
        queued = pool.submit(_ask, stub, "second")
        time.sleep(0.3)
        assert gate.started == ["first"]  # one in flight: the second waits
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            _ask(stub, "third")
        assert time.monotonic() - started < 1.0  # refused at once, not after waiting
        err = refused.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at capacity (1 calls running, 1 queued" in (err.details() or "")
        hint = int(dict(err.trailing_metadata() or ())[metadata.RETRY_AFTER_MS])
        assert 50 <= hint <= 10_000
        # health is answered while the service is full
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(handle.address))
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
        gate.release.set()
        assert running.result(10) == "ok first" and queued.result(10) == "ok second"
    assert gate.started == ["first", "second"]  # the refused call never reached the servicer


def _put(stub: rag_pb2_grpc.RagStub, doc_id: str, timeout: float = 20.0) -> bool:
    return bool(stub.PutDocument(rag_pb2.PutDocumentRequest(doc_id=doc_id, text="x"), timeout=timeout).changed)


def test_writes_have_a_lane_of_their_own(gated: tuple[Gate, ServerHandle, rag_pb2_grpc.RagStub]) -> None:
    gate, _, stub = gated
    with ThreadPoolExecutor(6) as pool:
        running = pool.submit(_ask, stub, "first")
        _wait(lambda: gate.started == ["first"])
        queued = pool.submit(_ask, stub, "second")
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as shed:
            _ask(stub, "third")
        assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # the Asks' lane is full ...
        started = time.monotonic()
        assert _put(stub, "a.md", timeout=2.0)  # ... and an edit goes through at once, not behind the Asks
        assert time.monotonic() - started < 1.0
        # the write lane is bounded too, apart: 1 running, 1 queued, then refused with its own settings named
        blocked = pool.submit(_put, stub, "blocked-1.md")
        _wait(lambda: "put blocked-1.md" in gate.started)
        waiting = pool.submit(_put, stub, "blocked-2.md")
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as full:
            _put(stub, "b.md")
        err = full.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "orchestrator (writes) is at capacity (1 calls running, 1 queued" in (err.details() or "")
        assert "WIKIMEM_MAX_INFLIGHT_WRITES" in (err.details() or "")
        assert metadata.RETRY_AFTER_MS in dict(err.trailing_metadata() or ())
        gate.release_writes.set()
        assert blocked.result(10) and waiting.result(10)
        gate.release.set()
        assert running.result(10) == "ok first" and queued.result(10) == "ok second"
    assert "put b.md" not in gate.started and "third" not in gate.started  # refused calls never ran


def test_queued_call_waits_no_longer_than_its_deadline(
    gated: tuple[Gate, ServerHandle, rag_pb2_grpc.RagStub],
) -> None:
    gate, _, stub = gated
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_ask, stub, "first")
        _wait(lambda: gate.started == ["first"])
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            _ask(stub, "second", timeout=0.5)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2.0
        gate.release.set()
        assert running.result(10) == "ok first"
    assert gate.started == ["first"]  # the queued call gave up without running


def test_call_whose_deadline_is_shorter_than_the_method_takes_is_refused_early(
    gated: tuple[Gate, ServerHandle, rag_pb2_grpc.RagStub],
) -> None:
    gate, _, stub = gated
    for _ in range(8):  # learn that Ask takes ~0.3 s
        assert _ask(stub, "0.3") == "ok 0.3"
    with pytest.raises(grpc.RpcError) as refused:
        _ask(stub, "0.3", timeout=0.1)
    assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "it takes at least 0.3" in (refused.value.details() or "")
    assert len(gate.started) == 8  # refused before any work
    assert _ask(stub, "0.3", timeout=5) == "ok 0.3"  # a deadline that fits runs


def test_overloaded_service_refuses_calls_that_would_miss_their_deadline(
    gated: tuple[Gate, ServerHandle, rag_pb2_grpc.RagStub],
) -> None:
    gate, _, stub = gated
    for seconds in ("0.1",) * 4 + ("0.6",) * 4:  # Ask took 0.1 s at best, ~0.4 s lately
        _ask(stub, seconds)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_ask, stub, "busy")
        _wait(lambda: gate.started[-1] == "busy")
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            _ask(stub, "0.05", timeout=0.35)  # could run alone in time, but not behind the running call
        assert time.monotonic() - started < 0.2
        err = refused.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "is overloaded" in (err.details() or "")
        assert metadata.RETRY_AFTER_MS in dict(err.trailing_metadata() or ())
        gate.release.set()
        assert running.result(10) == "ok busy"
    assert _ask(stub, "0.05", timeout=0.35) == "ok 0.05"  # idle again: admitted
    assert gate.started.count("0.05") == 1


def test_admission_settings_from_the_environment() -> None:
    assert AdmissionConfig.from_env("orchestrator", {}).max_inflight >= 1
    config = AdmissionConfig.from_env(
        "reranker", {"WIKIMEM_MAX_INFLIGHT": "3", "WIKIMEM_RERANKER_MAX_QUEUE": "7", "WIKIMEM_MAX_QUEUE": "99"}
    )
    assert (config.max_inflight, config.max_queue) == (3, 7)
    assert config.workers(16) == 16 and config.workers(4) == 14  # every admitted and queued call has a thread
    assert not AdmissionConfig.from_env("memory", {"WIKIMEM_MAX_INFLIGHT": "0"}).enabled
    with pytest.raises(ConfigError, match="WIKIMEM_MAX_QUEUE"):
        AdmissionConfig.from_env("memory", {"WIKIMEM_MAX_QUEUE": "-1"})
    with pytest.raises(ConfigError, match="not an integer"):
        AdmissionConfig.from_env("memory", {"WIKIMEM_MAX_INFLIGHT": "many"})


def test_lane_settings_from_the_environment() -> None:
    lanes = {lane.name: lane for lane in AdmissionConfig.from_env("orchestrator", {}).lanes}
    assert set(lanes) == {"writes", "reads"}
    assert "/wikimem.v1.Rag/PutDocument" in lanes["writes"].methods
    assert "/wikimem.v1.Rag/Ask" not in lanes["writes"].methods | lanes["reads"].methods
    config = AdmissionConfig.from_env(
        "orchestrator",
        {
            "WIKIMEM_MAX_INFLIGHT_WRITES": "3",
            "WIKIMEM_ORCHESTRATOR_MAX_QUEUE_WRITES": "5",
            "WIKIMEM_MAX_QUEUE_WRITES": "99",
            "WIKIMEM_MAX_INFLIGHT_READS": "0",  # cheap reads share the main lane
            "WIKIMEM_MAX_INFLIGHT": "4",
            "WIKIMEM_MAX_QUEUE": "4",
        },
    )
    assert [(lane.name, lane.max_inflight, lane.max_queue) for lane in config.lanes] == [("writes", 3, 5)]
    assert config.workers(1) == 4 + 4 + 3 + 5 + 4  # every lane's admitted and queued calls have a thread
    admission = Admission(config)
    assert admission.limiter_for("/wikimem.v1.Rag/DeleteDocument") is admission.lanes["writes"]
    assert admission.limiter_for("/wikimem.v1.Rag/GetSource") is admission.limiter
    assert AdmissionConfig.from_env("reranker", {}).lanes == ()  # only its main lane
    with pytest.raises(ConfigError, match="WIKIMEM_MAX_INFLIGHT_WRITES / WIKIMEM_MAX_QUEUE_WRITES"):
        AdmissionConfig.from_env("memory", {"WIKIMEM_MEMORY_MAX_QUEUE_WRITES": "-2"})


def test_token_bucket_per_caller() -> None:
    assert parse_rate("10/min", "X") == pytest.approx(10 / 60)
    assert parse_rate("2/s", "X") == 2.0 and parse_rate("0", "X") == 0.0 and parse_rate("30", "X") == 0.5
    with pytest.raises(ConfigError, match="not a rate"):
        parse_rate("fast", "WIKIMEM_LLM_RATE")
    bucket = RateLimiter(rate=1.0, burst=2, name="test")
    assert bucket.take("a", now=0.0) == 0.0 and bucket.take("a", now=0.0) == 0.0
    assert bucket.take("a", now=0.0) == pytest.approx(1.0)  # empty: one token a second
    assert bucket.take("b", now=0.0) == 0.0  # another caller, its own bucket
    assert bucket.take("a", now=0.5) == pytest.approx(0.5)
    assert bucket.take("a", now=1.0) == 0.0
    assert RateLimiter(rate=0.0, burst=1, name="off").take("a") == 0.0
