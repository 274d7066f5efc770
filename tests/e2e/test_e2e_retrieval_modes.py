"""Retrieval modes through Rag.Ask on the real system: a question about a rare code word that only one page mentions
in passing, among many look-alike pages. Dense retrieval ranks that page below the look-alikes and answers wrongly;
hybrid (dense fused with BM25, where the code's number is a rare term) retrieves it and the answer cites it. Also:
the mode in the cache key and the client, and a data directory made before lexical retrieval existed."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import qdrant_edge as qe

from wikimem.client import WikimemClient
from wikimem_contract.v1 import common_pb2, rag_pb2

from .system import System, start_system

COLLECTION = "inventory"
#: Look-alike pages: shelves of spare parts with codes that share the letters and digits of the asked one.
NUMBERS = [7713, 7371, 1773, 7137, 3177, 7317, 1737, 3717, 7173, 3771, 1377, 3137, 7133, 1337, 3713, 1733]
KINDS = ["belt", "motor", "sensor", "fuse", "roller", "gasket", "valve", "bearing", "pump", "switch", "relay", "drive"]
MOVES = (
    "# Office moves\n\nWhen a team moves to another floor, facilities books the movers two weeks ahead and labels "
    "every desk. Personal items travel in the blue crates, which are returned to the loading dock afterwards. "
    "Monitors and docking stations stay on their desks. The old badge readers are reprogrammed on the day of the "
    "move, so expect a short outage at the doors. The spare key for the comms room, tag QZ-7731-K, hangs in the "
    "facilities office behind the reception desk. Questions go to the facilities channel; urgent ones to the duty "
    "manager.\n"
)
QUESTION = "Where is QZ-7731-K kept?"


@pytest.fixture(scope="module")
def inventory(system: System) -> System:
    pages = {"moves.md": MOVES}
    for i, number in enumerate(NUMBERS * 2):
        kind = KINDS[i % len(KINDS)]
        pages[f"shelf-{i}.md"] = (
            f"# Spare parts, shelf {i}\n\nThe replacement {kind} (part QZ-{number}-K) for the packaging line is kept "
            f"on shelf {i} of the east warehouse. Order new stock through the facilities portal.\n"
        )
    for doc_id, text in pages.items():
        system.rag.PutDocument(rag_pb2.PutDocumentRequest(doc_id=doc_id, text=text, collection=COLLECTION))
    return system


def ask(system: System, mode: int, **options: object) -> rag_pb2.AskResponse:
    request = rag_pb2.AskRequest(
        question=QUESTION,
        options=rag_pb2.AskOptions(
            collection=COLLECTION,
            retrieval=mode,
            include_passages=True,
            no_cache=True,
            **options,  # type: ignore[arg-type]
        ),
    )
    return system.rag.Ask(request, timeout=120)


def test_a_code_word_only_one_page_mentions_is_found_with_hybrid_not_dense(inventory: System) -> None:
    dense = ask(inventory, common_pb2.RETRIEVAL_MODE_DENSE)
    assert dense.retrieval == common_pb2.RETRIEVAL_MODE_DENSE
    assert "moves.md" not in {p.chunk.doc_id for p in dense.passages}  # below 20 look-alikes
    assert not dense.citations or dense.citations[0].doc_id != "moves.md"

    hybrid = ask(inventory, common_pb2.RETRIEVAL_MODE_HYBRID)
    assert hybrid.retrieval == common_pb2.RETRIEVAL_MODE_HYBRID and not hybrid.warnings
    assert "moves.md" in {p.chunk.doc_id for p in hybrid.passages}
    assert not hybrid.abstained and hybrid.citations[0].doc_id == "moves.md"
    assert "QZ-7731-K" in hybrid.citations[0].quote  # (the reader's span is its own business: "comms room")

    bm25 = ask(inventory, common_pb2.RETRIEVAL_MODE_BM25, retrieve_k=5)
    assert bm25.retrieval == common_pb2.RETRIEVAL_MODE_BM25 and bm25.citations[0].doc_id == "moves.md"


def test_the_mode_is_part_of_the_answer_cache_key(inventory: System) -> None:
    """A cached dense answer is not served to a hybrid Ask of the same question (and vice versa)."""

    def cached_ask(mode: int) -> rag_pb2.AskResponse:
        options = rag_pb2.AskOptions(collection=COLLECTION, retrieval=mode, no_qa_memory=True)
        return inventory.rag.Ask(rag_pb2.AskRequest(question=QUESTION, options=options), timeout=120)

    first_dense = cached_ask(common_pb2.RETRIEVAL_MODE_DENSE)
    assert cached_ask(common_pb2.RETRIEVAL_MODE_DENSE).cached
    first_hybrid = cached_ask(common_pb2.RETRIEVAL_MODE_HYBRID)
    assert not first_hybrid.cached and first_hybrid.retrieval == common_pb2.RETRIEVAL_MODE_HYBRID
    dense_doc = first_dense.citations[0].doc_id if first_dense.citations else ""
    assert first_hybrid.citations[0].doc_id == "moves.md" != dense_doc


def test_the_python_client_names_the_mode(inventory: System, client: WikimemClient) -> None:
    answer = client.ask(QUESTION, collection=COLLECTION, retrieval="bm25", retrieve_k=5, no_cache=True)
    assert answer.citations[0].doc_id == "moves.md"
    with pytest.raises(ValueError, match="dense, bm25 or hybrid"):
        client.ask(QUESTION, collection=COLLECTION, retrieval="sparse")


def test_a_data_directory_from_before_lexical_retrieval_still_answers(tmp_path: Path) -> None:
    """Memory data made before BM25 existed (a dense-only shard): Asks keep working in the default hybrid mode,
    run dense and say so; bm25 asks are FAILED_PRECONDITION telling the user to re-ingest."""
    shard = tmp_path / "memory" / "shard"
    shard.mkdir(parents=True)
    qe.EdgeShard.create(
        str(shard), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine))
    ).close()
    old = start_system(tmp_path)
    try:
        old.rag.PutDocument(rag_pb2.PutDocumentRequest(doc_id="moves.md", text=MOVES))
        answer = old.rag.Ask(rag_pb2.AskRequest(question="Where is the spare key for the comms room?"), timeout=120)
        assert not answer.abstained and answer.citations[0].doc_id == "moves.md"
        assert answer.retrieval == common_pb2.RETRIEVAL_MODE_DENSE
        assert any("re-ingest" in w for w in answer.warnings)
        bm25 = rag_pb2.AskOptions(retrieval=common_pb2.RETRIEVAL_MODE_BM25)
        with pytest.raises(grpc.RpcError) as info:
            old.rag.Ask(rag_pb2.AskRequest(question="Where is the spare key?", options=bm25), timeout=120)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "re-ingest" in (info.value.details() or "")
    finally:
        old.close()
