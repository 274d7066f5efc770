"""What counts as right on the wiki-qa set (issue 11), and the per-corpus summaries the suite reports.

- *right* (answerable question): a gold answer occurs in the answer, or the answer is part of the gold fact (it
  occurs in the evidence) and the cited quote contains a gold answer. Case, runs of whitespace and Markdown
  emphasis / code markers (`*`, `` ` ``) are normalised away on both sides; an abstention is never right.
- *right page first*: the first citation names the question's page or one of its `alt_doc_ids`.
- unanswerable questions: right when the pipeline abstains.
- edit scenarios: right when the new answer is present (by the same rule, the replaced text standing in for the
  evidence) and the old one is not; stale when the old answer is present.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.common import percentile
from bench.wiki_qa.data import EditScenario, WikiQuestion

_MARKERS = re.compile(r"[*`]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, emphasis / code markers dropped, whitespace runs folded to one space, trimmed."""
    return _SPACE.sub(" ", _MARKERS.sub("", text.lower())).strip()


def contains_any(text: str, needles: Iterable[str]) -> bool:
    hay = normalise(text)
    return any(n and n in hay for n in (normalise(x) for x in needles))


def answer_right(answers: Sequence[str], evidence: str, answer: str, quote: str) -> bool:
    """A gold answer in the answer; or the answer inside the gold fact and a gold answer in the cited quote."""
    if not answer.strip() or not answers:
        return False
    if contains_any(answer, answers):
        return True
    said = normalise(answer)
    return bool(said) and said in normalise(evidence) and contains_any(quote, answers)


@dataclass(frozen=True)
class Asked:
    """One question asked of one system."""

    id: str
    corpus: str
    kind: str
    answerable: bool
    answer: str
    abstained: bool
    cited_doc: str | None
    quote: str
    ms: float
    right: bool
    page_first: bool
    score: float = 0.0
    #: Diagnostics (wikimem only): the page is the top reranked passage's / among the passages read.
    page_ranked_first: bool = False
    page_read: bool = False


def judge(
    q: WikiQuestion,
    answer: str,
    abstained: bool,
    cited_doc: str | None,
    quote: str,
    ms: float,
    score: float = 0.0,
    read_docs: Sequence[str] = (),
) -> Asked:
    """Score one answer to `q` (see the module docstring)."""
    right = (not abstained and answer_right(q.answers, q.evidence, answer, quote)) if q.answerable else abstained
    page_first = cited_doc is not None and cited_doc in q.doc_ids
    ranked_first = bool(read_docs) and read_docs[0] in q.doc_ids
    page_read = any(d in q.doc_ids for d in read_docs)
    return Asked(
        q.id,
        q.corpus,
        q.kind,
        q.answerable,
        answer,
        abstained,
        cited_doc,
        quote,
        ms,
        right,
        page_first,
        score,
        ranked_first,
        page_read,
    )


@dataclass(frozen=True)
class EditOutcome:
    id: str
    corpus: str
    answer: str
    right: bool
    stale: bool
    abstained: bool
    #: The answer cites the edited page at a revision before the edit (a stale cache or chunk, whatever it says).
    old_revision: bool = False


def judge_edit(e: EditScenario, answer: str, abstained: bool, quote: str, old_revision: bool = False) -> EditOutcome:
    if abstained:
        return EditOutcome(e.id, e.corpus, answer, False, False, True, old_revision)
    new = answer_right((e.new_answer,), e.replace, answer, quote)
    stale = contains_any(answer, (e.old_answer,))
    return EditOutcome(e.id, e.corpus, answer, new and not stale, stale, False, old_revision)


def summary(asked: Sequence[Asked]) -> dict[str, float | int]:
    """Counts and shares over answerable and unanswerable questions, plus latency."""
    ans = [a for a in asked if a.answerable]
    una = [a for a in asked if not a.answerable]
    ms = [a.ms for a in asked]
    out: dict[str, float | int] = {
        "answerable": len(ans),
        "unanswerable": len(una),
        "right": sum(a.right for a in ans),
        "page_first": sum(a.page_first for a in ans),
        "abstained_answerable": sum(a.abstained for a in ans),
        "abstained_unanswerable": sum(a.abstained for a in una),
        "page_ranked_first": sum(a.page_ranked_first for a in ans),
        "page_read": sum(a.page_read for a in ans),
        "p50_ms": round(percentile(ms, 50), 1) if ms else float("nan"),
        "p99_ms": round(percentile(ms, 99), 1) if ms else float("nan"),
    }
    out["right_share"] = round(out["right"] / len(ans), 3) if ans else float("nan")
    out["page_first_share"] = round(out["page_first"] / len(ans), 3) if ans else float("nan")
    out["abstained_answerable_share"] = round(out["abstained_answerable"] / len(ans), 3) if ans else float("nan")
    out["abstained_unanswerable_share"] = round(out["abstained_unanswerable"] / len(una), 3) if una else float("nan")
    return out


def edit_summary(outcomes: Sequence[EditOutcome]) -> dict[str, float | int]:
    n = len(outcomes)
    return {
        "edits": n,
        "edits_right": sum(o.right for o in outcomes),
        "edits_stale": sum(o.stale for o in outcomes),
        "edits_abstained": sum(o.abstained for o in outcomes),
        "edits_old_revision_cited": sum(o.old_revision for o in outcomes),
        "edits_right_share": round(sum(o.right for o in outcomes) / n, 3) if n else float("nan"),
    }


def by_kind(asked: Sequence[Asked]) -> dict[str, tuple[int, int]]:
    """kind -> (right, asked) over answerable questions."""
    out: dict[str, tuple[int, int]] = {}
    for a in asked:
        if a.answerable:
            right, n = out.get(a.kind, (0, 0))
            out[a.kind] = (right + a.right, n + 1)
    return out
