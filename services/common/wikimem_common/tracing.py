"""OpenTelemetry traces that follow one request across the services.

`WIKIMEM_TRACING=off` (default) | `otlp` | `console` (unset: the standard `OTEL_TRACES_EXPORTER`, `none` = off;
sampling: the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, default every trace). With `otlp`,
spans go to `OTEL_EXPORTER_OTLP_ENDPOINT` (gRPC, default http://localhost:4317; the exporter also reads the other
standard `OTEL_EXPORTER_OTLP_*` variables); `console` prints them as JSON on stdout. The service name is
`wikimem-<service>` unless `OTEL_SERVICE_NAME` says otherwise. When tracing is on, every server gets the
OpenTelemetry gRPC server interceptor and every channel to a peer the client interceptor, so the W3C trace context
travels in the gRPC metadata (`traceparent`) and the spans of one Ask — orchestrator, embedder, memory (and its own
Embed call), reranker, reader — share one trace id; the JSON log lines written inside a span carry its `trace_id`
and `span_id`. When it is off, nothing is added to the call path.
"""

from __future__ import annotations

import logging
import os
import threading

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import client_interceptor, grpcext, server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from .config import ConfigError

log = logging.getLogger("wikimem.tracing")

MODES = ("off", "otlp", "console")

_lock = threading.Lock()
_provider: TracerProvider | None = None
_global_set = False


def enabled() -> bool:
    return _provider is not None


def provider() -> TracerProvider | None:
    return _provider


def configure(service: str, processor: SpanProcessor | None = None, exporter: SpanExporter | None = None) -> None:
    """Turn tracing on in this process with `processor` (or a batch processor over `exporter`). The provider is
    also made the global one the first time (OpenTelemetry allows that once per process)."""
    global _provider, _global_set
    if processor is None:
        if exporter is None:
            raise ValueError("configure() needs a processor or an exporter")
        processor = BatchSpanProcessor(exporter)
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or f"wikimem-{service}"})
    new = TracerProvider(resource=resource)
    new.add_span_processor(processor)
    with _lock:
        old, _provider = _provider, new
    if old is not None:
        old.shutdown()
    if not _global_set:  # OpenTelemetry allows this once per process; the interceptors use `new` directly
        trace.set_tracer_provider(new)
        _global_set = True


def configure_from_env(service: str) -> None:
    """Apply WIKIMEM_TRACING (see the module docstring); fails fast on an unknown mode."""
    raw = os.environ.get("WIKIMEM_TRACING", "").strip().lower()
    name = "WIKIMEM_TRACING"
    if not raw:  # the standard variable (the Helm chart sets it): otlp, console or none
        name, raw = "OTEL_TRACES_EXPORTER", os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        raw = "off" if raw == "none" else raw
    mode = raw or "off"
    if mode not in MODES:
        raise ConfigError(f"{name}={mode!r} is not one of {', '.join(MODES)}")
    if mode == "off":
        return
    exporter: SpanExporter
    if mode == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    configure(service, exporter=exporter)
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "default") if mode == "otlp" else ""
    log.info("tracing on", extra={"exporter": mode, "endpoint": endpoint})


def shutdown() -> None:
    """Flush and stop the exporter (at the end of a process, after the server stopped)."""
    global _provider
    with _lock:
        old, _provider = _provider, None
    if old is not None:
        old.shutdown()


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """The OpenTelemetry server interceptor when tracing is on (outermost, so that later interceptors and the
    servicer run inside the call's span), else none."""
    current = _provider
    return [server_interceptor(tracer_provider=current)] if current is not None else []


def intercept_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel` with the OpenTelemetry client interceptor when tracing is on (injects `traceparent`)."""
    current = _provider
    if current is None:
        return channel
    intercepted: grpc.Channel = grpcext.intercept_channel(channel, client_interceptor(tracer_provider=current))
    return intercepted


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span current in this thread, or None outside any recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
