"""Traces: the spans of one Ask from all five real services (in-process, real models) share one trace id, the
W3C context travels in the gRPC metadata, and the JSON log lines written inside a call carry its trace id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.system import System, start_system
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from wikimem import WikimemClient
from wikimem_common import tracing
from wikimem_common.logs import JsonFormatter
from wikimem_contract.v1 import rag_pb2

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "wiki"
#: Asked once per test, with no_cache: the path runs every stage (the question's embedding is not cached yet).
QUESTION = "How many days of paid vacation do full-time employees get?"

ASK_PATH = {
    "/wikimem.v1.Rag/Ask",
    "/wikimem.v1.Embedder/Embed",
    "/wikimem.v1.Memory/Search",
    "/wikimem.v1.Reranker/Rerank",
    "/wikimem.v1.Reader/Read",
}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, InMemorySpanExporter]]:
    """The five services with tracing on (one in-memory exporter: they share this process), sample wiki ingested."""
    exporter = InMemorySpanExporter()
    tracing.configure("test", processor=SimpleSpanProcessor(exporter))
    try:
        system = start_system(tmp_path_factory.mktemp("wikimem-traces"))
    except BaseException:
        tracing.shutdown()
        raise
    try:
        with WikimemClient(system.address, timeout=120) as client:
            for path in sorted(EXAMPLES.rglob("*.md")):
                client.put_document(path.relative_to(EXAMPLES).as_posix(), path.read_text(encoding="utf-8"))
        yield system, exporter
    finally:
        system.close()
        tracing.shutdown()


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    """The access log lines as the services write them (JSON)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("wikimem.access")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def one_trace(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], root: str) -> tuple[int, list[ReadableSpan]]:
    (top,) = [s for s in spans if s.name == root and s.kind == SpanKind.SERVER]
    assert top.context is not None
    return top.context.trace_id, [
        s for s in spans if s.context is not None and s.context.trace_id == top.context.trace_id
    ]


def test_spans_of_one_ask_share_one_trace_across_all_services(
    traced: tuple[System, InMemorySpanExporter], access_log: io.StringIO
) -> None:
    system, exporter = traced
    exporter.clear()
    with WikimemClient(system.address, timeout=120) as client:
        answer = client.ask(QUESTION, no_cache=True)
    assert not answer.cached
    spans = exporter.get_finished_spans()
    trace_id, mine = one_trace(spans, "/wikimem.v1.Rag/Ask")
    server_spans = {s.name for s in mine if s.kind == SpanKind.SERVER}
    assert server_spans >= ASK_PATH, server_spans
    # every server span below the Ask hangs off the orchestrator's client span for the same call
    by_id = {s.context.span_id: s for s in mine if s.context is not None}
    for span in mine:
        if span.kind == SpanKind.SERVER and span.name != "/wikimem.v1.Rag/Ask":
            assert span.parent is not None and span.parent.is_remote
            caller = by_id[span.parent.span_id]
            assert caller.kind == SpanKind.CLIENT and caller.name == span.name
    assert len({s.context.trace_id for s in spans if s.context is not None}) == 1  # nothing else was traced

    # the access log lines of this Ask (orchestrator and peers) carry its trace id and their own span ids
    lines = [json.loads(line) for line in access_log.getvalue().splitlines()]
    by_rpc = {line["rpc"]: line for line in lines if line.get("msg") == "rpc"}
    ask = by_rpc["wikimem.v1.Rag/Ask"]
    assert ask["trace_id"] == format_trace_id(trace_id)
    (ask_span,) = [s for s in mine if s.name == "/wikimem.v1.Rag/Ask"]
    assert ask_span.context is not None and ask["span_id"] == format_span_id(ask_span.context.span_id)
    search = by_rpc["wikimem.v1.Memory/Search"]
    assert search["trace_id"] == ask["trace_id"] and search["span_id"] != ask["span_id"]


def test_two_asks_are_two_traces(traced: tuple[System, InMemorySpanExporter]) -> None:
    system, exporter = traced
    exporter.clear()
    with WikimemClient(system.address, timeout=120) as client:
        client.ask("How many vacation days can be carried over?", no_cache=True)
        client.ask("Who approves expense reports?", no_cache=True)
    asks = [s for s in exporter.get_finished_spans() if s.name == "/wikimem.v1.Rag/Ask"]
    assert len(asks) == 2 and len({s.context.trace_id for s in asks if s.context is not None}) == 2


def test_caller_trace_context_is_continued(traced: tuple[System, InMemorySpanExporter]) -> None:
    """A caller that sends W3C `traceparent` metadata gets the whole Ask in its own trace."""
    system, exporter = traced
    exporter.clear()
    trace_hex, parent_hex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    system.rag.Ask(
        rag_pb2.AskRequest(question="Who approves vacation requests?", options=rag_pb2.AskOptions(no_cache=True)),
        metadata=[("traceparent", f"00-{trace_hex}-{parent_hex}-01")],
        timeout=120,
    )
    trace_id, mine = one_trace(exporter.get_finished_spans(), "/wikimem.v1.Rag/Ask")
    assert format_trace_id(trace_id) == trace_hex
    (ask,) = [s for s in mine if s.name == "/wikimem.v1.Rag/Ask"]
    assert ask.parent is not None and format_span_id(ask.parent.span_id) == parent_hex
    assert {s.name for s in mine} >= ASK_PATH


def test_a_write_traces_the_memory_embedding_call(traced: tuple[System, InMemorySpanExporter]) -> None:
    """PutDocument -> memory Upsert -> the memory's own Embed call: one trace (the memory's channel is traced)."""
    system, exporter = traced
    exporter.clear()
    with WikimemClient(system.address, timeout=120) as client:
        client.put_document("traced/new.md", "# Parking\n\nVisitors park on level 2 of the garage.\n")
    _, mine = one_trace(exporter.get_finished_spans(), "/wikimem.v1.Rag/PutDocument")
    server_spans = {s.name for s in mine if s.kind == SpanKind.SERVER}
    assert {"/wikimem.v1.Memory/Upsert", "/wikimem.v1.Embedder/Embed"} <= server_spans
