"""Checks the wiki-qa files against the pages they cite: `python -m bench.wiki_qa.check [--corpus NAME]`.

For each corpus it prints the counts (answerable/unanswerable, kinds, dev/test split) and every failure with the id
and what to fix, and exits 1 if anything fails. What it verifies (the rules a program can check):

- each line parses (fields, types, `kind`), `corpus` matches the file name, ids are unique;
- `doc_id` and every `alt_doc_ids` page exist under `<data>/<corpus>/pages/`;
- answerable: `evidence` occurs verbatim on the page (whitespace-normalised), every answer occurs in the raw page text
  and in the evidence (case-insensitive); the evidence does not also occur on a page missing from `alt_doc_ids`, and
  some answer occurs on each alt page;
- the question shares at most two content words with the evidence (stemmed, stopwords dropped);
- unanswerable: no answers, no evidence, kind `unanswerable`, a `why`;
- at most 4 questions a page; shares of kinds: list/table/heading >= 15 %, two-sentence >= 5 %, unanswerable >= 15 %;
- edits: `find` occurs exactly once on the page; `old_answer` in `find`, `new_answer` in `replace` and nowhere on the
  original page, `old_answer` not in `replace`; the question shares at most two content words with `find`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import Stemmer

from bench.wiki_qa.data import (
    DEFAULT_DATA_ROOT,
    KINDS,
    WIKI_QA_DIR,
    EditScenario,
    FormatError,
    WikiQuestion,
    corpora,
    edits_path,
    parse_edit,
    parse_question,
    question_path,
    read_lines,
)

MAX_SHARED_WORDS = 2
MAX_QUESTIONS_PER_PAGE = 4
#: Minimum share of all questions, per group of kinds.
MIN_SHARES: dict[str, tuple[tuple[str, ...], float]] = {
    "list/table/heading": (("list", "table", "heading"), 0.15),
    "two-sentence": (("two-sentence",), 0.05),
    "unanswerable": (("unanswerable",), 0.15),
}
#: Evidence shorter than this (normalised) may repeat on another page by chance; longer evidence found on another
#: page means that page states the fact too and belongs in `alt_doc_ids`.
MIN_DUPLICATE_EVIDENCE = 40
LONG_ANSWER_WORDS = 8

_STOPWORD_TEXT = """
a about above after again against all also am an and any are aren as at be because been before being below between
both but by can cannot could couldn did didn do does doesn doing don down during each either else few for from further
had hadn has hasn have haven having he her here hers herself him himself his how however i if in into is isn it its
itself just ll me might more most must mustn my myself no nor not now of off on once only or other our ours ourselves
out over own re s same shall shan she should shouldn so some such t than that the their theirs them themselves then
there these they this those through to too under until up upon us ve very was wasn we were weren what when where
whether which while who whom whose why will with within without won would wouldn yet you your yours yourself
yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_TOKEN = re.compile(r"[a-z0-9]+")
_STEMMER = Stemmer.Stemmer("english")


def content_words(text: str) -> set[str]:
    """Lower-cased alphanumeric tokens, stopwords dropped, Snowball-stemmed."""
    tokens = [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]
    return set(_STEMMER.stemWords(tokens))


def shared_words(question: str, evidence: str) -> set[str]:
    return content_words(question) & content_words(evidence)


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Failure:
    where: str  # a record id, or `file:line` when the line has no usable id
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    corpus: str
    summary: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.failures.append(Failure(where, message))

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(Failure(where, message))


class Pages:
    """Every page of one corpus, raw and whitespace-normalised, keyed by doc id."""

    def __init__(self, data_root: Path, corpus: str) -> None:
        self.root = data_root / corpus / "pages"
        self.raw: dict[str, str] = {}
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*")):
                if path.is_file():
                    self.raw[path.relative_to(self.root).as_posix()] = path.read_text(
                        encoding="utf-8", errors="replace"
                    )
        self.flat = {doc_id: normalise(text) for doc_id, text in self.raw.items()}
        self.lower = {doc_id: text.lower() for doc_id, text in self.raw.items()}

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.raw

    def pages_with(self, evidence: str) -> list[str]:
        flat = normalise(evidence)
        return [doc_id for doc_id, text in self.flat.items() if flat in text]


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _parse_file(path: Path, parse: Callable[[Any], object], report: Report) -> list[tuple[str, object]]:
    """(where, record) for every line that parses; format failures go to the report."""
    records: list[tuple[str, object]] = []
    try:
        for number, obj in read_lines(path):
            where = f"{path.name}:{number}"
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                where = f"{obj['id']} ({where})"
            try:
                records.append((where, parse(obj)))
            except FormatError as exc:
                report.fail(where, f"{exc}; fix the line to match the format in the wiki-qa spec")
    except FormatError as exc:
        report.fail(path.name, f"{exc}; every line must be one JSON object (lines after it were not read)")
    return records


def check_question(where: str, q: WikiQuestion, pages: Pages, report: Report) -> None:
    if q.doc_id not in pages:
        report.fail(where, f"doc_id {q.doc_id!r} is not a page under {pages.root}; use the path relative to pages/")
        return
    for alt in q.alt_doc_ids:
        if alt not in pages:
            report.fail(where, f"alt_doc_ids entry {alt!r} is not a page under {pages.root}")
    if len(set(q.doc_ids)) != len(q.doc_ids):
        report.fail(where, "alt_doc_ids repeats a page or the doc_id; list each other page once")
    if not q.question.strip().endswith("?"):
        report.warn(where, "the question does not end with '?'")
    if not q.answerable:
        if q.kind != "unanswerable":
            report.fail(where, f"answerable is false but kind is {q.kind!r}; use kind 'unanswerable'")
        if q.answers:
            report.fail(where, 'an unanswerable question has no answers; set "answers": []')
        if q.evidence:
            report.fail(where, 'an unanswerable question has no evidence; set "evidence": ""')
        if not q.why.strip():
            report.fail(where, "an unanswerable question needs `why`: what the page covers and which fact it lacks")
        return
    if q.kind == "unanswerable":
        report.fail(where, "kind is 'unanswerable' but answerable is true; pick fact/list/table/heading/two-sentence")
    if not q.answers:
        report.fail(where, "no answers; give at least one short gold answer copied from the page")
    if not q.evidence.strip():
        report.fail(where, "no evidence; copy the sentence (or list item / table row) that answers it from the page")
        return
    page_lower = pages.lower[q.doc_id]
    evidence_flat = normalise(q.evidence)
    if evidence_flat not in pages.flat[q.doc_id]:
        hint = (
            " (it is there ignoring case: keep the page's case)"
            if evidence_flat.lower() in normalise(page_lower)
            else ""
        )
        report.fail(
            where,
            f"evidence {_quote(q.evidence)} is not verbatim on {q.doc_id}{hint}; copy it exactly, markup included",
        )
    for answer in q.answers:
        if answer.lower() not in page_lower:
            report.fail(
                where,
                f"answer {answer!r} is not on {q.doc_id} (case-insensitive substring of the raw page); "
                "use the page's exact wording",
            )
        if normalise(answer).lower() not in evidence_flat.lower():
            report.fail(where, f"answer {answer!r} is not in the evidence; widen the evidence or fix the answer")
        if len(answer.split()) > LONG_ANSWER_WORDS:
            report.warn(where, f"answer {_quote(answer)} is long; gold answers should be short phrases")
    for alt in q.alt_doc_ids:
        if alt in pages and q.answers and not any(a.lower() in pages.lower[alt] for a in q.answers):
            report.fail(
                where,
                f"no answer occurs on alt page {alt}; add that page's wording as another answer, or "
                "drop the page from alt_doc_ids",
            )
    shared = shared_words(q.question, q.evidence)
    if len(shared) > MAX_SHARED_WORDS:
        report.fail(
            where,
            f"the question shares {len(shared)} content words with the evidence "
            f"({', '.join(sorted(shared))}); at most {MAX_SHARED_WORDS}: paraphrase it in everyday words",
        )
    if len(evidence_flat) >= MIN_DUPLICATE_EVIDENCE:
        missing = [d for d in pages.pages_with(q.evidence) if d not in q.doc_ids]
        if missing:
            report.fail(where, f"the evidence also occurs on {', '.join(missing)}; add to alt_doc_ids")


def check_edit(where: str, e: EditScenario, pages: Pages, report: Report) -> None:
    if e.doc_id not in pages:
        report.fail(where, f"doc_id {e.doc_id!r} is not a page under {pages.root}; use the path relative to pages/")
        return
    page = pages.raw[e.doc_id]
    count = page.count(e.find)
    if count == 0:
        hint = (
            " (it is there with different whitespace: copy the exact line breaks)"
            if normalise(e.find) in pages.flat[e.doc_id]
            else ""
        )
        report.fail(where, f"find {_quote(e.find)} is not on {e.doc_id}{hint}")
    elif count > 1:
        report.fail(where, f"find occurs {count} times on {e.doc_id}; widen it until it occurs exactly once")
    if e.find == e.replace:
        report.fail(where, "replace equals find; change the fact")
    old, new = e.old_answer.lower(), e.new_answer.lower()
    if old not in e.find.lower():
        report.fail(where, f"old_answer {e.old_answer!r} is not in find")
    if new not in e.replace.lower():
        report.fail(where, f"new_answer {e.new_answer!r} is not in replace")
    if new in page.lower():
        report.fail(
            where,
            f"new_answer {e.new_answer!r} already occurs on {e.doc_id}; pick a value the page never "
            "states so that the old page cannot answer with it",
        )
    if old in e.replace.lower():
        report.fail(where, f"old_answer {e.old_answer!r} still occurs in replace; remove every copy of the old fact")
    shared = shared_words(e.question, e.find)
    if len(shared) > MAX_SHARED_WORDS:
        report.fail(
            where,
            f"the question shares {len(shared)} content words with find "
            f"({', '.join(sorted(shared))}); at most {MAX_SHARED_WORDS}: paraphrase it in everyday words",
        )


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def check_corpus(
    corpus: str, directory: Path = WIKI_QA_DIR, data_root: Path = DEFAULT_DATA_ROOT, seen_ids: set[str] | None = None
) -> Report:
    """Every rule for one corpus's question and edit files; ids already in `seen_ids` count as duplicates."""
    report = Report(corpus)
    seen = seen_ids if seen_ids is not None else set()
    pages = Pages(data_root, corpus)
    if not pages.raw:
        report.fail(corpus, f"no pages under {pages.root}; is the corpus name right, or pass --data DIR")
        return report
    qpath, epath = question_path(corpus, directory), edits_path(corpus, directory)
    questions: list[WikiQuestion] = []
    edits: list[EditScenario] = []
    if qpath.exists():
        for where, record in _parse_file(qpath, parse_question, report):
            assert isinstance(record, WikiQuestion)
            questions.append(record)
            _check_common(where, record.id, record.corpus, corpus, seen, report)
            check_question(where, record, pages, report)
    else:
        report.fail(corpus, f"no question file {qpath}")
    if epath.exists():
        for where, record in _parse_file(epath, parse_edit, report):
            assert isinstance(record, EditScenario)
            edits.append(record)
            _check_common(where, record.id, record.corpus, corpus, seen, report)
            check_edit(where, record, pages, report)
    _check_counts(questions, edits, report)
    return report


def _check_common(where: str, record_id: str, record_corpus: str, corpus: str, seen: set[str], report: Report) -> None:
    if record_id in seen:
        report.fail(where, f"id {record_id!r} is used more than once; ids must be unique")
    seen.add(record_id)
    if record_corpus != corpus:
        report.fail(where, f"corpus is {record_corpus!r} but the file is for {corpus!r}")


def _check_counts(questions: list[WikiQuestion], edits: list[EditScenario], report: Report) -> None:
    total = len(questions)
    answerable = sum(q.answerable for q in questions)
    kinds = Counter(q.kind for q in questions)
    per_page = Counter(q.doc_id for q in questions)
    report.summary.append(
        f"{total} questions ({answerable} answerable, {total - answerable} unanswerable) over {len(per_page)} pages; "
        f"{len(edits)} edit scenarios over {len({e.doc_id for e in edits})} pages"
    )
    report.summary.append("kinds: " + ", ".join(f"{k} {kinds[k]} ({_percent(kinds[k], total)})" for k in KINDS))
    shares = []
    for name, (group, minimum) in MIN_SHARES.items():
        count = sum(kinds[k] for k in group)
        shares.append(f"{name} {_percent(count, total)} (need >= {minimum:.0%})")
        if total and count < minimum * total:
            need = -(-int(minimum * total * 1000) // 1000)
            report.fail(
                report.corpus,
                f"{name} questions are {count} of {total} ({_percent(count, total)}); "
                f"need at least {minimum:.0%} (about {need})",
            )
    report.summary.append("shares: " + ", ".join(shares))
    for split_name in ("dev", "test"):
        qs = [q for q in questions if q.split == split_name]
        es = [e for e in edits if e.split == split_name]
        report.summary.append(
            f"{split_name}: {len(qs)} questions ({sum(not q.answerable for q in qs)} unanswerable) over "
            f"{len({q.doc_id for q in qs})} pages, {len(es)} edit scenarios"
        )
    for doc_id, count in sorted(per_page.items()):
        if count > MAX_QUESTIONS_PER_PAGE:
            report.fail(
                doc_id,
                f"{count} questions on this page; at most {MAX_QUESTIONS_PER_PAGE} a page: spread them over more pages",
            )
    pages_with_questions = set(per_page)
    for e in edits:
        if e.doc_id not in pages_with_questions:
            report.warn(e.id, f"no question is about {e.doc_id}; edit scenarios should be on pages with questions")


def check(names: Iterable[str], directory: Path = WIKI_QA_DIR, data_root: Path = DEFAULT_DATA_ROOT) -> list[Report]:
    """One report per corpus; ids must be unique across all of them."""
    seen: set[str] = set()
    return [check_corpus(name, directory, data_root, seen) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wiki_qa.check", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", help="check only this corpus (repeatable); default: every file")
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_ROOT,
        help=f"shared data root holding <corpus>/pages/ (default: {DEFAULT_DATA_ROOT})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=WIKI_QA_DIR,
        help=f"folder of <corpus>.jsonl and <corpus>-edits.jsonl (default: {WIKI_QA_DIR})",
    )
    parser.add_argument("--warnings", action="store_true", help="also print warnings (they do not fail the check)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no shared data at {args.data}; pass --data DIR (the folder holding <corpus>/pages/)", file=sys.stderr)
        return 2
    names = args.corpus or corpora(args.dir)
    if not names:
        print(f"no *.jsonl files in {args.dir}", file=sys.stderr)
        return 2
    failed = 0
    for report in check(names, args.dir, args.data):
        print(f"== {report.corpus}")
        for line in report.summary:
            print(f"  {line}")
        for failure in report.failures:
            print(f"  FAIL {failure}")
        if args.warnings:
            for warning in report.warnings:
                print(f"  warn {warning}")
        elif report.warnings:
            print(f"  ({len(report.warnings)} warnings; --warnings shows them)")
        print(f"  {'OK' if not report.failures else f'{len(report.failures)} failures'}")
        failed += len(report.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
