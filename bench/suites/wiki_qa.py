"""wiki-qa (issue 11): questions written as employees ask them (paraphrased; bench/data/wiki_qa/) over real handbooks.

Per corpus: all its pages PutDocument'ed into a fresh stack (five services, as `wikimem serve` starts them), every
question of the split asked once cold (`no_cache`, no QA memory), the edit scenarios replayed (ask, edit through
PutDocument, ask again with caches on, restore); the same questions through the Haystack peer (bench/suites/peer.py:
dense top 5 → the same reader weights) and, where `make llm` installed it, through the local LLM reader on a fixed
sample. Split: dev unless `--wiki-qa-split test` / `WIKIMEM_BENCH_WIKIQA_SPLIT=test` (each test run is logged in
bench/results/wiki_qa_test_runs.log). Definitions of right / page first / stale: bench/wiki_qa/score.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench import handbook
from bench.common import Context, Skip, SuiteResult, Target, progress, running_system
from bench.service import load_average, load_note
from bench.wiki_qa import data
from bench.wiki_qa.run import (
    Workload,
    ask_all,
    chosen_split,
    gguf_available,
    log_test_run,
    run_edits,
    test_runs_logged,
    workload,
)
from bench.wiki_qa.score import Asked, EditOutcome, by_kind, edit_summary, judge, summary

TITLE = "paraphrased employee questions over real handbooks: right, right page first, abstention, edits, peer"

#: Local LLM reader: the first answerable and unanswerable questions of each corpus (7–17 s an answer on 2 cores).
LLM_SAMPLE = (8, 2)
LLM_SAMPLE_QUICK = (1, 1)
#: "answerable,unanswerable" per corpus instead of LLM_SAMPLE (each LLM answer takes 7–50 s on 2 busy cores).
LLM_SAMPLE_ENV = "WIKIMEM_BENCH_LLM_SAMPLE"


def llm_sample_size(quick: bool) -> tuple[int, int]:
    raw = os.environ.get(LLM_SAMPLE_ENV, "")
    if raw:
        n_ans, n_una = (int(x) for x in raw.split(","))
        return n_ans, n_una
    return LLM_SAMPLE_QUICK if quick else LLM_SAMPLE
LLM_MODELS = ("0.5b", "1.5b")
#: Which local LLMs to measure (comma separated; empty: none), e.g. to keep a quick run quick.
LLM_MODELS_ENV = "WIKIMEM_BENCH_LLM_MODELS"
#: 0: leave the Haystack peer out (it does not depend on wikimem's settings; ~10 min).
PEER_ENV = "WIKIMEM_BENCH_WIKIQA_PEER"
SYSTEM_LABELS = {
    "wikimem": "wikimem, extractive reader (default)",
    "haystack": "Haystack peer (dense top 5 → same reader weights)",
    "llm-0.5b": "wikimem, local-llm 0.5B (sample)",
    "llm-1.5b": "wikimem, local-llm 1.5B (sample)",
}


def _llm_sample(questions: Sequence[data.WikiQuestion], quick: bool) -> list[data.WikiQuestion]:
    n_ans, n_una = llm_sample_size(quick)
    return [q for q in questions if q.answerable][:n_ans] + [q for q in questions if not q.answerable][:n_una]


def _peer(ctx: Context, w: Workload, reader_dir: str, embed_dir: str) -> list[Asked]:
    from haystack import Document

    from bench.suites.peer import _FRONT, _TITLE, _haystack_pipelines

    indexing, query, _store = _haystack_pipelines(reader_dir, embed_dir)
    sources = []
    for page in w.pages:
        title = _TITLE.search(page.text)
        body = _FRONT.sub("", page.text, count=1)
        if body.strip():
            sources.append(
                Document(content=body, meta={"doc_id": page.doc_id, "title": title.group(1) if title else ""})
            )
    indexing.warm_up()
    indexing.run({"splitter": {"documents": sources}})
    query.warm_up()
    out: list[Asked] = []
    for q in progress(w.questions, f"ask haystack ({w.corpus})"):
        t0 = time.perf_counter()
        result = query.run({"embedder": {"text": q.question}, "reader": {"query": q.question}})
        ms = (time.perf_counter() - t0) * 1000.0
        answers = result["reader"]["answers"]
        best = answers[0] if answers else None
        text = best.data if best is not None and best.data else ""
        doc = best.document if best is not None else None
        cited = doc.meta.get("doc_id") if doc is not None else None
        quote = doc.content or "" if doc is not None else ""
        out.append(judge(q, text, not text, cited, quote, ms, float(best.score) if best is not None else 0.0))
    return out


def _figures(system: str, per_corpus: dict[str, list[Asked]], figures: dict[str, Any]) -> None:
    everything = [a for asked in per_corpus.values() for a in asked]
    for corpus, asked in [*per_corpus.items(), ("all", everything)]:
        for key, value in summary(asked).items():
            figures[f"{system}_{corpus}_{key}"] = value


def _row(
    label: str, corpus: str, asked: Sequence[Asked], edits: Sequence[EditOutcome] | None, diagnostics: bool
) -> str:
    s = summary(asked)
    n_a, n_u = int(s["answerable"]), int(s["unanswerable"])
    e = edit_summary(edits) if edits is not None else None
    edit_cells = (
        f"{e['edits_right']}/{e['edits']} | {e['edits_stale']} ({e['edits_old_revision_cited']})"
        if e is not None and e["edits"]
        else "– | –"
    )
    retrieval = f"{s['page_ranked_first']}/{n_a} | {s['page_read']}/{n_a}" if diagnostics else "– | –"
    return (
        f"| {label} | {corpus} | {s['right']}/{n_a} | {s['page_first']}/{n_a} | {s['abstained_answerable']}/{n_a} | "
        f"{s['abstained_unanswerable']}/{n_u} | {edit_cells} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | {retrieval} |"
    )


def run(ctx: Context) -> SuiteResult:
    load_start = load_average()
    which = chosen_split()
    corpora = data.corpora()
    if not corpora:
        raise Skip(f"no question files in {data.WIKI_QA_DIR}")
    loads = [workload(ctx, corpus, which) for corpus in corpora]
    loads = [w for w in loads if w.questions or w.edits]
    if which == "test":
        log_test_run([w.corpus for w in loads], sum(len(w.questions) for w in loads), ctx.quick)

    asked: dict[str, dict[str, list[Asked]]] = {"wikimem": {}, "haystack": {}}
    edits: dict[str, list[EditOutcome]] = {}
    notes: list[str] = []
    ingest: dict[str, tuple[int, int, float]] = {}
    for w in loads:
        with running_system(ctx, f"wikiqa-{w.corpus}") as address:
            stats = handbook.ingest(address, w.pages)
            ingest[w.corpus] = (stats.pages, stats.chunks, stats.seconds)
            if w.questions:
                ask_all(address, w.questions[:1], f"warm-up ({w.corpus})")
                asked["wikimem"][w.corpus] = ask_all(address, w.questions, f"ask wikimem ({w.corpus})")
            pages = {p.doc_id: p for p in w.pages}
            edits[w.corpus] = run_edits(address, w.edits, pages, f"edits ({w.corpus})")

    # Local LLM reader, one stack per model (its model is chosen at start), on a fixed sample.
    wanted = os.environ.get(LLM_MODELS_ENV, ",".join(LLM_MODELS))
    llm_models = [m for m in (x.strip() for x in wanted.split(",")) if m and gguf_available(m) is not None]
    if not wanted.strip():
        notes.append(f"local-llm reader not measured: {LLM_MODELS_ENV} is empty")
    elif not llm_models:
        notes.append("local-llm reader not measured: `make llm` (llama-cpp-python and the GGUFs) is not installed")
    for model in llm_models:
        system = f"llm-{model}"
        asked[system] = {}
        for w in loads:
            sample = _llm_sample(w.questions, ctx.quick)
            if not sample:
                continue
            env = {"WIKIMEM_LLM_MODEL": model}
            with running_system(ctx, f"wikiqa-{w.corpus}-{system}", env=env) as address:
                handbook.ingest(address, w.pages)
                ask_all(address, sample[:1], f"warm-up {system}", reader="local-llm", timeout=600)
                asked[system][w.corpus] = ask_all(
                    address, sample, f"ask {system} ({w.corpus})", reader="local-llm", timeout=600
                )

    # The Haystack peer.
    try:
        if os.environ.get(PEER_ENV, "1") == "0":
            raise Skip(f"{PEER_ENV}=0")
        import torch

        from bench.onnx_weights import base_model_dir, write_hf_folder
        from wikimem_common.modeldir import model_dir

        torch.set_num_threads(os.cpu_count() or 1)
        reader_onnx = model_dir("reader", "WIKIMEM_READER_MODEL_DIR") / "model.onnx"
        reader_dir = write_hf_folder(reader_onnx, "reader", base_model_dir(), ctx.scratch("wikiqa-hf-reader"))
        for w in loads:
            if w.questions:
                asked["haystack"][w.corpus] = _peer(ctx, w, str(reader_dir), str(base_model_dir()))
    except (Skip, ImportError) as exc:
        notes.append(f"Haystack peer not measured: {exc}")
        asked.pop("haystack")

    figures: dict[str, Any] = {"split": which, "test_runs_logged": test_runs_logged()}
    for system, per_corpus in asked.items():
        _figures(system, per_corpus, figures)
    all_edits = [o for outs in edits.values() for o in outs]
    for corpus, outs in [*edits.items(), ("all", all_edits)]:
        for key, value in edit_summary(outs).items():
            figures[f"wikimem_{corpus}_{key}"] = value
    for corpus, (n_pages, n_chunks, seconds) in ingest.items():
        figures[f"ingest_{corpus}_pages"] = n_pages
        figures[f"ingest_{corpus}_chunks"] = n_chunks
        figures[f"ingest_{corpus}_s"] = round(seconds, 1)

    details = {
        system: {corpus: [asdict(a) for a in items] for corpus, items in per_corpus.items()}
        for system, per_corpus in asked.items()
    }
    details["edits"] = {corpus: [asdict(o) for o in outs] for corpus, outs in edits.items()}
    (ctx.out / f"wiki_qa_{which}_details.json").write_text(json.dumps(details, indent=1) + "\n")

    md = [
        f"Split **{which}**{' (quick sample)' if ctx.quick else ''}; corpora: "
        + ", ".join(f"{c} ({p} pages → {k} chunks)" for c, (p, k, _s) in ingest.items())
        + ". Each question asked once, cold (`no_cache`, no QA memory); wall time at the caller. Right: a gold "
        "answer in the answer, or the answer inside the gold fact and a gold answer in the cited quote; page first: "
        "the first citation is the question's page (or an alternative page); the last two columns (diagnostics): "
        "the page is the top reranked passage's, is among the passages read. Edits: ask, PutDocument the edit, ask "
        "again (caches on); right = new fact present and old absent, stale = old fact present (in brackets: "
        "answers citing the edited page at a revision before the edit; the old fact may still be stated elsewhere "
        "on the page or on other pages).",
        "",
        "| system | corpus | right | right page first | abstained (answerable) | abstained (unanswerable) | "
        "edits right | edits stale | p50 ms | p99 ms | page ranked first | page among those read |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, per_corpus in asked.items():
        label = SYSTEM_LABELS.get(system, system)
        own = system == "wikimem"
        every = [a for items in per_corpus.values() for a in items]
        for corpus, items in per_corpus.items():
            md.append(_row(label, corpus, items, edits.get(corpus) if own else None, own))
        if len(per_corpus) > 1:
            md.append(_row(label, "**all**", every, all_edits if own else None, own))
    kinds = by_kind([a for items in asked["wikimem"].values() for a in items])
    md += [
        "",
        "wikimem right by kind: " + ", ".join(f"{k} {r}/{n}" for k, (r, n) in sorted(kinds.items())) + ".",
    ]
    if llm_models:
        n_ans, n_una = llm_sample_size(ctx.quick)
        md.append(
            f"Local LLM rows: a fixed sample (the first {n_ans} answerable and {n_una} unanswerable questions of each "
            "corpus in file order), as each generated answer takes seconds on this CPU."
        )
    md.append(f"Test-split runs logged so far (bench/results/wiki_qa_test_runs.log): {figures['test_runs_logged']}.")
    targets = [
        Target("wikimem_all_right_share", ">=", 0.8),
        Target("wikimem_all_page_first_share", ">=", 0.9),
        Target("wikimem_all_abstained_unanswerable_share", ">=", 0.8),
        Target("wikimem_all_edits_right_share", ">=", 0.9),
        Target("wikimem_all_edits_stale", "<=", 0),
    ]
    return SuiteResult(figures=figures, markdown="\n".join(md), targets=targets, notes=[*notes, load_note(load_start)])
