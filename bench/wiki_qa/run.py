"""Running the wiki-qa set: which questions (split, quick sample), which pages, ingest, and asking a running stack.

The split is dev unless asked otherwise (`--wiki-qa-split test` or `WIKIMEM_BENCH_WIKIQA_SPLIT=test`); every test
run appends a dated line to `bench/results/wiki_qa_test_runs.log`, so the report can say how often test was run.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, Context, progress
from bench.handbook import Page
from bench.wiki_qa import data
from bench.wiki_qa.data import EditScenario, Split, WikiQuestion
from bench.wiki_qa.score import Asked, EditOutcome, judge, judge_edit

SPLIT_ENV = "WIKIMEM_BENCH_WIKIQA_SPLIT"
TEST_LOG = ROOT / "bench" / "results" / "wiki_qa_test_runs.log"

#: Quick runs (CI): per corpus, the first answerable and unanswerable dev questions in file order, the first dev edit
#: scenarios, and a few other pages besides the ones those cite.
QUICK_ANSWERABLE = 4
QUICK_UNANSWERABLE = 1
QUICK_EDITS = 1
QUICK_EXTRA_PAGES = 8


def chosen_split() -> Split:
    value = os.environ.get(SPLIT_ENV, "dev").strip().lower() or "dev"
    if value not in ("dev", "test"):
        raise ValueError(f"{SPLIT_ENV}={value!r}: use 'dev' (the default) or 'test'")
    return "test" if value == "test" else "dev"


def log_test_run(corpora: Sequence[str], questions: int, quick: bool) -> None:
    """One dated line per run on the test split (how often test was looked at)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        log = [f":!{TEST_LOG.relative_to(ROOT)}"] if TEST_LOG.is_relative_to(ROOT) else []
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *log],
            cwd=ROOT, capture_output=True, text=True, check=False,
        ).stdout.strip()
        if commit and changed:
            commit += "+changes"  # uncommitted edits to tracked files: the commit alone is not what ran
    except OSError:
        commit = "?"
    TEST_LOG.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with TEST_LOG.open("a", encoding="utf-8") as handle:
        handle.write(
            f"{stamp} commit={commit or '?'} corpora={','.join(corpora)} questions={questions} quick={quick}\n"
        )


def test_runs_logged() -> int:
    return len(TEST_LOG.read_text(encoding="utf-8").splitlines()) if TEST_LOG.exists() else 0


@dataclass(frozen=True)
class Workload:
    corpus: str
    questions: list[WikiQuestion]
    edits: list[EditScenario]
    pages: list[Page]


def workload(ctx: Context, corpus: str, which: Split) -> Workload:
    """The corpus's questions and edits of split `which` and the pages to ingest (all; quick: a small sample)."""
    questions = (
        data.split(data.load_questions(data.question_path(corpus)), which)
        if data.question_path(corpus).exists()
        else []
    )
    edits_file = data.edits_path(corpus)
    edits = [e for e in data.load_edits(edits_file) if e.split == which] if edits_file.exists() else []
    root = ctx.dataset(corpus) / "pages"
    files = sorted(root.rglob("*.md"))
    pages = [Page(f.relative_to(root).as_posix(), f, f.read_text(encoding="utf-8")) for f in files]
    if ctx.quick:
        answerable = [q for q in questions if q.answerable][:QUICK_ANSWERABLE]
        unanswerable = [q for q in questions if not q.answerable][:QUICK_UNANSWERABLE]
        questions = answerable + unanswerable
        edits = edits[:QUICK_EDITS]
        cited = {d for q in questions for d in q.doc_ids} | {e.doc_id for e in edits}
        others = [p for p in pages if p.doc_id not in cited]
        others = others[:: max(1, len(others) // QUICK_EXTRA_PAGES)][:QUICK_EXTRA_PAGES]
        pages = [p for p in pages if p.doc_id in cited] + others
    return Workload(corpus, questions, edits, pages)


def ask_all(
    address: str,
    questions: Sequence[WikiQuestion],
    desc: str,
    reader: str = "",
    timeout: float = 120.0,
    read_k: int = 0,
) -> list[Asked]:
    """Each question once, cold (`no_cache`, no QA memory), judged; wall time at the caller. The retrieved
    passages come back too (`include_passages`), for the diagnostics: the page ranked first, among the `read_k`
    read."""
    from wikimem.client import WikimemClient

    read_k = read_k or int(os.environ.get("WIKIMEM_READ_K", "5"))
    out: list[Asked] = []
    with WikimemClient(address, timeout=timeout) as client:
        for q in progress(questions, desc):
            t0 = time.perf_counter()
            a = client.ask(q.question, no_cache=True, no_qa_memory=True, reader=reader, include_passages=True)
            ms = (time.perf_counter() - t0) * 1000.0
            cited = a.citations[0] if a.citations else None
            out.append(
                judge(
                    q,
                    a.answer,
                    a.abstained,
                    cited.doc_id if cited else None,
                    cited.quote if cited else "",
                    ms,
                    a.score,
                    [p.doc_id for p in a.passages[:read_k]],
                )
            )
    return out


def run_edits(address: str, edits: Sequence[EditScenario], pages: dict[str, Page], desc: str) -> list[EditOutcome]:
    """Per scenario: ask (fills the caches), PutDocument the edited page, ask again (caches on, as a user would),
    judge that answer (and whether it cites the edited page at an older revision), then put the original back."""
    from wikimem.client import WikimemClient

    out: list[EditOutcome] = []
    with WikimemClient(address, timeout=120) as client:
        for e in progress(edits, desc):
            page = pages[e.doc_id]
            client.ask(e.question)
            put = client.put_document(e.doc_id, e.apply(page.text), source=str(page.path))
            a = client.ask(e.question)
            cited = a.citations[0] if a.citations else None
            old_revision = any(c.doc_id == e.doc_id and c.revision < put.document.revision for c in a.citations)
            out.append(judge_edit(e, a.answer, a.abstained, cited.quote if cited else "", old_revision))
            client.put_document(e.doc_id, page.text, source=str(page.path))
    return out


def gguf_available(model: str) -> Path | None:
    """The local LLM's GGUF file if `make llm` installed the runtime and this model; else None."""
    try:
        from wikimem_reader.llm_models import llm_dir, spec_for
        from wikimem_reader.local_llm import llama_cpp_available
    except ImportError:
        return None
    if not llama_cpp_available():
        return None
    path = llm_dir() / spec_for(model).filename
    return path if path.exists() else None
