"""Memory.Search in bm25 and hybrid mode over gRPC with the real embedder, on both backends: a rare code word that
only the lexical index finds, ACLs and collections, replace / delete visibility, revisions never mixed during
writes, mode selection and errors, and a data directory made before lexical retrieval existed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import qdrant_edge as qe

from wikimem_contract.v1 import common_pb2, memory_pb2
from wikimem_memory.servicer import MODES

from .conftest import RunningMemory
from .test_memory_service import LAPTOP, LEAVE, code_of, embed, upsert

DENSE, BM25, HYBRID = common_pb2.RETRIEVAL_MODE_DENSE, common_pb2.RETRIEVAL_MODE_BM25, common_pb2.RETRIEVAL_MODE_HYBRID

#: Eight look-alike inventory pages; only one mentions the part code the question asks about.
PARTS = {
    f"parts/{i}.md": f"# Spare part shelf {i}\n\nThe replacement {kind} for the packaging line is kept on shelf {i} "
    f"of the east warehouse. Order new stock through the facilities portal when fewer than {i + 2} remain."
    for i, kind in enumerate(["belt", "motor", "sensor", "fuse", "roller", "gasket", "valve", "bearing"])
}
CODE_PAGE = (
    "# Spare part shelf 9\n\nThe replacement controller board (part number QZ-7731-K) for the packaging line is "
    "kept on shelf 9 of the east warehouse. Order new stock through the facilities portal when fewer than 3 remain."
)
CODE_QUESTION = "Where is QZ-7731-K kept?"


def search(
    mem: RunningMemory,
    addr: str,
    text: str,
    mode: int,
    top_k: int = 5,
    with_vector: bool = True,
    **flt: object,
) -> memory_pb2.SearchResponse:
    return mem.stub.Search(
        memory_pb2.SearchRequest(
            query=embed(addr, text) if with_vector else None,
            query_text=text,
            mode=mode,  # type: ignore[arg-type]
            top_k=top_k,
            filter=common_pb2.Filter(**flt),  # type: ignore[arg-type]
        )
    )


def docs(res: memory_pb2.SearchResponse) -> list[str]:
    return [h.chunk.doc_id for h in res.hits]


def test_a_rare_code_word_is_found_by_bm25_and_hybrid(memory: RunningMemory, embedder_addr: str) -> None:
    for doc_id, text in PARTS.items():
        upsert(memory, doc_id, text)
    upsert(memory, "parts/9.md", CODE_PAGE)
    bm25 = search(memory, embedder_addr, CODE_QUESTION, BM25, with_vector=False)
    assert docs(bm25)[0] == "parts/9.md" and bm25.mode == BM25  # the only page with the code's terms
    assert bm25.hits[0].score > 2 * bm25.hits[1].score > 0  # the others share only "kept"
    assert {"search_lexical", "total"} <= set(bm25.timings_ms)
    hybrid = search(memory, embedder_addr, CODE_QUESTION, HYBRID, top_k=3)
    assert hybrid.mode == HYBRID and docs(hybrid)[0] == "parts/9.md"
    # Fused scores (convex: weighted min-max normalised scores) lie in [0, 1]; the code page tops both lists here.
    assert 0 <= hybrid.hits[-1].score <= hybrid.hits[0].score <= 1 + 1e-6
    dense = search(memory, embedder_addr, CODE_QUESTION, DENSE, top_k=9)
    assert dense.mode == DENSE and sorted(docs(dense)) == sorted([*PARTS, "parts/9.md"])
    # The default (hybrid here) resolves and is reported.
    default = search(memory, embedder_addr, CODE_QUESTION, common_pb2.RETRIEVAL_MODE_UNSPECIFIED, top_k=3)
    assert default.mode == MODES[memory.core.config.retrieval_mode] and docs(default)[0] == "parts/9.md"


def test_hits_carry_their_cosine_in_dense_and_hybrid_mode_only(memory: RunningMemory, embedder_addr: str) -> None:
    """The Ask orders passages by reranker score + a weight x this cosine, so it must be the real cosine of the
    query and chunk vectors in both modes, and absent (not 0) where none was computed."""
    for doc_id, text in PARTS.items():
        upsert(memory, doc_id, text)
    upsert(memory, "parts/9.md", CODE_PAGE)
    dense = search(memory, embedder_addr, CODE_QUESTION, DENSE, top_k=9)
    assert all(h.HasField("dense_score") and h.dense_score == h.score for h in dense.hits)
    cosine = {h.chunk.chunk_id: h.dense_score for h in dense.hits}
    hybrid = search(memory, embedder_addr, CODE_QUESTION, HYBRID, top_k=9)
    assert {h.chunk.chunk_id for h in hybrid.hits} == set(cosine)
    for h in hybrid.hits:  # every chunk is among the dense candidates here: its own cosine, not the fused score
        assert abs(h.dense_score - cosine[h.chunk.chunk_id]) < 1e-6
    assert any(abs(h.dense_score - h.score) > 1e-3 for h in hybrid.hits)
    bm25 = search(memory, embedder_addr, CODE_QUESTION, BM25, with_vector=False)
    assert bm25.hits and not any(h.HasField("dense_score") for h in bm25.hits)


def test_acl_and_collections_hold_in_every_mode(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "salaries", "# Salaries\n\nThe salary bands XR-17 for 2024 are secret and listed here.", acl=["hr"])
    upsert(memory, "leave", LEAVE)
    upsert(memory, "leave", "# Leave in the other wiki\n\nThirty days of leave, band XR-17.", collection="eu")
    q = "salary bands XR-17"
    for mode in (BM25, HYBRID):
        outsider = search(memory, embedder_addr, q, mode, top_k=10, groups=["it"])
        assert "salaries" not in docs(outsider)
        assert {h.chunk.collection for h in outsider.hits} <= {"default"}
        insider = search(memory, embedder_addr, q, mode, top_k=10, groups=["it", "hr"])
        assert docs(insider)[0] == "salaries"
        eu = search(memory, embedder_addr, q, mode, top_k=10, collection="eu")
        assert docs(eu) == ["leave"] and eu.hits[0].chunk.collection == "eu"
        only = search(memory, embedder_addr, "annual leave", mode, top_k=10, doc_ids=["leave"])
        assert docs(only) == ["leave"] and "13 days" in only.hits[0].chunk.text


def test_replace_and_delete_are_visible_at_once_in_every_mode(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "laptops", LAPTOP)
    upsert(memory, "leave", LEAVE)
    v2 = LAPTOP.replace("a MacBook", "a Framework laptop").replace("ThinkPad", "Pinebook")
    assert upsert(memory, "laptops", v2).document.revision == 2
    for mode in (BM25, HYBRID):
        old = search(memory, embedder_addr, "MacBook ThinkPad", mode, top_k=10)
        assert all(h.chunk.revision == 2 for h in old.hits if h.chunk.doc_id == "laptops")
        assert all("MacBook" not in h.chunk.text and "ThinkPad" not in h.chunk.text for h in old.hits)
        new = search(memory, embedder_addr, "Framework laptop Pinebook", mode, top_k=10)
        assert docs(new)[0] == "laptops" and new.hits[0].chunk.revision == 2
        assert len({h.chunk.chunk_id for h in new.hits}) == len(new.hits)  # no duplicates
    assert memory.stub.Delete(memory_pb2.DeleteRequest(doc_id="laptops")).revision == 2
    for mode in (BM25, HYBRID):
        gone = search(memory, embedder_addr, "Framework laptop Pinebook", mode, top_k=10)
        assert "laptops" not in docs(gone)
    assert search(memory, embedder_addr, "Pinebook", BM25).hits == []


def test_hybrid_searches_never_mix_revisions_during_writes(memory: RunningMemory, embedder_addr: str) -> None:
    body = "\n\n".join(f"## Part {i}\n\n" + f"Fact {i} about the travel policy and per diem. " * 30 for i in range(6))
    n = upsert(memory, "travel", "# Travel\n\n" + body).document.chunk_count
    query = embed(embedder_addr, "travel policy per diem")
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():  # metadata-only changes: a new revision each time, no re-embedding
            i += 1
            upsert(memory, "travel", "# Travel\n\n" + body, metadata={"v": str(i)})

    def reader(mode: int) -> Callable[[], None]:
        def run() -> None:
            while not stop.is_set():
                res = memory.stub.Search(
                    memory_pb2.SearchRequest(
                        query=query,
                        query_text="travel policy per diem",
                        mode=mode,
                        top_k=50,
                        filter=common_pb2.Filter(doc_ids=["travel"]),
                    )
                )
                revisions = {h.chunk.revision for h in res.hits}
                ordinals = sorted(h.chunk.ordinal for h in res.hits)
                if len(revisions) != 1 or ordinals != list(range(n)):
                    errors.append(f"mode {mode}: revisions {revisions}, ordinals {ordinals}")

        return run

    def guarded(loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except Exception as exc:
                errors.append(repr(exc))
                stop.set()

        return run

    threads = [threading.Thread(target=guarded(f)) for f in (writer, reader(BM25), reader(HYBRID), reader(HYBRID))]
    for t in threads:
        t.start()
    stop.wait(3.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert memory.stub.Get(memory_pb2.GetRequest(doc_id="travel")).document.revision > 3


def test_modes_need_what_they_use(memory: RunningMemory, embedder_addr: str) -> None:
    upsert(memory, "leave", LEAVE)
    vector = embed(embedder_addr, "annual leave")
    cases = [
        (memory_pb2.SearchRequest(query=vector, mode=BM25), "query_text"),
        (memory_pb2.SearchRequest(query=vector, query_text="  ", mode=HYBRID), "query_text"),
        (memory_pb2.SearchRequest(query_text="annual leave", mode=HYBRID), "expected [1, 384]"),
        (memory_pb2.SearchRequest(query_text="annual leave", mode=DENSE), "expected [1, 384]"),
        (memory_pb2.SearchRequest(query=vector, query_text="leave", mode=9), "unknown"),  # type: ignore[arg-type]
    ]
    for request, fragment in cases:
        code, msg = code_of(lambda r=request: memory.stub.Search(r))  # type: ignore[misc]
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in msg, (code, msg)
    # No mode and no text (an older caller): dense, whatever the default.
    old_caller = memory.stub.Search(memory_pb2.SearchRequest(query=vector))
    assert old_caller.mode == DENSE and docs(old_caller) == ["leave"]
    # bm25 needs no vector; stopwords-only text finds nothing rather than everything.
    assert docs(memory.stub.Search(memory_pb2.SearchRequest(query_text="annual leave", mode=BM25))) == ["leave"]
    assert memory.stub.Search(memory_pb2.SearchRequest(query_text="the of and", mode=BM25)).hits == []


def test_a_data_directory_from_before_lexical_retrieval_keeps_serving(
    tmp_path: Path, memory_factory: Callable[..., RunningMemory], embedder_addr: str
) -> None:
    """Its shard has only dense vectors: dense works, hybrid falls back to dense with a warning, bm25 says to
    re-ingest (FAILED_PRECONDITION), and writes go on; nothing is rewritten or lost."""
    shard = tmp_path / "memory" / "shard"
    shard.mkdir(parents=True)
    dense_only = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine))
    qe.EdgeShard.create(str(shard), dense_only).close()
    mem = memory_factory("edge")
    assert not mem.core.store.lexical
    upsert(mem, "leave", LEAVE)
    upsert(mem, "laptops", LAPTOP)
    dense = search(mem, embedder_addr, "annual leave days", DENSE)
    assert docs(dense)[0] == "leave" and not dense.warnings
    hybrid = search(mem, embedder_addr, "annual leave days", HYBRID)
    assert hybrid.mode == DENSE and docs(hybrid) == docs(dense)
    assert len(hybrid.warnings) == 1 and "re-ingest" in hybrid.warnings[0]
    np.testing.assert_allclose([h.score for h in hybrid.hits], [h.score for h in dense.hits])
    code, msg = code_of(lambda: search(mem, embedder_addr, "annual leave days", BM25))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "re-ingest" in msg and "WIKIMEM_DATA" in msg
    assert mem.stub.Stats(memory_pb2.StatsRequest()).documents == 2
