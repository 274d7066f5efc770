"""The same 18F handbook questions through a Haystack 2 pipeline — what a team would build instead — next to wikimem.

Peer (haystack-ai, in one process): Markdown pages (front matter dropped) → DocumentSplitter (200 words, 40 overlap,
like wikimem's chunks) → SentenceTransformersDocumentEmbedder (the same all-MiniLM-L6-v2 files, title embedded with
the text) → InMemoryDocumentStore; per question SentenceTransformersTextEmbedder → InMemoryEmbeddingRetriever (top 5)
→ ExtractiveReader with **wikimem's own reader weights** (models/reader/model.onnx is fp32; its initializers are
rebuilt into a transformers BertForQuestionAnswering, outputs equal to 1e-5). The peer has no reranker: our
cross-encoder puts a linear head on [CLS] without BERT's pooler, which transformers' sequence-classification class
(and so Haystack's rankers) cannot load, and no other cross-encoder weights can be fetched here. wikimem runs as its
five services (retrieve 20 in its default retrieval mode → rerank → read 5), asked through the client with
`no_cache`.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from bench import handbook
from bench.common import Context, Skip, SuiteResult, latency_summary, percentile, progress, running_system
from bench.service import load_average, load_note

TITLE = "the same handbook questions through a Haystack 2 pipeline: quality and latency side by side"

_FRONT = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)
_TITLE = re.compile(r"^title:\s*(.+)$", re.M)


def _haystack_pipelines(reader_dir: str, embed_dir: str) -> tuple[Any, Any, Any]:
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    try:
        from haystack import Pipeline
        from haystack.components.embedders import (
            SentenceTransformersDocumentEmbedder,
            SentenceTransformersTextEmbedder,
        )
        from haystack.components.preprocessors import DocumentSplitter
        from haystack.components.readers import ExtractiveReader
        from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
        from haystack.components.writers import DocumentWriter
        from haystack.document_stores.in_memory import InMemoryDocumentStore
    except ImportError as exc:
        raise Skip("haystack-ai is not installed: `pip install -e '.[bench]'` (make bench does)") from exc
    store = InMemoryDocumentStore()
    indexing = Pipeline()
    indexing.add_component("splitter", DocumentSplitter(split_by="word", split_length=200, split_overlap=40))
    indexing.add_component(
        "embedder",
        SentenceTransformersDocumentEmbedder(
            model=embed_dir, local_files_only=True, meta_fields_to_embed=["title"], progress_bar=False
        ),
    )
    indexing.add_component("writer", DocumentWriter(document_store=store))
    indexing.connect("splitter", "embedder")
    indexing.connect("embedder", "writer")
    query = Pipeline()
    query.add_component(
        "embedder", SentenceTransformersTextEmbedder(model=embed_dir, local_files_only=True, progress_bar=False)
    )
    query.add_component("retriever", InMemoryEmbeddingRetriever(document_store=store, top_k=5))
    query.add_component("reader", ExtractiveReader(model=reader_dir, top_k=1, no_answer=True))
    query.connect("embedder.embedding", "retriever.query_embedding")
    query.connect("retriever.documents", "reader.documents")
    return indexing, query, store


def run(ctx: Context) -> SuiteResult:
    load_start = load_average()
    import torch

    from bench.onnx_weights import base_model_dir, write_hf_folder
    from wikimem.client import WikimemClient
    from wikimem_common.modeldir import model_dir

    torch.set_num_threads(os.cpu_count() or 1)
    docs = handbook.pages(ctx)
    questions = handbook.questions(ctx)
    reader_onnx = model_dir("reader", "WIKIMEM_READER_MODEL_DIR") / "model.onnx"
    reader_dir = write_hf_folder(reader_onnx, "reader", base_model_dir(), ctx.scratch("peer-hf-reader"))
    figures: dict[str, Any] = {"questions": len(questions), "pages": len(docs)}

    # wikimem, through its services
    wm_ms: list[float] = []
    wm_ok = [0, 0]
    with running_system(ctx, "peer-wikimem") as address:
        stats = handbook.ingest(address, docs)
        with WikimemClient(address, timeout=120) as client:
            client.ask(questions[0].question, no_cache=True)  # warm-up
            for q in progress(questions, "ask (wikimem)"):
                t0 = time.perf_counter()
                a = client.ask(q.question, no_cache=True)
                wm_ms.append((time.perf_counter() - t0) * 1000.0)
                answer_ok, page_ok = handbook.correct(q, a.answer, a.citations[0].doc_id if a.citations else None)
                wm_ok[0] += answer_ok
                wm_ok[1] += page_ok

    # Haystack
    from haystack import Document

    indexing, query, store = _haystack_pipelines(str(reader_dir), str(base_model_dir()))
    sources = []
    for page in docs:
        title = _TITLE.search(page.text)
        body = _FRONT.sub("", page.text, count=1)
        if body.strip():
            sources.append(
                Document(content=body, meta={"doc_id": page.doc_id, "title": title.group(1) if title else ""})
            )
    t0 = time.perf_counter()
    indexing.warm_up()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    indexing.run({"splitter": {"documents": sources}})
    hs_ingest_s = time.perf_counter() - t0
    hs_chunks = store.count_documents()
    query.warm_up()
    query.run({"embedder": {"text": questions[0].question}, "reader": {"query": questions[0].question}})
    hs_ms: list[float] = []
    hs_ok = [0, 0]
    for q in progress(questions, "ask (haystack)"):
        t0 = time.perf_counter()
        out = query.run({"embedder": {"text": q.question}, "reader": {"query": q.question}})
        hs_ms.append((time.perf_counter() - t0) * 1000.0)
        answers = out["reader"]["answers"]
        best = answers[0] if answers else None
        text = best.data if best is not None and best.data else ""
        cited = best.document.meta.get("doc_id") if best is not None and best.document is not None else None
        answer_ok, page_ok = handbook.correct(q, text, cited)
        hs_ok[0] += answer_ok
        hs_ok[1] += page_ok

    n = len(questions)
    figures.update(latency_summary(wm_ms, "wikimem_ask"))
    figures.update(latency_summary(hs_ms, "haystack_ask"))
    figures.update(
        wikimem_answer_accuracy=round(wm_ok[0] / n, 3),
        wikimem_page_accuracy=round(wm_ok[1] / n, 3),
        haystack_answer_accuracy=round(hs_ok[0] / n, 3),
        haystack_page_accuracy=round(hs_ok[1] / n, 3),
        wikimem_ingest_s=round(stats.seconds, 1),
        wikimem_ingest_chunks=stats.chunks,
        haystack_ingest_s=round(hs_ingest_s, 1),
        haystack_ingest_chunks=hs_chunks,
        haystack_model_load_s=round(warm_s, 1),
        ask_p50_ratio_haystack_over_wikimem=round(percentile(hs_ms, 50) / percentile(wm_ms, 50), 2),
    )
    md = [
        f"18F handbook ({len(docs)} pages), {n} hand-written questions (bench/handbook.py), asked once each, cold "
        "(wikimem with `no_cache`; Haystack has no answer cache). Wall time per question at the caller.",
        "",
        "| system | pipeline | answer right | cited page right | ask p50 ms | ask p99 ms | ingest | chunks |",
        "|---|---|---|---|---|---|---|---|",
        f"| wikimem (5 services, gRPC) | top 20 (default retrieval mode) → int8 cross-encoder → reader on top 5 | "
        f"{wm_ok[0]}/{n} | "
        f"{wm_ok[1]}/{n} | {percentile(wm_ms, 50):.0f} | {percentile(wm_ms, 99):.0f} | {stats.seconds:.0f} s | "
        f"{stats.chunks} |",
        f"| Haystack {_haystack_version()} (one process, PyTorch) | dense top 5 → ExtractiveReader (same reader "
        f"weights) | {hs_ok[0]}/{n} | {hs_ok[1]}/{n} | {percentile(hs_ms, 50):.0f} | {percentile(hs_ms, 99):.0f} | "
        f"{hs_ingest_s:.0f} s | {hs_chunks} |",
        "",
        "Same embedding model on both sides (wikimem: our dynamic int8 ONNX export; Haystack: sentence-transformers "
        "fp32) and the same reader weights; wikimem adds its reranker and its own chunking (headings, exact offsets). "
        "Ingest: wikimem through Rag.PutDocument with 4 writers; Haystack split + embed + write in one call.",
    ]
    return SuiteResult(figures=figures, markdown="\n".join(md), notes=[load_note(load_start)])


def _haystack_version() -> str:
    from importlib.metadata import version

    return version("haystack-ai")
