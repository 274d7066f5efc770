"""SQuAD v1.1 dev as open-domain QA over all 2,067 paragraphs, through Rag.Ask: questions of the held-out articles
only (the reader and reranker never saw them), 400 sampled (25 in --quick).

Per question (Ask with include_passages; no cache, so every answer is computed): EM / F1 with SQuAD's
normalisation against all references (an abstention scores 0), whether the gold paragraph is among the retrieved
chunks (retrieve_k, 20) and among those read (read_k, 5) after reranking, citation accuracy (the cited chunk is the
gold paragraph or its quote contains a reference answer), and the abstention rate. Also the first stage alone per
retrieval mode (Memory.Search, no reranker): gold paragraph at rank 1, in the top 5 and in the top 20.

`WIKIMEM_BENCH_READER` picks the reader backend (AskOptions.reader; "" = the configured one).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from bench import squad
from bench.common import Context, SuiteResult, Target, latency_summary, progress
from bench.peers import MODES, Peers, parallel_map
from wikimem_contract.v1 import rag_pb2

TITLE = "Reading quality: SQuAD v1.1 dev open-domain QA over all 2,067 paragraphs (held-out articles)"

#: Published: the same reader task given the gold paragraph (not open-domain), from ../shared/data/README.md.
PUBLISHED = "distilbert-base-cased-distilled-squad given the gold paragraph: EM 79.6 / F1 87.0"
TOP_K = (1, 5, 20)


def run(ctx: Context) -> SuiteResult:
    data = squad.load(ctx)
    n_questions, _ = squad.sample_sizes(ctx)
    questions = squad.reading_sample(data, n_questions, ctx.seed)
    reader = os.environ.get("WIKIMEM_BENCH_READER", "")
    system = squad.system(ctx)
    peers = system.peers

    def ask(q: squad.Question) -> tuple[rag_pb2.AskResponse, float]:
        options = rag_pb2.AskOptions(include_passages=True, no_cache=True, no_qa_memory=True, reader=reader)
        start = time.perf_counter()
        response = peers.rag.Ask(rag_pb2.AskRequest(question=q.question, options=options), timeout=600)
        return response, (time.perf_counter() - start) * 1000

    answered = parallel_map(ask, questions, "ask SQuAD (Rag.Ask)", total=len(questions), workers=2)

    em, f1, retrieved, read, cited_ok, abstained, latencies = [], [], [], [], [], [], []
    modes_seen: set[int] = set()
    for q, (response, ms) in zip(questions, answered, strict=True):
        latencies.append(ms)
        modes_seen.add(int(response.retrieval))
        docs = [p.chunk.doc_id for p in response.passages]
        retrieved.append(q.gold in docs)
        read.append(q.gold in docs[:5])
        abstained.append(response.abstained)
        if response.abstained:
            em.append(0.0)
            f1.append(0.0)
            continue
        em.append(squad.exact_match(response.answer, q.answers))
        f1.append(squad.f1_score(response.answer, q.answers))
        c = response.citations[0] if response.citations else None
        cited_ok.append(c is not None and (c.doc_id == q.gold or any(squad.mentions(c.quote, a) for a in q.answers)))

    first_stage = search_by_mode(peers, questions)
    figures: dict[str, Any] = {
        "questions": len(questions),
        "paragraphs": system.documents,
        "chunks": system.chunks,
        "ingest_s": system.ingest_s,
        "em": round(100 * statistics.fmean(em), 2),
        "f1": round(100 * statistics.fmean(f1), 2),
        "gold_in_retrieved": round(statistics.fmean(retrieved), 4),
        "gold_in_read": round(statistics.fmean(read), 4),
        "citation_accuracy": round(statistics.fmean(cited_ok), 4) if cited_ok else None,
        "abstention_rate": round(statistics.fmean(abstained), 4),
        "reader": reader or "configured",
        "retrieval_mode": ",".join(name for name, v in MODES.items() if v in modes_seen) or "unreported",
        **latency_summary(latencies, "ask"),
        **first_stage,
    }
    return SuiteResult(
        figures=figures,
        markdown=markdown(figures, ctx.quick),
        targets=[Target("em", ">=", 60.0)],
        notes=[
            "EM/F1 count abstentions as wrong; citation accuracy is over answered questions",
            "asks ran 2 at a time; the latency figures include that queueing",
        ],
    )


def search_by_mode(peers: Peers, questions: list[squad.Question]) -> dict[str, float]:
    """Gold paragraph at rank 1 / in the top 5 / top 20 of Memory.Search alone, per retrieval mode."""
    vectors = peers.embed([q.question for q in questions])
    hits: dict[str, dict[int, list[bool]]] = {mode: {k: [] for k in TOP_K} for mode in MODES}
    for q, vector in progress(list(zip(questions, vectors, strict=True)), "search SQuAD by mode", len(questions)):
        for mode in MODES:
            response = peers.search(mode, q.question, vector, max(TOP_K))
            docs = list(dict.fromkeys(h.chunk.doc_id for h in response.hits))
            for k in TOP_K:
                hits[mode][k].append(q.gold in docs[:k])
    return {
        f"search_{mode}_gold_at_{k}": round(statistics.fmean(v), 4) for mode in MODES for k, v in hits[mode].items()
    }


def markdown(f: dict[str, Any], quick: bool) -> str:
    scope = (
        f"{f['questions']} held-out questions, {f['paragraphs']} paragraphs ingested "
        f"({f['chunks']} chunks, {f['ingest_s']} s)"
    )
    if quick:
        scope += " — quick: gold paragraphs plus 120 others, so retrieval is easier than in the full run"
    citation = f"{f['citation_accuracy']:.3f}" if f["citation_accuracy"] is not None else "n/a"
    lines = [
        scope + f"; reader: {f['reader']}, retrieval: {f['retrieval_mode']}.",
        "",
        "| EM | F1 | gold in retrieved 20 | gold in read 5 | citation accuracy | abstained | ask p50 ms | ask p99 ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| {f['em']:.1f} | {f['f1']:.1f} | {f['gold_in_retrieved']:.3f} | {f['gold_in_read']:.3f} | {citation} | "
        f"{f['abstention_rate']:.3f} | {f['ask_p50_ms']:.0f} | {f['ask_p99_ms']:.0f} |",
        "",
        "First stage alone (Memory.Search, no reranker): gold paragraph in the top k",
        "",
        "| mode | @1 | @5 | @20 |",
        "|---|---|---|---|",
    ]
    for mode in MODES:
        cells = " | ".join(f"{f[f'search_{mode}_gold_at_{k}']:.3f}" for k in TOP_K)
        lines.append(f"| {mode} | {cells} |")
    lines += ["", f"Reference (closed setting, gold paragraph given): {PUBLISHED}."]
    return "\n".join(lines)
