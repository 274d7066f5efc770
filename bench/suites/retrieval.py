"""BEIR SciFact (test qrels) through the running services: nDCG@10 and Recall@100 for BM25, dense and hybrid
retrieval (Memory.Search in each mode), each with and without the reranker (Reranker.Rerank of the top chunks).

Each abstract is ingested as one document through Rag.PutDocument (title as the title, abstract as the text; the
memory chunks long abstracts, so a document is ranked by its best chunk). Reranking works as the product's
pipeline does: the first N chunks of a ranking are rescored by the cross-encoder ("title > heading. text") and
reordered, the rest keep their order; pair scores are cached across modes. N defaults to 30 (10 in --quick),
`WIKIMEM_BENCH_RERANK_N` overrides it (the int8 reranker costs ~17 ms a pair on 2 cores).

--quick: 30 test queries over their judged abstracts plus 150 others.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Context, SuiteResult, Target, latency_summary, progress, write_json
from bench.ir import first_occurrence, ndcg_at, recall_at
from bench.peers import MODES, Peers, parallel_map, system_with_peers
from wikimem_contract.v1 import memory_pb2
from wikimem_memory.config import MemoryConfig
from wikimem_orchestrator.config import OrchestratorConfig
from wikimem_orchestrator.pipeline import rerank_text

TITLE = "Retrieval quality: BEIR SciFact test — BM25, dense, hybrid, each with and without the reranker"

#: nDCG@10 on SciFact test, from ../shared/data/README.md.
PUBLISHED = [
    ("BM25 (BEIR paper)", 0.665),
    ("BM25 + cross-encoder rerank (BEIR paper)", 0.688),
    ("all-MiniLM-L6-v2 (MTEB)", 0.645),
    ("bge-small-en-v1.5 (MTEB)", 0.713),
    ("e5-small-v2 (MTEB)", 0.689),
]
#: Plain scripts on this kind of machine (same README): stemmed bm25s, int8 MiniLM exact cosine, their RRF.
SCRIPTS = [
    ("stemmed BM25 (bm25s script)", 0.686),
    ("MiniLM int8 cosine (script)", 0.647),
    ("RRF of both (script)", 0.715),
]

QUICK_QUERIES = 30
QUICK_DISTRACTORS = 150
#: Documents per ranking (Recall@100); chunks asked for, so that multi-chunk documents still leave 100 documents.
DEPTH = 100
CHUNK_DEPTH = 200


@dataclass(frozen=True)
class Doc:
    title: str
    text: str


def load(root: Path) -> tuple[dict[str, Doc], dict[str, str], dict[str, dict[str, int]]]:
    corpus: dict[str, Doc] = {}
    with (root / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            corpus[str(row["_id"])] = Doc(str(row.get("title", "")), str(row["text"]))
    queries: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            queries[str(row["_id"])] = str(row["text"])
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open(encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            qid, doc, score = line.split()
            qrels.setdefault(qid, {})[doc] = int(score)
    return corpus, queries, qrels


def rerank_n(quick: bool) -> int:
    raw = os.environ.get("WIKIMEM_BENCH_RERANK_N", "")
    return int(raw) if raw else (10 if quick else 30)


@dataclass
class Ranking:
    """One query's chunk ranking from one mode (chunk ids, their documents, their passages for the reranker)."""

    chunk_ids: list[str]
    doc_ids: list[str]
    passages: list[str]
    #: The query-chunk cosine of each hit (None in bm25 mode), for the pipeline's ranking (ranking.py).
    cosines: list[float | None]

    def docs(self) -> list[str]:
        return first_occurrence(self.doc_ids)[:DEPTH]

    def reranked_docs(self, scores: dict[str, float], n: int, dense_weight: float = 0.0) -> list[str]:
        """The first `n` chunks reordered as Rag.Ask orders them: reranker score + `dense_weight` x cosine (the
        cosine term only where every one of them has a cosine), the rest in their order."""
        size = min(n, len(self.chunk_ids))
        cosines = self.cosines[:size]
        weight = dense_weight if all(c is not None for c in cosines) else 0.0

        def key(i: int) -> float:
            return scores[self.chunk_ids[i]] + weight * (cosines[i] or 0.0)

        head = sorted(range(size), key=lambda i: -key(i))
        order = head + list(range(len(head), len(self.chunk_ids)))
        return first_occurrence([self.doc_ids[i] for i in order])[:DEPTH]


def ranking(response: memory_pb2.SearchResponse) -> Ranking:
    chunks = [h.chunk for h in response.hits]
    return Ranking(
        [c.chunk_id for c in chunks],
        [c.doc_id for c in chunks],
        [rerank_text(c, True) for c in chunks],
        [h.dense_score if h.HasField("dense_score") else None for h in response.hits],
    )


def run(ctx: Context) -> SuiteResult:
    root = ctx.dataset("beir-scifact")
    corpus, queries, qrels = load(root)
    rng = random.Random(ctx.seed)
    qids = sorted(qrels)
    docs = sorted(corpus)
    if ctx.quick:
        qids = sorted(rng.sample(qids, QUICK_QUERIES))
        judged = {d for q in qids for d in qrels[q] if d in corpus}
        docs = sorted(judged | set(rng.sample(sorted(set(corpus) - judged), QUICK_DISTRACTORS)))
    n_rerank = rerank_n(ctx.quick)
    figures: dict[str, Any] = {
        "queries": len(qids),
        "documents": len(docs),
        "rerank_n": n_rerank,
        "hybrid_fusion": fusion(),
        "rerank_dense_weight": dense_weight(),
    }
    runs: dict[str, dict[str, Ranking]] = {mode: {} for mode in MODES}
    latency: dict[str, list[float]] = {mode: [] for mode in MODES}
    pair_scores: dict[str, dict[str, float]] = {q: {} for q in qids}

    with system_with_peers(ctx, "retrieval") as peers:
        start = time.perf_counter()
        parallel_map(
            lambda d: peers.put(d, corpus[d].text, title=corpus[d].title),
            docs,
            "ingest SciFact",
            total=len(docs),
        )
        ingest_s = time.perf_counter() - start
        chunks = int(peers.memory.Stats(memory_pb2.StatsRequest()).chunks)
        figures.update(ingest_s=round(ingest_s, 1), chunks=chunks, ingest_chunks_per_s=round(chunks / ingest_s, 1))
        vectors = dict(zip(qids, peers.embed([queries[q] for q in qids]), strict=True))
        for q in progress(qids, "search (bm25, dense, hybrid)", total=len(qids)):
            for mode in MODES:
                t0 = time.perf_counter()
                response = peers.search(mode, queries[q], vectors[q], CHUNK_DEPTH)
                latency[mode].append((time.perf_counter() - t0) * 1000)
                runs[mode][q] = ranking(response)
        start = time.perf_counter()
        pairs = rerank_all(peers, qids, queries, runs, pair_scores, n_rerank)
        figures["rerank_pairs"] = pairs
        figures["rerank_s"] = round(time.perf_counter() - start, 1)

    for mode in MODES:
        plain = [runs[mode][q].docs() for q in qids]
        reranked = [runs[mode][q].reranked_docs(pair_scores[q], n_rerank, figures["rerank_dense_weight"]) for q in qids]
        alone = [runs[mode][q].reranked_docs(pair_scores[q], n_rerank) for q in qids]
        for name, ranked in ((mode, plain), (f"{mode}_rerank", reranked), (f"{mode}_ce", alone)):
            figures[f"ndcg10_{name}"] = round(mean(ndcg_at(r, qrels[q]) for q, r in zip(qids, ranked, strict=True)), 4)
            figures[f"recall100_{name}"] = round(
                mean(recall_at(r, qrels[q], DEPTH) for q, r in zip(qids, ranked, strict=True)), 4
            )
        figures.update(latency_summary(latency[mode], f"search_{mode}"))
    configs = [name for mode in MODES for name in (mode, f"{mode}_rerank", f"{mode}_ce")]
    best = max(configs, key=lambda name: float(figures[f"ndcg10_{name}"]))
    figures["best_config"] = best
    figures["ndcg10"] = figures[f"ndcg10_{best}"]
    write_json(ctx.out / "retrieval-runs.json", {mode: {q: r.docs() for q, r in runs[mode].items()} for mode in MODES})

    plot = plot_bars(ctx, figures, configs)
    return SuiteResult(
        figures=figures,
        markdown=markdown(figures, configs, n_rerank, ctx.quick),
        plots=[plot] if plot else [],
        targets=[Target("ndcg10", ">=", 0.72)],
        notes=[f"best configuration: {best}"],
    )


def rerank_all(
    peers: Peers,
    qids: Sequence[str],
    queries: dict[str, str],
    runs: dict[str, dict[str, Ranking]],
    scores: dict[str, dict[str, float]],
    n: int,
) -> int:
    """Score every (query, chunk) pair among the first `n` chunks of any mode once; returns the pairs scored."""
    work: list[tuple[str, list[str], list[str]]] = []
    for q in qids:
        wanted: dict[str, str] = {}
        for mode in MODES:
            r = runs[mode][q]
            for chunk_id, passage in list(zip(r.chunk_ids, r.passages, strict=True))[:n]:
                wanted.setdefault(chunk_id, passage)
        work.append((q, list(wanted), list(wanted.values())))

    def score(item: tuple[str, list[str], list[str]]) -> int:
        q, ids, passages = item
        if ids:
            scores[q].update(zip(ids, peers.rerank(queries[q], passages), strict=True))
        return len(ids)

    return sum(parallel_map(score, work, f"rerank top {n} chunks", total=len(work), workers=2))


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else float("nan")


LABELS = {"bm25": "BM25", "dense": "dense", "hybrid": "hybrid"}


def fusion() -> str:
    """The memory's hybrid fusion as the services started here configure it (they inherit this environment)."""
    name = os.environ.get("WIKIMEM_HYBRID_FUSION", "") or "convex"
    if name == "rrf":
        return f"rrf, k = {os.environ.get('WIKIMEM_RRF_K', '') or 60}"
    weight = os.environ.get("WIKIMEM_HYBRID_DENSE_WEIGHT", "") or MemoryConfig.hybrid_dense_weight
    return f"convex, dense weight {weight}"


def dense_weight() -> float:
    """The orchestrator's WIKIMEM_RERANK_DENSE_WEIGHT as the services started here see it."""
    raw = os.environ.get("WIKIMEM_RERANK_DENSE_WEIGHT", "")
    return float(raw) if raw else OrchestratorConfig.rerank_dense_weight


def label(name: str) -> str:
    mode, _, rerank = name.partition("_")
    return LABELS[mode] + {"": "", "rerank": " + rerank (Ask's order)", "ce": " + reranker alone"}[rerank]


def markdown(figures: dict[str, Any], configs: list[str], n: int, quick: bool) -> str:
    scope = f"{figures['queries']} test queries over {figures['documents']} abstracts"
    if quick:
        scope += " (quick: judged abstracts plus distractors, so figures run high)"
    lines = [
        f"{scope}; {figures['chunks']} chunks ingested in {figures['ingest_s']} s "
        f"({figures['ingest_chunks_per_s']} chunks/s). Rerank: the first {n} chunks of each ranking, "
        f"{figures['rerank_pairs']} (query, chunk) pairs scored in {figures['rerank_s']} s. A document ranks by its "
        f"best chunk. Hybrid fusion: {fusion()}. The Ask's order: reranker score + "
        f"{figures['rerank_dense_weight']:g} x cosine (WIKIMEM_RERANK_DENSE_WEIGHT; 'reranker alone': 0).",
        "",
        "| configuration (wikimem, through the services) | nDCG@10 | Recall@100 | search p50 ms |",
        "|---|---|---|---|",
    ]
    for name in configs:
        mode = name.split("_")[0]
        latency = figures.get(f"search_{mode}_p50_ms", "")
        lines.append(
            f"| {label(name)} | {figures[f'ndcg10_{name}']:.3f} | {figures[f'recall100_{name}']:.3f} | "
            f"{latency if name == mode else ''} |"
        )
    lines += ["", "| reference (SciFact test) | nDCG@10 |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in PUBLISHED + SCRIPTS]
    lines += ["", "Published: BEIR paper and MTEB; scripts: ../shared/data/README.md (same machine kind, no services)."]
    return "\n".join(lines)


def plot_bars(ctx: Context, figures: dict[str, Any], configs: list[str]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ours = [(label(n), float(figures[f"ndcg10_{n}"])) for n in configs]
    refs = [(n, v) for n, v in PUBLISHED + SCRIPTS]
    names = [n for n, _ in ours + refs]
    values = [v for _, v in ours + refs]
    colors = ["#1f77b4" if "rerank" not in n else "#2ca02c" for n, _ in ours] + ["#bbbbbb"] * len(refs)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    bars = ax.barh(range(len(names))[::-1], values, color=colors)
    ax.set_yticks(range(len(names))[::-1], names, fontsize=8)
    ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.axvline(0.72, color="#d62728", linestyle="--", linewidth=1, label="target 0.72")
    ax.set_xlim(0.5, max(values) + 0.06)
    ax.set_xlabel("nDCG@10")
    title = "SciFact test nDCG@10: wikimem (blue, green = + reranker) vs references (grey)"
    ax.set_title(title + (" — quick sample" if ctx.quick else ""), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    name = "retrieval_scifact_ndcg10.png"
    fig.savefig(ctx.out / name, dpi=110)
    plt.close(fig)
    return name
