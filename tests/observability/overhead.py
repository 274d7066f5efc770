"""Overhead of metrics + tracing per Ask: two in-process stacks on the sample wiki, one bare (no metrics interceptor,
no tracing, no access log), one observed (metrics, access log, tracing exported over OTLP/gRPC to a local receiver),
asked the same questions alternately; prints p50/p90 of each and the difference.

    .venv/bin/python -m tests.observability.overhead [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from wikimem import WikimemClient
from wikimem_common import logs, metrics, tracing

from ..e2e.system import System, start_system
from .test_stack import Collector

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wiki"
QUESTIONS = [
    "How many days of paid vacation do full-time employees get?",
    "How many vacation days can be carried over?",
    "Who approves vacation requests?",
    "Who approves expense reports?",
    "How do I connect to the VPN?",
    "What do I do when I find a security incident?",
    "Which offices do we have?",
    "How do I book travel?",
    "Who is on call at night?",
    "What do I need to set up my laptop?",
]


class Bare(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: Any) -> Any:
        return continuation(details)


def ingest(system: System) -> None:
    with WikimemClient(system.address, timeout=120) as client:
        for path in sorted(EXAMPLES.rglob("*.md")):
            client.put_document(path.relative_to(EXAMPLES).as_posix(), path.read_text(encoding="utf-8"))


def per_call(calls: int = 1500) -> None:
    """The cost of one gRPC hop on a trivial method: bare; with metrics (interceptor, stage times, access log);
    with metrics and tracing (client and server spans, exported over OTLP)."""
    from wikimem_common.server import channel, start
    from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc

    from .test_metrics import FakeEmbedder

    def register(srv: grpc.Server) -> list[str]:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedder(), srv)
        return ["wikimem.v1.Embedder"]

    real_metrics, real_provider = metrics.ServerMetrics, tracing.provider()
    handles, stubs = [], {}
    for name in ("bare", "metrics", "observed"):
        metrics.ServerMetrics = Bare if name == "bare" else real_metrics  # type: ignore[misc]
        tracing._provider = real_provider if name == "observed" else None
        handle = start(register, "127.0.0.1:0")
        handles.append(handle)
        stubs[name] = embedder_pb2_grpc.EmbedderStub(channel(handle.address))
    metrics.ServerMetrics, tracing._provider = real_metrics, real_provider  # type: ignore[misc]
    request = embedder_pb2.EmbedRequest(texts=["a"])
    times: dict[str, list[float]] = {name: [] for name in stubs}
    names = list(stubs)
    for i in range(calls):
        for name in names[i % 3 :] + names[: i % 3]:
            t0 = time.perf_counter()
            stubs[name].Embed(request)
            times[name].append((time.perf_counter() - t0) * 1e6)
    bare = statistics.median(times["bare"])
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"one hop, {name:9s} p50={p50:.0f} us ({p50 - bare:+.0f} us)")
    for handle in handles:
        handle.stop(0)


def main(rounds: int) -> None:
    logs.setup("overhead")  # JSON lines on stderr, as in the services (send stderr to /dev/null)
    os.environ.pop("WIKIMEM_TRACING", None)
    receiver = Collector()
    collector = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, collector)
    port = collector.add_insecure_port("127.0.0.1:0")
    collector.start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"

    real = metrics.ServerMetrics
    metrics.ServerMetrics = Bare  # type: ignore[misc]
    bare = start_system(Path(tempfile.mkdtemp(prefix="wikimem-bare-")))
    metrics.ServerMetrics = real  # type: ignore[misc]
    os.environ["WIKIMEM_TRACING"] = "otlp"
    tracing.configure_from_env("overhead")
    observed = start_system(Path(tempfile.mkdtemp(prefix="wikimem-observed-")))
    try:
        ingest(bare)
        ingest(observed)
        times: dict[str, list[float]] = {"bare": [], "observed": []}
        clients = {
            "bare": WikimemClient(bare.address, timeout=120),
            "observed": WikimemClient(observed.address, timeout=120),
        }
        for name in clients:  # warm up: every question once (fills the embedding caches alike)
            for q in QUESTIONS:
                clients[name].ask(q, no_cache=True)
        provider = tracing.provider()
        if provider is not None:
            provider.force_flush()
        with receiver.lock:
            receiver.spans.clear()
        for r in range(rounds):
            order = ["bare", "observed"] if r % 2 == 0 else ["observed", "bare"]
            for q in QUESTIONS:
                for name in order:
                    t0 = time.perf_counter()
                    clients[name].ask(q, no_cache=True)
                    times[name].append((time.perf_counter() - t0) * 1000.0)
        for client in clients.values():
            client.close()
        provider = tracing.provider()
        if provider is not None:
            provider.force_flush()
        asked_spans = len(receiver.spans)
        result = {}
        for name, values in times.items():
            values.sort()
            result[name] = (statistics.median(values), values[int(0.9 * (len(values) - 1))])
            print(f"{name:9s} n={len(values)} p50={result[name][0]:.1f} ms p90={result[name][1]:.1f} ms")
        diff = result["observed"][0] - result["bare"][0]
        print(f"overhead p50: {diff:+.2f} ms ({100.0 * diff / result['bare'][0]:+.1f} %)")
        print(f"spans exported: {asked_spans} ({asked_spans / len(times['observed']):.1f} per Ask)")
        per_call()
        tracing.shutdown()
    finally:
        bare.close()
        observed.close()
        collector.stop(0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
