"""Tuning the reading stage on the wiki-qa **dev** split, offline (issue 11's levers, measured one at a time).

    python -m bench.wiki_qa.tune dump --tag base      # stacks + ingest + Ask(include_passages) -> .cache/wiki_qa/
    python -m bench.wiki_qa.tune sweep --tag base     # reader in-process over the dumped passages; decisions swept
    python -m bench.wiki_qa.tune sweep-sentences --tag base   # the sentence first decision (answering.py) swept

`dump` asks every dev question of every corpus through a running stack (the settings in the environment, e.g.
WIKIMEM_RETRIEVE_K) and keeps the reranked passages; `sweep` runs the extractive reader (this checkout's
models/reader, the environment's WIKIMEM_READER_* settings) over the top passages once per passage-text variant,
keeps every candidate span, then scores decision rules (passages read, reranker weight in the span choice,
abstention rule) without running a model again. Never reads the test split.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, Context, progress, running_system
from bench.wiki_qa import data
from bench.wiki_qa.score import answer_right, normalise

CACHE = ROOT / ".cache" / "wiki_qa"
MAX_READ = 8


def dump(tag: str, retrieve_k: int) -> Path:
    from bench import handbook
    from bench.wiki_qa.run import workload
    from wikimem.client import WikimemClient

    ctx = Context(quick=False, out=CACHE, data=data.DEFAULT_DATA_ROOT)
    records: list[dict[str, Any]] = []
    for corpus in data.corpora():
        w = workload(ctx, corpus, "dev")
        if not w.questions:
            continue
        with running_system(ctx, f"tune-{corpus}") as address:
            handbook.ingest(address, w.pages)
            with WikimemClient(address, timeout=120) as client:
                for q in progress(w.questions, f"dump ({corpus})"):
                    a = client.ask(
                        q.question, no_cache=True, no_qa_memory=True, include_passages=True, retrieve_k=retrieve_k
                    )
                    cited = a.citations[0] if a.citations else None
                    records.append(
                        {
                            "id": q.id,
                            "answer": a.answer,
                            "abstained": a.abstained,
                            "cited_doc": cited.doc_id if cited else None,
                            "quote": cited.quote if cited else "",
                            "passages": [
                                {
                                    "doc_id": p.doc_id,
                                    "title": p.title,
                                    "heading": p.heading,
                                    "text": p.text,
                                    "score": p.score,
                                }
                                for p in a.passages
                            ],
                        }
                    )
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{tag}.json"
    path.write_text(json.dumps(records))
    return path


@dataclass(frozen=True)
class Cand:
    score: float
    passage: int
    start: int
    end: int
    text: str


def _context(title: str, heading: str) -> str:
    return heading if heading.startswith(title) and heading else f"{title} > {heading}" if heading else title


def reader_candidates(records: list[dict[str, Any]], variant: str) -> dict[str, list[Cand]]:
    """Every question's candidate spans (best 20 per window) over its top MAX_READ passages."""
    from wikimem_common.markup import mask_markup
    from wikimem_reader.backend import Passage
    from wikimem_reader.config import ExtractiveConfig
    from wikimem_reader.extractive import ExtractiveReader

    reader = ExtractiveReader(ExtractiveConfig.from_env())
    out: dict[str, list[Cand]] = {}
    try:
        for r in progress(records, f"read ({variant})"):
            texts = []
            prefixes = []
            for p in r["passages"][:MAX_READ]:
                body = mask_markup(p["text"])
                prefix = ""
                if variant == "heading":
                    ctx = _context(p["title"].strip(), p["heading"].strip())
                    prefix = f"{ctx}.\n" if ctx else ""
                texts.append(prefix + body)
                prefixes.append(len(prefix))
            passages = [Passage(id=str(i), text=t, title="") for i, t in enumerate(texts)]
            windows = reader.windows(r["question"], passages)
            logits = reader.batcher(windows)
            cands = []
            for w, lg in zip(windows, logits, strict=True):
                for c in reader.candidates(w, lg):
                    start = c.start - prefixes[c.passage_index]
                    end = c.end - prefixes[c.passage_index]
                    if start < 0:
                        continue  # inside the heading prefix: not a span of the chunk
                    text = " ".join(texts[c.passage_index][c.start : c.end].split())
                    cands.append(Cand(c.score, c.passage_index, start, end, text))
            cands.sort(key=lambda c: c.score, reverse=True)
            out[r["id"]] = cands
    finally:
        reader.close()
    return out


@dataclass(frozen=True)
class Rule:
    read_k: int
    w_rerank: float  # span choice: reader score + w * reranker score of its passage
    alpha: float  # abstention: reader score + alpha * reranker score + beta * agreement < threshold
    beta: float
    threshold: float


def decide(r: dict[str, Any], cands: Sequence[Cand], rule: Rule) -> tuple[Cand | None, float]:
    """The chosen span (None: abstain) and its decision value."""
    rerank = [p["score"] for p in r["passages"][: rule.read_k]]
    pool = [c for c in cands if c.passage < rule.read_k]
    if not pool:
        return None, float("-inf")
    best = max(pool, key=lambda c: c.score + rule.w_rerank * rerank[c.passage])
    said = normalise(best.text)
    agree = len({c.passage for c in pool if c.passage != best.passage and c.score > 0 and normalise(c.text) == said})
    value = best.score + rule.alpha * rerank[best.passage] + rule.beta * agree
    return (best if value >= rule.threshold else None), value


def evaluate(
    records: list[dict[str, Any]], cands: dict[str, list[Cand]], questions: dict[str, data.WikiQuestion], rule: Rule
) -> dict[str, int]:
    from wikimem_orchestrator.citations import quote_span

    n = {"ans": 0, "una": 0, "right": 0, "page": 0, "abs_ans": 0, "abs_una": 0}
    for r in records:
        q = questions[r["id"]]
        chosen, _ = decide(r, cands[r["id"]], rule)
        if not q.answerable:
            n["una"] += 1
            n["abs_una"] += chosen is None
            continue
        n["ans"] += 1
        if chosen is None:
            n["abs_ans"] += 1
            continue
        p = r["passages"][chosen.passage]
        qs, qe = quote_span(p["text"], chosen.start, chosen.end)
        n["right"] += answer_right(q.answers, q.evidence, chosen.text, p["text"][qs:qe])
        n["page"] += p["doc_id"] in q.doc_ids
    return n


def fmt(rule: Rule, n: dict[str, int]) -> str:
    return (
        f"k={rule.read_k} w={rule.w_rerank:g} a={rule.alpha:g} b={rule.beta:g} t={rule.threshold:g}: "
        f"right {n['right']}/{n['ans']} page {n['page']}/{n['ans']} abstain-ans {n['abs_ans']}/{n['ans']} "
        f"abstain-una {n['abs_una']}/{n['una']}"
    )


def sweep(tag: str, variants: Sequence[str]) -> None:
    records = json.loads((CACHE / f"{tag}.json").read_text())
    questions = {
        q.id: q
        for corpus in data.corpora()
        if data.question_path(corpus).exists()
        for q in data.split(data.load_questions(data.question_path(corpus)), "dev")
    }
    records = [dict(r, question=questions[r["id"]].question) for r in records if r["id"] in questions]
    for variant in variants:
        path = CACHE / f"{tag}-{variant}-{os.environ.get('WIKIMEM_READER_VARIANT', 'fp32')}.cands.json"
        if path.exists():
            raw = json.loads(path.read_text())
            cands = {k: [Cand(**c) for c in v] for k, v in raw.items()}
        else:
            cands = reader_candidates(records, variant)
            path.write_text(json.dumps({k: [c.__dict__ for c in v] for k, v in cands.items()}))
        print(f"== variant {variant}")
        results = []
        for k, w, a, b, t in itertools.product(
            (3, 5, 8), (0.0, 0.1, 0.25, 0.5), (0.0, 0.25, 0.5), (0.0, 1.0), (-2.0, 0.0, 1.0, 2.0, 3.0, 3.887, 5.0)
        ):
            rule = Rule(k, w, a, b, t)
            results.append((rule, evaluate(records, cands, questions, rule)))
        base = Rule(5, 0.0, 0.0, 0.0, 3.887)
        print("baseline rule:", fmt(base, evaluate(records, cands, questions, base)))
        # best by right + abstained unanswerable (each unanswerable weighted as the share it should be)
        results.sort(key=lambda x: -(x[1]["right"] + x[1]["abs_una"] * 1.0))
        for rule, n in results[:15]:
            print(fmt(rule, n))


def dump_retrieval(tag: str, depth: int = 100) -> Path:
    """Per dev question: the dense and the BM25 top `depth` chunks (Memory.Search), for fusion sweeps offline."""
    from bench import handbook
    from bench.peers import system_with_peers
    from bench.wiki_qa.run import workload

    ctx = Context(quick=False, out=CACHE, data=data.DEFAULT_DATA_ROOT)
    records: list[dict[str, Any]] = []
    for corpus in data.corpora():
        w = workload(ctx, corpus, "dev")
        if not w.questions:
            continue
        with system_with_peers(ctx, f"tune-r-{corpus}") as peers:
            handbook.ingest(peers.address, w.pages)
            vectors = peers.embed([q.question for q in w.questions])
            for q, vector in progress(list(zip(w.questions, vectors, strict=True)), f"search ({corpus})"):
                lists = {}
                for mode in ("dense", "bm25"):
                    found = peers.search(mode, q.question, vector, depth)
                    lists[mode] = [
                        {
                            "id": h.chunk.chunk_id,
                            "doc_id": h.chunk.doc_id,
                            "title": h.chunk.title,
                            "heading": h.chunk.heading,
                            "text": h.chunk.text,
                            "score": h.score,
                        }
                        for h in found.hits
                    ]
                records.append({"id": q.id, **lists})
            # reranker scores of every candidate, once (the union of both lists' top 50)
            from wikimem_common.markup import mask_markup

            for r in progress([r for r in records if "rerank" not in r], f"rerank ({corpus})"):
                chunks = {c["id"]: c for mode in ("dense", "bm25") for c in r[mode][:50]}
                texts = []
                for c in chunks.values():
                    ctx_ = _context(c["title"].strip(), c["heading"].strip())
                    body = mask_markup(c["text"])
                    texts.append(f"{ctx_}. {body}" if ctx_ else body)
                question = next(q.question for q in w.questions if q.id == r["id"])
                r["rerank"] = dict(zip(chunks, peers.rerank(question, texts), strict=True))
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{tag}.retrieval.json"
    path.write_text(json.dumps(records))
    return path


def fuse(r: dict[str, Any], weight: float | None, candidates: int = 100) -> list[str]:
    """Chunk ids in fused order: convex with dense weight `weight` (None: reciprocal rank, k=60)."""
    from wikimem_memory.fusion import convex, reciprocal_rank

    dense = [(c["id"], c["score"]) for c in r["dense"][:candidates]]
    sparse = [(c["id"], c["score"]) for c in r["bm25"][:candidates]]
    fused = reciprocal_rank(dense, sparse, 60) if weight is None else convex(dense, sparse, weight)
    return [key for key, _ in fused]


def sweep_retrieval(tag: str) -> None:
    records = json.loads((CACHE / f"{tag}.retrieval.json").read_text())
    questions = {q.id: q for c in data.corpora() for q in data.load_questions(data.question_path(c))}
    for weight, k in itertools.product((0.0, 0.3, 0.5, 0.7, 0.85, 1.0, None), (20, 30, 50)):
        n = {"ans": 0, "page1": 0, "chunk5": 0, "page5": 0, "chunkk": 0}
        for r in records:
            q = questions[r["id"]]
            if not q.answerable:
                continue
            chunks = {c["id"]: c for mode in ("dense", "bm25") for c in r[mode]}
            ids = fuse(r, weight)[:k]
            ranked = sorted((i for i in ids if i in r["rerank"]), key=lambda i: -r["rerank"][i])
            has = [
                chunks[i]["doc_id"] in q.doc_ids
                and any(normalise(a) in normalise(chunks[i]["text"]) for a in q.answers)
                for i in ranked
            ]
            n["ans"] += 1
            n["page1"] += bool(ranked) and chunks[ranked[0]]["doc_id"] in q.doc_ids
            n["page5"] += any(chunks[i]["doc_id"] in q.doc_ids for i in ranked[:5])
            n["chunk5"] += any(has[:5])
            n["chunkk"] += any(has)
        print(
            f"w={weight} k={k}: page first {n['page1']}/{n['ans']} page in 5 {n['page5']} answer chunk in 5 "
            f"{n['chunk5']} in {k} {n['chunkk']}"
        )


def _reader_answers(cands: Sequence[Cand], read_k: int, limit: int) -> list[Any]:
    """What the reader returns for `limit` candidates with its threshold off: best first, non-overlapping."""
    from wikimem_contract.v1 import reader_pb2

    chosen: list[Cand] = []
    for c in sorted(cands, key=lambda c: c.score, reverse=True):
        if len(chosen) == limit:
            break
        if c.passage < read_k and not any(
            o.passage == c.passage and c.start < o.end and o.start < c.end for o in chosen
        ):
            chosen.append(c)
    return [
        reader_pb2.ReadAnswer(text=c.text, score=c.score, passage_index=c.passage, start=c.start, end=c.end)
        for c in chosen
    ]


def sweep_sentences(
    tag: str,
    read_k: int = 5,
    candidates: Sequence[int] = (10, 20),
    weights: Sequence[float] = (0.0, 0.005, 0.01),
    floors: Sequence[float] = (-30.0, -20.0),
    margins: Sequence[float] = (0.0, 2.0, 3.0, 5.0, 8.0),
) -> None:
    """The sentence first decision of answering.py over the dumped passages: sentences embedded once (cached)."""
    import numpy as np

    from wikimem_common.markup import mask_markup
    from wikimem_embedder.config import EmbedderConfig
    from wikimem_embedder.encoder import SentenceEncoder
    from wikimem_orchestrator.answering import (
        AnswerPolicy,
        Sentence,
        choose_sentence,
        sentence_context,
        sentence_input,
    )
    from wikimem_orchestrator.citations import quote_span, sentence_spans

    records = json.loads((CACHE / f"{tag}.json").read_text())
    questions = {q.id: q for c in data.corpora() for q in data.split(data.load_questions(data.question_path(c)), "dev")}
    records = [r for r in records if r["id"] in questions]
    raw = json.loads((CACHE / f"{tag}-plain-{os.environ.get('WIKIMEM_READER_VARIANT', 'fp32')}.cands.json").read_text())
    cands = {k: [Cand(**c) for c in v] for k, v in raw.items()}
    sentences: dict[str, list[Sentence]] = {}
    inputs: dict[str, list[str]] = {}
    for r in records:
        rows = []
        for i, p in enumerate(r["passages"][:read_k]):
            masked = mask_markup(p["text"])
            for start, end in sentence_spans(masked):
                rows.append(Sentence(i, start, end, " ".join(masked[start:end].split())))
        sentences[r["id"]] = rows
        contexts = [sentence_context(p["title"], p["heading"]) for p in r["passages"][:read_k]]
        inputs[r["id"]] = [sentence_input(contexts[s.passage_index], s.text) for s in rows]
    cache = CACHE / f"{tag}-k{read_k}.sentences.npz"
    if cache.exists():
        stored = np.load(cache)
        sims = {k: stored[k] for k in stored.files}
    else:
        encoder = SentenceEncoder(EmbedderConfig.from_env())
        sims = {}
        for r in progress(records, "embed sentences"):
            q = encoder.embed([questions[r["id"]].question])[0].vector
            embedded = encoder.embed(inputs[r["id"]]) if inputs[r["id"]] else []
            sims[r["id"]] = np.array([float(e.vector @ q) for e in embedded], dtype=np.float32)
        encoder.close()
        np.savez(cache, **sims)

    def run(policy: AnswerPolicy, limit: int) -> dict[str, int]:
        n = {"ans": 0, "una": 0, "right": 0, "page": 0, "abs_ans": 0, "abs_una": 0}
        for r in records:
            q = questions[r["id"]]
            answers = _reader_answers(cands[r["id"]], read_k, limit)
            decision = choose_sentence(answers, sentences[r["id"]], sims[r["id"]], policy, q.question)
            chosen = decision.answer
            key = "ans" if q.answerable else "una"
            n[key] += 1
            if chosen is None:
                n["abs_" + key] += 1
                continue
            if q.answerable:
                p = r["passages"][chosen.passage_index]
                qs, qe = quote_span(p["text"], chosen.start, chosen.end)
                n["right"] += answer_right(q.answers, q.evidence, chosen.text, p["text"][qs:qe])
                n["page"] += p["doc_id"] in q.doc_ids
        return n

    grid = itertools.product(candidates, weights, floors, margins)
    for limit, weight, floor, margin in grid:
        best: tuple[float, dict[str, int]] | None = None
        for threshold in [x / 200 for x in range(60, 240)]:
            policy = AnswerPolicy(
                sentence_reader_weight=weight,
                sentence_floor=floor,
                sentence_threshold=threshold,
                sentence_margin_weight=margin,
            )
            n = run(policy, limit)
            if n["abs_una"] >= 0.8 * n["una"] and (best is None or n["right"] > best[1]["right"]):
                best = (threshold, n)
        off = run(AnswerPolicy(sentence_reader_weight=weight, sentence_floor=floor, sentence_threshold=-1e9), limit)
        if best is not None:
            t, n = best
            print(
                f"candidates={limit} weight={weight:g} floor={floor:g} margin={margin:g}: no abstention right "
                f"{off['right']}/{off['ans']}; at >= 80% unanswerable abstained: threshold {t:.3f} right "
                f"{n['right']}/{n['ans']} page {n['page']} abstained {n['abs_ans']}/{n['ans']} "
                f"+ {n['abs_una']}/{n['una']}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wiki_qa.tune", description=__doc__)
    parser.add_argument("command", choices=("dump", "sweep", "dump-retrieval", "sweep-retrieval", "sweep-sentences"))
    parser.add_argument("--tag", default="base")
    parser.add_argument("--retrieve-k", type=int, default=20)
    parser.add_argument("--variants", default="plain,heading")
    parser.add_argument("--candidates", default="10,20", help="sweep-sentences: reader candidate spans")
    parser.add_argument("--weights", default="0,0.005,0.01", help="sweep-sentences: reader weights")
    parser.add_argument("--floors", default="-30,-20", help="sweep-sentences: span score floors")
    parser.add_argument("--margins", default="0,2,3,5,8", help="sweep-sentences: margin weights")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.command == "dump":
        print(dump(args.tag, args.retrieve_k))
    elif args.command == "dump-retrieval":
        print(dump_retrieval(args.tag))
    elif args.command == "sweep-retrieval":
        sweep_retrieval(args.tag)
    elif args.command == "sweep-sentences":
        sweep_sentences(
            args.tag,
            candidates=[int(x) for x in args.candidates.split(",")],
            weights=[float(x) for x in args.weights.split(",")],
            floors=[float(x) for x in args.floors.split(",")],
            margins=[float(x) for x in args.margins.split(",")],
        )
    else:
        sweep(args.tag, [v for v in args.variants.split(",") if v])
    return 0


if __name__ == "__main__":
    sys.exit(main())
