"""Both generative backends on the real 0.5B model: `local-llm` in-process and `openai` against llama-cpp-python's
OpenAI-compatible server on loopback. Streaming through Reader.ReadStream, following the passage over what the
model memorised, and saying "I don't know" when the passages do not answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wikimem_common import server as wserver
from wikimem_contract.v1 import reader_pb2, reader_pb2_grpc
from wikimem_reader.config import ReaderConfig
from wikimem_reader.generative import GenerativeReader
from wikimem_reader.local_llm import LocalLlmReader
from wikimem_reader.openai_chat import OpenAIChatReader
from wikimem_reader.server import registrar
from wikimem_reader.service import Reader

pytestmark = pytest.mark.llm

ROME = reader_pb2.ReadPassage(id="e", title="Eiffel Tower", text="The Eiffel Tower is located in the city of Rome.")
LASAGNA = reader_pb2.ReadPassage(id="l", title="Cafeteria", text="The cafeteria serves vegetarian lasagna on Fridays.")


@pytest.fixture(scope="module")
def stub(local_llm: LocalLlmReader, openai_reader: OpenAIChatReader) -> Iterator[reader_pb2_grpc.ReaderStub]:
    backends: dict[str, GenerativeReader] = {"local-llm": local_llm, "openai": openai_reader}
    handle = wserver.start(registrar(Reader(ReaderConfig(default_backend="local-llm"), backends)), "127.0.0.1:0")
    channel = wserver.channel(handle.address)
    yield reader_pb2_grpc.ReaderStub(channel)
    channel.close()
    handle.stop(grace=0)


def stream(
    stub: reader_pb2_grpc.ReaderStub, backend: str, question: str, passages: list[reader_pb2.ReadPassage]
) -> tuple[list[str], reader_pb2.ReadResponse]:
    request = reader_pb2.ReadStreamRequest(
        question=question, passages=passages, options=reader_pb2.ReadOptions(backend=backend, max_tokens=64)
    )
    events = list(stub.ReadStream(request, timeout=300))
    assert events[-1].WhichOneof("event") == "result"
    return [e.delta for e in events[:-1]], events[-1].result


@pytest.mark.parametrize("backend", ["local-llm", "openai"])
def test_follows_the_passage_and_streams_tokens(stub: reader_pb2_grpc.ReaderStub, backend: str) -> None:
    deltas, result = stream(stub, backend, "The Eiffel Tower is located in which city?", [LASAGNA, ROME])
    assert len(deltas) > 2, deltas  # token by token, not one piece
    assert not result.abstained, result.abstain_reason
    [answer] = result.answers
    assert answer.generated and answer.text == "".join(deltas).strip()
    assert "rome" in answer.text.lower() and "paris" not in answer.text.lower(), answer.text
    assert result.backend == backend and "qwen2.5-coder-0.5b" in result.model
    assert result.timings_ms["prompt"] > 0 and result.timings_ms["generate"] > 0


@pytest.mark.parametrize("backend", ["local-llm", "openai"])
def test_says_it_does_not_know_when_the_passages_do_not_answer(stub: reader_pb2_grpc.ReaderStub, backend: str) -> None:
    _, result = stream(stub, backend, "Who designed the glass pyramid of the Louvre?", [LASAGNA, ROME])
    assert result.abstained, [a.text for a in result.answers]
    assert result.abstain_reason == "the model found no answer in the passages"


def test_a_llama_build_that_crashes_here_fails_the_backend_not_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe child dies with SIGILL (as a build for another CPU does): local-llm answers FAILED_PRECONDITION
    with the fix, and the same reader service goes on answering with the extractive backend."""
    import grpc

    from wikimem_reader import llm_probe, local_llm
    from wikimem_reader.config import LocalLlmConfig
    from wikimem_reader.server import create

    from .llm_support import MODEL

    monkeypatch.setattr(llm_probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    monkeypatch.setattr(local_llm, "_probed", {})
    core = create(ReaderConfig(), local_llm=LocalLlmConfig(model=MODEL))  # extractive default, local-llm on demand
    handle = wserver.start(registrar(core), "127.0.0.1:0")
    channel = wserver.channel(handle.address)
    try:
        reader = reader_pb2_grpc.ReaderStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stream(reader, "local-llm", "Where is the Eiffel Tower?", [ROME])
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "SIGILL" in (err.value.details() or "") and "make llm" in (err.value.details() or "")
        _, result = stream(reader, "extractive", "Where is the Eiffel Tower?", [ROME])
        assert not result.abstained and "Rome" in result.answers[0].text
    finally:
        channel.close()
        handle.stop(grace=0)
        core.close()
