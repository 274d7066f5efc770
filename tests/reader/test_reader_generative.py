"""Generative backends without a model: the prompt, "I don't know" detection, SSE streaming and error mapping of the
`openai` backend (against a small loopback HTTP server speaking the wire format), and the precise errors of a
`local-llm` backend that is not provisioned. The real models run in tests/llm (`make test-llm`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from wikimem_common import server as wserver
from wikimem_common.timing import Timings
from wikimem_contract.v1 import reader_pb2, reader_pb2_grpc
from wikimem_reader.backend import Passage
from wikimem_reader.config import LocalLlmConfig, OpenAIConfig, ReaderConfig
from wikimem_reader.generative import GenerationSettings
from wikimem_reader.local_llm import LocalLlmReader
from wikimem_reader.openai_chat import OpenAIChatReader, parse_sse
from wikimem_reader.prompt import SYSTEM, build_messages, is_no_answer
from wikimem_reader.server import registrar
from wikimem_reader.service import Reader


def test_prompt_numbers_passages_and_bounds_their_text() -> None:
    passages = [
        Passage("a", "The Eiffel  Tower is\nin Rome.", "Eiffel"), Passage("b", "x " * 500, ""), Passage("c", "Cut.")
    ]
    system, user = build_messages("Where is it?", passages, max_chars=300)
    assert system == {"role": "system", "content": SYSTEM}
    assert "only the numbered passages" in SYSTEM and "I don't know" in SYSTEM
    text = user["content"]
    assert text.startswith("Passages:\n\n[1] Eiffel\nThe Eiffel Tower is in Rome.\n\n[2]\nx x")
    assert text.endswith("\n\nQuestion: Where is it?")
    assert "[3]" not in text and len(text) < 400  # the budget ran out inside passage 2


@pytest.mark.parametrize(
    ("text", "no_answer"),
    [
        ("I don't know.", True),
        ("I do not know the answer.", True),
        ("The passages do not mention the height.", True),
        ("Not mentioned in the passages.", True),
        ("  ", True),
        ("The Eiffel Tower is in Rome.", False),
        ("No, remote employees do not need a badge.", False),
        ("You should know the VPN profile VPN-42.", False),
    ],
)
def test_no_answer_detection(text: str, no_answer: bool) -> None:
    assert is_no_answer(text) is no_answer


def test_sse_parsing_stops_at_done_and_skips_other_lines() -> None:
    lines = [b": keep-alive\n", b"event: message\n", b'data: {"a": 1}\n', b"\n", b"data: [DONE]\n", b'data: {"b": 2}\n']
    assert list(parse_sse(iter(lines))) == [{"a": 1}]


class ChatServer:
    """A loopback HTTP server speaking the OpenAI chat-completions wire format with canned replies."""

    def __init__(self) -> None:
        self.reply = "The Eiffel Tower is in Rome."
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": "canned-model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.requests.append(json.loads(self.rfile.read(length)))
                outer.headers.append(dict(self.headers))
                if outer.status != 200:
                    body = json.dumps({"error": {"message": "Invalid API key"}}).encode()
                    self.send_response(outer.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = outer.reply.split(" ")
                for i, word in enumerate(words):
                    delta = {"content": word + (" " if i < len(words) - 1 else "")}
                    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.close()


def reader_stub(backends: dict[str, Any]) -> tuple[reader_pb2_grpc.ReaderStub, wserver.ServerHandle]:
    core = Reader(ReaderConfig(default_backend=next(iter(backends))), backends)
    handle = wserver.start(registrar(core), "127.0.0.1:0")
    return reader_pb2_grpc.ReaderStub(wserver.channel(handle.address)), handle


EIFFEL = [reader_pb2.ReadPassage(id="p0", text="The Eiffel Tower is located in the city of Rome.", title="Eiffel")]


def test_openai_backend_streams_tokens_and_returns_an_unverified_generated_answer(chat_server: ChatServer) -> None:
    settings = GenerationSettings(max_tokens=100)
    backend = OpenAIChatReader(OpenAIConfig(base_url=chat_server.url, api_key="sk-test", generation=settings))
    stub, handle = reader_stub({"openai": backend})
    try:
        request = reader_pb2.ReadStreamRequest(
            question="Where is the Eiffel Tower?", passages=EIFFEL, options=reader_pb2.ReadOptions(max_tokens=33)
        )
        events = list(stub.ReadStream(request))
    finally:
        handle.stop(grace=0)
    deltas = [e.delta for e in events if e.WhichOneof("event") == "delta"]
    assert len(deltas) == 6 and "".join(deltas) == chat_server.reply
    result = events[-1].result
    assert (result.backend, result.model, result.abstained) == ("openai", "canned-model", False)
    [answer] = result.answers
    assert answer.generated and answer.text == chat_server.reply and (answer.start, answer.end) == (0, 0)
    assert {"prompt", "generate", "total"} <= set(result.timings_ms)
    [sent] = chat_server.requests
    assert sent["model"] == "canned-model" and sent["stream"] is True and sent["max_tokens"] == 33
    assert sent["temperature"] == 0.0
    assert "[1] Eiffel\nThe Eiffel Tower is located in the city of Rome." in sent["messages"][1]["content"]
    assert chat_server.headers[0]["Authorization"] == "Bearer sk-test"


def test_openai_backend_abstains_when_the_model_says_so(chat_server: ChatServer) -> None:
    chat_server.reply = "I don't know."
    backend = OpenAIChatReader(OpenAIConfig(base_url=chat_server.url, model="m"))
    outcome = backend.read("Who won?", [Passage("p", "Lasagna on Fridays.")], 1, None, Timings())
    assert outcome.abstained and outcome.abstain_reason == "the model found no answer in the passages"
    assert outcome.model == "m"


def test_openai_backend_errors_say_what_to_do(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.status = 401
    bad_key = OpenAIChatReader(OpenAIConfig(base_url=chat_server.url, model="m", api_key="wrong"))
    unconfigured = OpenAIChatReader(OpenAIConfig())
    unreachable = OpenAIChatReader(OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=5))
    stub, handle = reader_stub({"openai": bad_key, "x": unconfigured, "y": unreachable})
    try:
        cases = [
            ("openai", grpc.StatusCode.FAILED_PRECONDITION, "HTTP 401"),
            ("openai", grpc.StatusCode.FAILED_PRECONDITION, "check WIKIMEM_OPENAI_API_KEY"),
            ("x", grpc.StatusCode.FAILED_PRECONDITION, "set WIKIMEM_OPENAI_BASE_URL"),
            ("y", grpc.StatusCode.UNAVAILABLE, "cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1"),
        ]
        for backend, code, fragment in cases:
            request = reader_pb2.ReadRequest(
                question="Where?", passages=EIFFEL, options=reader_pb2.ReadOptions(backend=backend)
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.Read(request)
            assert err.value.code() == code, backend
            assert fragment in (err.value.details() or ""), err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.Read(reader_pb2.ReadRequest(
                question="Where?", passages=EIFFEL, options=reader_pb2.ReadOptions(backend="x", max_tokens=5000)
            ))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_tokens=5000; the limit is 2048" in (
            err.value.details() or ""
        )
    finally:
        handle.stop(grace=0)


def test_local_llm_that_is_not_provisioned_says_to_run_make_llm(tmp_path: Path) -> None:
    missing = LocalLlmReader(LocalLlmConfig(gguf=str(tmp_path / "nothing.gguf")))
    truncated_path = tmp_path / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"  # a pinned file name, wrong size
    truncated_path.write_bytes(b"GGUF" + b"\0" * 100)
    truncated = LocalLlmReader(LocalLlmConfig(gguf=str(truncated_path)))
    stub, handle = reader_stub({"local-llm": missing, "trunc": truncated})
    try:
        for backend, fragment in (("local-llm", "nothing.gguf"), ("trunc", "has 104 bytes, but qwen2.5-coder-0.5b")):
            request = reader_pb2.ReadRequest(
                question="Where?", passages=EIFFEL, options=reader_pb2.ReadOptions(backend=backend)
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.Read(request)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            details = err.value.details() or ""
            assert "make llm" in details and (fragment in details or "llm extra" in details), details
    finally:
        handle.stop(grace=0)
