"""Metrics without models: the server interceptor (counts, codes, latency, stage times, access log), the /metrics
endpoint and its configuration, the batcher's queue depth and batch sizes, and `run()` reporting its port."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wikimem_common import metrics
from wikimem_common.batching import DynamicBatcher
from wikimem_common.config import ConfigError
from wikimem_common.server import ServerHandle, start
from wikimem_contract.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    reader_pb2,
    reader_pb2_grpc,
)

from .scrape import Samples, local, scrape

EMBEDDER = "wikimem.v1.Embedder"
READER = "wikimem.v1.Reader"
HANDLED = "wikimem_grpc_server_handled_total"
SECONDS = "wikimem_grpc_server_handling_seconds"
STAGE = "wikimem_stage_seconds"


class FakeEmbedder(embedder_pb2_grpc.EmbedderServicer):
    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedder_pb2.EmbedResponse:
        if not request.texts:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts must not be empty")
        response = embedder_pb2.EmbedResponse(vectors=common_pb2.Vectors(shape=[1, 1]))
        response.timings_ms["encode"] = 5.0
        response.timings_ms["total"] = 7.0
        return response

    def Info(self, request: embedder_pb2.InfoRequest, context: grpc.ServicerContext) -> embedder_pb2.InfoResponse:
        raise RuntimeError("boom")  # an unhandled error: UNKNOWN


class FakeReader(reader_pb2_grpc.ReaderServicer):
    def ReadStream(
        self, request: reader_pb2.ReadStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[reader_pb2.ReadStreamResponse]:
        yield reader_pb2.ReadStreamResponse(delta="hello ")
        result = reader_pb2.ReadResponse()
        result.timings_ms["generate"] = 30.0
        yield reader_pb2.ReadStreamResponse(result=result)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    def register(srv: grpc.Server) -> list[str]:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedder(), srv)
        reader_pb2_grpc.add_ReaderServicer_to_server(FakeReader(), srv)
        return [EMBEDDER, READER]

    handle = start(register, "127.0.0.1:0")
    yield handle
    handle.stop(grace=0)


@pytest.fixture
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_calls_are_counted_by_method_and_code_with_latency_and_stages(channel: grpc.Channel) -> None:
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    before = local()
    stub.Embed(embedder_pb2.EmbedRequest(texts=["a"]))
    stub.Embed(embedder_pb2.EmbedRequest(texts=["b"]))
    with pytest.raises(grpc.RpcError) as invalid:
        stub.Embed(embedder_pb2.EmbedRequest())
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as unknown:
        stub.Info(embedder_pb2.InfoRequest())
    assert unknown.value.code() == grpc.StatusCode.UNKNOWN
    # a request that does not parse is rejected by MalformedRequests, inside the metrics interceptor: counted too
    raw = channel.unary_unary(f"/{EMBEDDER}/Embed", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as malformed:
        raw(b"\x0a\x02\xff\xfe")  # field 1 (texts) holding invalid UTF-8
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = local()

    ok = {"grpc_service": EMBEDDER, "grpc_method": "Embed", "grpc_code": "OK"}
    assert delta(before, after, HANDLED, **ok) == 2
    assert delta(before, after, HANDLED, grpc_service=EMBEDDER, grpc_method="Embed", grpc_code="INVALID_ARGUMENT") == 2
    assert delta(before, after, HANDLED, grpc_service=EMBEDDER, grpc_method="Info", grpc_code="UNKNOWN") == 1
    assert delta(before, after, SECONDS + "_count", **ok) == 2
    assert 0 < delta(before, after, SECONDS + "_sum", **ok) < 5
    assert delta(before, after, SECONDS + "_bucket", le="+Inf", **ok) == 2
    # stage times of successful calls, from the response's timings_ms (ms -> s)
    encode = {"grpc_service": EMBEDDER, "grpc_method": "Embed", "stage": "encode"}
    assert delta(before, after, STAGE + "_count", **encode) == 2
    assert delta(before, after, STAGE + "_sum", **encode) == pytest.approx(0.010)
    assert delta(before, after, STAGE + "_count", grpc_service=EMBEDDER, grpc_method="Embed", stage="total") == 2
    assert after.value("wikimem_grpc_server_in_flight", grpc_service=EMBEDDER, grpc_method="Embed") == 0


def test_streams_are_counted_once_with_the_stages_of_their_final_event(channel: grpc.Channel) -> None:
    stub = reader_pb2_grpc.ReaderStub(channel)
    before = local()
    events = list(stub.ReadStream(reader_pb2.ReadStreamRequest()))
    after = local()
    assert [e.WhichOneof("event") for e in events] == ["delta", "result"]
    assert delta(before, after, HANDLED, grpc_service=READER, grpc_method="ReadStream", grpc_code="OK") == 1
    generate = {"grpc_service": READER, "grpc_method": "ReadStream", "stage": "generate"}
    assert delta(before, after, STAGE + "_sum", **generate) == pytest.approx(0.030)


def test_access_log_has_one_line_per_call_but_none_for_health(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="wikimem.access"):
        embedder_pb2_grpc.EmbedderStub(channel).Embed(embedder_pb2.EmbedRequest(texts=["a"]))
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    lines = [r for r in caplog.records if r.name == "wikimem.access"]
    assert [(r.getMessage(), r.__dict__["rpc"], r.__dict__["code"]) for r in lines] == [
        ("rpc", f"{EMBEDDER}/Embed", "OK")
    ]
    assert lines[0].__dict__["ms"] >= 0


def test_health_checks_are_counted(channel: grpc.Channel) -> None:
    before = local()
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    after = local()
    assert delta(before, after, HANDLED, grpc_service="grpc.health.v1.Health", grpc_method="Check") == 1


def test_endpoint_on_port_zero_serves_the_process_registry() -> None:
    bound = metrics.serve("127.0.0.1:0")
    host, port = bound.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    samples = scrape(bound)
    assert samples.has("process_cpu_seconds_total") or samples.has("python_info")  # the default collectors
    assert samples.has(SECONDS + "_count") or "wikimem_grpc_server_in_flight" in samples.by_name


def test_endpoint_configuration() -> None:
    assert metrics.serve_from_env("memory", {}) is None
    assert metrics.serve_from_env("memory", {"WIKIMEM_METRICS_ADDR": "off"}) is None
    own = metrics.serve_from_env(
        "memory", {"WIKIMEM_METRICS_ADDR": "off", "WIKIMEM_MEMORY_METRICS_ADDR": "127.0.0.1:0"}
    )
    assert own is not None and own.startswith("127.0.0.1:")
    for bad in ("9464", "host:port", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="WIKIMEM_METRICS_ADDR"):
            metrics.serve_from_env("memory", {"WIKIMEM_METRICS_ADDR": bad})
    with pytest.raises(ConfigError, match="cannot serve metrics"):
        metrics.serve(own)  # the port is taken
    with pytest.raises(ConfigError, match="WIKIMEM_ACCESS_LOG"):
        metrics.serve_from_env("memory", {"WIKIMEM_ACCESS_LOG": "maybe"})
    try:
        metrics.serve_from_env("memory", {"WIKIMEM_ACCESS_LOG": "0"})
        assert not metrics.access_log.enabled
    finally:
        metrics.access_log.enabled = True


def test_metrics_address_forms() -> None:
    address = metrics.metrics_address
    assert address("reader", {"WIKIMEM_METRICS_ADDR": "0.0.0.0:9464"}) == "0.0.0.0:9464"
    # the Helm chart's form: a port (0 = off), on WIKIMEM_METRICS_ADDR's host if any
    assert address("reader", {"WIKIMEM_METRICS_PORT": "9470"}) == "0.0.0.0:9470"
    assert address("reader", {"WIKIMEM_METRICS_ADDR": "127.0.0.1:9464", "WIKIMEM_METRICS_PORT": "9470"}) == (
        "127.0.0.1:9470"
    )
    assert address("reader", {"WIKIMEM_METRICS_ADDR": "0.0.0.0:9464", "WIKIMEM_METRICS_PORT": "0"}) is None
    with pytest.raises(ConfigError, match="WIKIMEM_METRICS_PORT"):
        address("reader", {"WIKIMEM_METRICS_PORT": "http"})
    # one service's own address wins over both; `off` turns only that service's endpoint off
    own = {"WIKIMEM_METRICS_PORT": "9470", "WIKIMEM_READER_METRICS_ADDR": "127.0.0.1:9999"}
    assert address("reader", own) == "127.0.0.1:9999"
    assert address("memory", own) == "0.0.0.0:9470"
    assert address("reader", {"WIKIMEM_METRICS_ADDR": "0.0.0.0:9464", "WIKIMEM_READER_METRICS_ADDR": "off"}) is None


def test_batcher_reports_queue_depth_and_batch_sizes() -> None:
    release = threading.Event()
    running = threading.Event()

    def run(items: list[int]) -> list[int]:
        running.set()
        release.wait(10)
        return [i * 2 for i in items]

    name = "obs-test-batcher"
    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=8, max_wait_ms=0.0, name=name)  # type: ignore[arg-type]
    try:
        before = local()
        first = batcher.submit([1])
        assert running.wait(5)  # the worker is busy with the first batch; the next items wait in the queue
        second = batcher.submit([2, 3, 4])
        queued = local()
        assert queued.value("wikimem_batch_queue_items", batcher=name) == 3
        release.set()
        assert first.result(5) == [2] and second.result(5) == [4, 6, 8]
        after = local()
    finally:
        release.set()
        batcher.close()
    assert after.value("wikimem_batch_queue_items", batcher=name) == 0
    assert delta(before, after, "wikimem_batch_size_items_count", batcher=name) == 2
    assert delta(before, after, "wikimem_batch_size_items_sum", batcher=name) == 4
    assert delta(before, after, "wikimem_batch_run_seconds_count", batcher=name) == 2


STANDIN = """
from wikimem_common.server import run
run("reranker", lambda: ((lambda server: []), None))
"""


def _start_standin(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    port_file = tmp_path / "reranker.port"
    values = {k: v for k, v in os.environ.items() if not k.startswith(("WIKIMEM_", "OTEL_"))}
    values.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-c", STANDIN, "--addr", "127.0.0.1:0", "--port-file", str(port_file)],
        env=values,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, port_file


def test_run_serves_metrics_and_reports_the_bound_port(tmp_path: Path) -> None:
    proc, port_file = _start_standin(tmp_path, WIKIMEM_METRICS_ADDR="127.0.0.1:0")
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_file.exists(), proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
        metrics_file = Path(str(port_file) + ".metrics")
        assert metrics_file.exists()  # written before the gRPC port file
        with grpc.insecure_channel(port_file.read_text()) as ch:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        samples = scrape(metrics_file.read_text())
        assert samples.value(HANDLED, grpc_service="grpc.health.v1.Health", grpc_method="Check", grpc_code="OK") == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b'"metrics serving"' in err and b"metrics_address" in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WIKIMEM_METRICS_ADDR": "nonsense"}, "WIKIMEM_METRICS_ADDR='nonsense' is not HOST:PORT"),
        ({"WIKIMEM_TRACING": "jaeger"}, "WIKIMEM_TRACING='jaeger' is not one of off, otlp, console"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not one of off, otlp, console"),
    ],
)
def test_run_fails_fast_on_bad_observability_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    proc, _ = _start_standin(tmp_path, **env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert message in err.decode()
