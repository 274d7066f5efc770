"""Prometheus metrics: one registry per process (prometheus_client's default), served on a port of its own.

`WIKIMEM_METRICS_ADDR=HOST:PORT` (e.g. `0.0.0.0:9464`; port 0 picks a free one; `WIKIMEM_<SERVICE>_METRICS_ADDR`
overrides it for one service; `WIKIMEM_METRICS_PORT`, the Helm chart's form, sets only the port, 0 = off) starts
the `/metrics` endpoint when a service starts; unset or `off`, no endpoint (metrics are still counted, which costs
a few microseconds per call). The images set it to `0.0.0.0:9464` (the chart: port 9464); `wikimem serve` leaves it
off unless it is set. The bound address is logged ("metrics serving") and, when the service was started with
`--port-file F`, written to `F.metrics`.

Every service counts its gRPC calls (`ServerMetrics`, a server interceptor) and observes the per-stage times that
each response carries in `timings_ms`; the model services' batchers, the orchestrator's caches and the memory's
size add their own (see docs/operations.md, "Monitor", for the list).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import ConfigError

log = logging.getLogger("wikimem.metrics")

#: Seconds; from a cached answer (~1 ms) to a slow generative read (tens of seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

#: Calls not counted in the access log (the counters still see them): probes and tooling, not traffic.
QUIET_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

REQUESTS = Counter(
    "wikimem_grpc_server_handled",
    "gRPC calls completed, by service, method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
LATENCY = Histogram(
    "wikimem_grpc_server_handling_seconds",
    "gRPC call latency (until the last response message), by service, method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("wikimem_grpc_server_in_flight", "gRPC calls being handled", ["grpc_service", "grpc_method"])
STAGE = Histogram(
    "wikimem_stage_seconds",
    "Per-stage time of successful calls, from the timings_ms every response carries (stage `total` included)",
    ["grpc_service", "grpc_method", "stage"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "wikimem_batch_size_items", "Items per model batch run by a dynamic batcher", ["batcher"], buckets=BATCH_BUCKETS
)
BATCH_SECONDS = Histogram(
    "wikimem_batch_run_seconds", "Model time per batch run by a dynamic batcher", ["batcher"], buckets=LATENCY_BUCKETS
)
QUEUE_ITEMS = Gauge("wikimem_batch_queue_items", "Items waiting in a dynamic batcher's queue", ["batcher"])
CACHE_LOOKUPS = Counter(
    "wikimem_cache_lookups",
    "Orchestrator cache lookups: cache=answer|embedding|qa_memory, result=hit|miss",
    ["cache", "result"],
)


def cache_lookup(cache: str, hit: bool) -> None:
    CACHE_LOOKUPS.labels(cache, "hit" if hit else "miss").inc()


class Gauges(Collector):
    """Gauges read on each scrape from a callable returning {name: value}, or {name: {label value: value}}
    (one label, `label`). `unregister()` when the object they describe goes away."""

    def __init__(self, read: Callable[[], dict[str, Any]], docs: dict[str, str], label: str = "") -> None:
        self._read = read
        self._docs = docs
        self._label = label

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # values are read at collect time only (a describe that read them would run at registration)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            values = self._read()
        except Exception as exc:  # a scrape must not fail because one reading did
            log.warning("metrics reading failed", extra={"error": str(exc)})
            return
        for name, doc in self._docs.items():
            value = values.get(name)
            if value is None:
                continue
            if isinstance(value, dict):
                family = GaugeMetricFamily(name, doc, labels=[self._label])
                for key, number in value.items():
                    family.add_metric([str(key)], float(number))
            else:
                family = GaugeMetricFamily(name, doc, value=float(value))
            yield family

    def register(self) -> Gauges:
        REGISTRY.register(self)
        return self

    def unregister(self) -> None:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(self)


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service or "unknown", name


def _timings(message: Any) -> Any:
    """The `timings_ms` map of a response, or of the message it wraps (a stream's final `result` event)."""
    stages = getattr(message, "timings_ms", None)
    if stages is not None or not hasattr(message, "ListFields"):
        return stages
    for fld, value in message.ListFields():
        if fld.message_type is not None and hasattr(value, "timings_ms"):
            return value.timings_ms
    return None


def _observe_stages(service: str, method: str, response: Any) -> None:
    stages = _timings(response)
    if not stages:
        return
    for stage, ms in stages.items():
        STAGE.labels(service, method, stage).observe(ms / 1000.0)


def _code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    try:
        code = context.code()
    except Exception:
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(error, GeneratorExit):  # a stream the caller stopped reading (cancelled, deadline)
        return "CANCELLED"
    return "UNKNOWN" if error is not None else "OK"


class _Call:
    """One call being measured: counts, latency, in-flight, stage times and the access log line."""

    __slots__ = ("method", "quiet", "service", "t0")

    def __init__(self, full_method: str) -> None:
        self.service, self.method = _split(full_method)
        self.quiet = self.service in QUIET_SERVICES
        self.t0 = time.perf_counter()
        IN_FLIGHT.labels(self.service, self.method).inc()

    def done(self, context: grpc.ServicerContext, error: BaseException | None) -> None:
        seconds = time.perf_counter() - self.t0
        code = _code(context, error)
        IN_FLIGHT.labels(self.service, self.method).dec()
        REQUESTS.labels(self.service, self.method, code).inc()
        LATENCY.labels(self.service, self.method, code).observe(seconds)
        if not self.quiet and access_log.enabled:
            access_log.logger.info(
                "rpc",
                extra={"rpc": f"{self.service}/{self.method}", "code": code, "ms": round(seconds * 1000.0, 3)},
            )


class _AccessLog:
    """One INFO line per call (not for health checks or reflection); WIKIMEM_ACCESS_LOG=0 turns it off."""

    def __init__(self) -> None:
        self.enabled = True
        self.logger = logging.getLogger("wikimem.access")


access_log = _AccessLog()


class ServerMetrics(grpc.ServerInterceptor):
    """Counts every call by (grpc_service, grpc_method, grpc_code), observes its latency and the stage times of
    its response(s), and writes the access log line (inside the call's trace span, so it carries the trace id)."""

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        full_method: str = details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, full_method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, full_method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, full_method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, full_method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _unary(behavior: Callable[[Any, grpc.ServicerContext], Any], full_method: str) -> Callable[..., Any]:
    def measured(request: Any, context: grpc.ServicerContext) -> Any:
        call = _Call(full_method)
        try:
            response = behavior(request, context)
        except BaseException as exc:
            call.done(context, exc)
            raise
        call.done(context, None)
        _observe_stages(call.service, call.method, response)
        return response

    return measured


def _streaming(behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]], full_method: str) -> Callable[..., Any]:
    def measured(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        call = _Call(full_method)
        last: Any = None
        try:
            for last in behavior(request, context):
                yield last
        except BaseException as exc:
            call.done(context, exc)
            raise
        call.done(context, None)
        _observe_stages(call.service, call.method, last)  # streams put their timings in the last message

    return measured


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit() or int(port_s) > 65535:
        raise ConfigError(f"WIKIMEM_METRICS_ADDR={value!r} is not HOST:PORT (e.g. 0.0.0.0:9464, or 'off')")
    return host.strip("[]") or "0.0.0.0", int(port_s)


def serve(address: str) -> str:
    """Start the /metrics endpoint (a daemon thread) on `address`; returns the bound HOST:PORT."""
    host, port = parse_address(address)
    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on WIKIMEM_METRICS_ADDR={address!r}: {exc}") from exc
    bound = f"{host}:{server.server_port}"
    log.info("metrics serving", extra={"metrics_address": bound})
    return bound


def metrics_address(service: str = "", env: Mapping[str, str] | None = None) -> str | None:
    """Where this service's /metrics goes, or None (off). In order: WIKIMEM_<SERVICE>_METRICS_ADDR;
    WIKIMEM_METRICS_PORT (the Helm chart's form: a port on WIKIMEM_METRICS_ADDR's host, else 0.0.0.0; 0 = off);
    WIKIMEM_METRICS_ADDR (HOST:PORT, port 0 = any free port; `off` = off)."""
    values = os.environ if env is None else env
    own = values.get(f"WIKIMEM_{service.upper()}_METRICS_ADDR", "").strip() if service else ""
    if own:
        return None if own.lower() == "off" else own
    address = values.get("WIKIMEM_METRICS_ADDR", "").strip()
    port = values.get("WIKIMEM_METRICS_PORT", "").strip()
    if port:
        if not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"WIKIMEM_METRICS_PORT={port!r} is not a port number (0 turns metrics off)")
        if int(port) == 0:
            return None
        host = address.rpartition(":")[0] if address and address.lower() != "off" else ""
        return f"{host or '0.0.0.0'}:{int(port)}"
    if not address or address.lower() == "off":
        return None
    return address


def serve_from_env(service: str = "", env: Mapping[str, str] | None = None) -> str | None:
    """`serve` at `metrics_address(service)` unless off; also applies WIKIMEM_ACCESS_LOG. Returns the bound
    HOST:PORT or None."""
    values = os.environ if env is None else env
    access = values.get("WIKIMEM_ACCESS_LOG", "1").strip().lower()
    if access not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
        raise ConfigError(f"WIKIMEM_ACCESS_LOG={access!r} is not a boolean (use 1/0)")
    access_log.enabled = access in ("1", "true", "on", "yes")
    address = metrics_address(service, values)
    return serve(address) if address is not None else None
