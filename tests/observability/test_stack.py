"""The five real services as separate processes (`wikimem serve`'s ProcessStack) with metrics on port 0 and OTLP
tracing to a collector run by the test: after an Ask, each service's /metrics shows its calls, batches, caches and
size, and the collector holds the Ask's spans from all five processes under one trace id."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from wikimem import WikimemClient
from wikimem_launcher.launcher import SERVICES, ProcessStack

from .scrape import Samples, scrape

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "wiki"
HANDLED = "wikimem_grpc_server_handled_total"

pytestmark = pytest.mark.slow


@dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str


@dataclass
class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: what an OpenTelemetry Collector would get."""

    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for s in scope.spans:
                        self.spans.append(
                            Span(
                                attrs.get("service.name", ""),
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                s.name,
                            )
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace_of(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[str, Collector]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", receiver
    server.stop(0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: tuple[str, Collector]) -> Iterator[ProcessStack]:
    root = tmp_path_factory.mktemp("wikimem-observed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIKIMEM_", "OTEL_", "REDIS_"))}
    env.update(
        WIKIMEM_METRICS_ADDR="127.0.0.1:0",
        WIKIMEM_TRACING="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{collector[0]}",
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans reach the collector quickly
    )
    running = ProcessStack(address="127.0.0.1:0", data_dir=root / "data", log_dir=root / "logs", env=env)
    running.start()
    try:
        with WikimemClient(running.public_address, timeout=120) as client:
            for path in sorted(EXAMPLES.rglob("*.md")):
                client.put_document(path.relative_to(EXAMPLES).as_posix(), path.read_text(encoding="utf-8"))
        yield running
    finally:
        running.stop()


def metrics_addresses(stack: ProcessStack) -> dict[str, str]:
    return {name: Path(str(stack.children[name].port_file) + ".metrics").read_text() for name in SERVICES}


def scrape_all(stack: ProcessStack) -> dict[str, Samples]:
    return {name: scrape(address) for name, address in metrics_addresses(stack).items()}


def moved(before: dict[str, Samples], after: dict[str, Samples], service: str, name: str, **labels: str) -> float:
    return after[service].value(name, **labels) - before[service].value(name, **labels)


def test_each_service_has_its_own_metrics_port(stack: ProcessStack) -> None:
    addresses = metrics_addresses(stack)
    assert len(set(addresses.values())) == len(SERVICES)
    for name in SERVICES:
        log = stack.children[name].log_path.read_text()
        assert f'"metrics_address": "{addresses[name]}"' in log


def test_metrics_move_after_an_ask(stack: ProcessStack) -> None:
    before = scrape_all(stack)
    with WikimemClient(stack.public_address, timeout=120) as client:
        first = client.ask("How many vacation days can be carried over into the next year?")
        second = client.ask("How many vacation days can be carried over into the next year?")
    assert not first.cached and second.cached
    after = scrape_all(stack)

    def calls(service: str, grpc_service: str, method: str) -> float:
        return moved(before, after, service, HANDLED, grpc_service=grpc_service, grpc_method=method, grpc_code="OK")

    assert calls("orchestrator", "wikimem.v1.Rag", "Ask") == 2
    assert calls("embedder", "wikimem.v1.Embedder", "Embed") >= 1
    assert calls("memory", "wikimem.v1.Memory", "Search") >= 1
    assert calls("reranker", "wikimem.v1.Reranker", "Rerank") == 1  # the second Ask came from the cache
    assert calls("reader", "wikimem.v1.Reader", "Read") == 1

    # latency histograms and per-stage times
    ask = {"grpc_service": "wikimem.v1.Rag", "grpc_method": "Ask", "grpc_code": "OK"}
    assert moved(before, after, "orchestrator", "wikimem_grpc_server_handling_seconds_count", **ask) == 2
    assert moved(before, after, "orchestrator", "wikimem_grpc_server_handling_seconds_bucket", le="+Inf", **ask) == 2
    stages = after["orchestrator"].labels("wikimem_stage_seconds_count", "stage")
    assert {"cache", "embed", "search", "rerank", "read", "total"} <= stages
    assert moved(before, after, "orchestrator", "wikimem_stage_seconds_count", grpc_method="Ask", stage="rerank") == 2

    # the answer cache: a miss, then a hit; the QA memory was looked up on the miss
    assert moved(before, after, "orchestrator", "wikimem_cache_lookups_total", cache="answer", result="miss") == 1
    assert moved(before, after, "orchestrator", "wikimem_cache_lookups_total", cache="answer", result="hit") == 1
    assert moved(before, after, "orchestrator", "wikimem_cache_lookups_total", cache="qa_memory") == 1

    # the model services' batchers
    for service in ("embedder", "reranker", "reader"):
        batcher = f"{service}-batcher"
        assert moved(before, after, service, "wikimem_batch_size_items_count", batcher=batcher) >= 1
        assert after[service].value("wikimem_batch_queue_items", batcher=batcher) == 0
        assert after[service].has("wikimem_batch_run_seconds_bucket")

    # the memory's size
    memory = after["memory"]
    assert memory.value("wikimem_memory_documents") == len(list(EXAMPLES.rglob("*.md")))
    assert memory.value("wikimem_memory_chunks") >= memory.value("wikimem_memory_documents")
    assert memory.value("wikimem_memory_generation") >= 1
    # writes: latency by method from the request histogram
    upserts = {"grpc_service": "wikimem.v1.Memory", "grpc_method": "Upsert", "grpc_code": "OK"}
    assert memory.value("wikimem_grpc_server_handling_seconds_count", **upserts) >= memory.value(
        "wikimem_memory_documents"
    )


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)


def test_one_ask_is_one_trace_across_the_five_processes(stack: ProcessStack, collector: tuple[str, Collector]) -> None:
    _, receiver = collector
    question = "Who approves vacation requests?"
    with WikimemClient(stack.public_address, timeout=120) as client:
        client.ask(question, no_cache=True)
    log = stack.children["orchestrator"].log_path
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    asks = [line for line in lines if line.get("rpc") == "wikimem.v1.Rag/Ask"]
    trace_id = asks[-1]["trace_id"]  # this Ask's line (the last one) carries its trace id
    expected = {
        ("wikimem-orchestrator", "/wikimem.v1.Rag/Ask"),
        ("wikimem-embedder", "/wikimem.v1.Embedder/Embed"),
        ("wikimem-memory", "/wikimem.v1.Memory/Search"),
        ("wikimem-reranker", "/wikimem.v1.Reranker/Rerank"),
        ("wikimem-reader", "/wikimem.v1.Reader/Read"),
    }
    _wait_for(lambda: expected <= {(s.service, s.name) for s in receiver.trace_of(trace_id)})
    spans = receiver.trace_of(trace_id)
    assert expected <= {(s.service, s.name) for s in spans}, spans
    # the peers' server spans are children of the orchestrator's client spans
    ids = {s.span_id: s for s in spans}
    for s in spans:
        if s.service != "wikimem-orchestrator":
            assert ids[s.parent_id].service == "wikimem-orchestrator"
    # and each peer's own access log line carries the same trace id
    for name, rpc in (("memory", "wikimem.v1.Memory/Search"), ("reader", "wikimem.v1.Reader/Read")):
        peer_lines = [
            json.loads(x) for x in stack.children[name].log_path.read_text().splitlines() if x.startswith("{")
        ]
        assert any(x.get("rpc") == rpc and x.get("trace_id") == trace_id for x in peer_lines)
