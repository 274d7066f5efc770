"""Entity-based knowledge conflicts (Longpre et al. 2021) through the running services: does the answer follow the
wiki when the wiki changes, or what the models learned?

For held-out SQuAD questions whose answer is entity-like (a year, a date, a number, a person or a place: simple
rules in bench/squad.py `entity_kind`, no NER model), another answer of the same type from other held-out questions
replaces every mention of the answer in its gold paragraph. Per case: Ask the question over the original corpus,
PutDocument the edited paragraph over the original (a new revision), Ask again, then restore the original.

The second answer is classified as the substitute ("new": it mentions the substitute), the original ("old": it
mentions a reference answer), "other", or an abstention. Memorization ratio MR = old / (old + new), over all cases
and over the cases answered correctly before the swap (the paper's subset of interest). Asks run with the product's
defaults (caches on): an answer that survived the edit through a cache would count as "old".

`WIKIMEM_BENCH_READER` picks the reader backend (AskOptions.reader, "" = configured), `WIKIMEM_BENCH_CF_N` the
number of cases (100; 15 in --quick).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import squad
from bench.common import Context, SuiteResult, Target, progress
from wikimem_contract.v1 import rag_pb2

TITLE = "Counterfactual robustness: entity-swapped SQuAD paragraphs (Longpre et al. 2021), memorization ratio"

OUTCOMES = ("new", "old", "other", "abstain")


@dataclass(frozen=True)
class Outcome:
    kind: str
    before_correct: bool
    after: str  # one of OUTCOMES
    edited_read: bool  # the edited paragraph was among the passages read
    cited_new_revision: bool
    cited_other: bool  # the answer came from another paragraph (which may still state the original fact)


def classify(response: rag_pb2.AskResponse, case: squad.Swap) -> str:
    if response.abstained:
        return "abstain"
    new = squad.mentions(response.answer, case.substitute)
    old = any(squad.mentions(response.answer, a) for a in case.question.answers)
    if new and not old:
        return "new"
    if old and not new:
        return "old"
    return "other"


def was_correct(response: rag_pb2.AskResponse, answers: list[str]) -> bool:
    """Before the swap: a span answer by exact match; a generated sentence ("The tower is in Paris.") never
    matches exactly, so for generative readers it counts when it mentions a reference answer — the rule the
    after-swap classification uses."""
    if response.abstained:
        return False
    if response.reader and response.reader != "extractive":
        return any(squad.mentions(response.answer, a) for a in answers)
    return squad.exact_match(response.answer, answers) > 0


def run(ctx: Context) -> SuiteResult:
    data = squad.load(ctx)
    _, n_cases = squad.sample_sizes(ctx)
    cases = squad.swap_cases(data, n_cases, ctx.seed)
    reader = os.environ.get("WIKIMEM_BENCH_READER", "")
    system = squad.system(ctx)
    peers = system.peers
    options = rag_pb2.AskOptions(include_passages=True, reader=reader)

    outcomes: list[Outcome] = []
    models: Counter[str] = Counter()  # the generative model that answered (AskResponse.reader_model)
    try:
        for case in progress(cases, "swap, ask again, restore", total=len(cases)):
            q = case.question
            before = peers.rag.Ask(rag_pb2.AskRequest(question=q.question, options=options), timeout=600)
            correct = was_correct(before, q.answers)
            put = peers.put(case.passage.pid, case.edited, title=squad.document_title(case.passage))
            try:
                after = peers.rag.Ask(rag_pb2.AskRequest(question=q.question, options=options), timeout=600)
            finally:
                squad.restore(peers, [case.passage])
            models[after.reader_model or after.reader] += 1
            read_ids = [p.chunk.doc_id for p in after.passages[:5]]
            cited = after.citations[0] if after.citations else None
            outcomes.append(
                Outcome(
                    case.kind,
                    correct,
                    classify(after, case),
                    case.passage.pid in read_ids,
                    cited is not None and cited.doc_id == case.passage.pid and cited.revision == put.document.revision,
                    cited is not None and cited.doc_id != case.passage.pid,
                )
            )
    finally:
        squad.release()  # the last suite that needs the SQuAD system

    figures = summarise(outcomes)
    figures.update(cases=len(outcomes), reader=reader or "configured", paragraphs=system.documents)
    figures["reader_models"] = dict(models)
    return SuiteResult(
        figures=figures,
        markdown=markdown(figures, outcomes, cases, ctx.quick),
        targets=[Target("mr", "<=", 0.01)],
        notes=[
            "entity types by rules (year / date / number / who-question names / where-question places)",
            "each edited paragraph is restored after its case",
        ],
    )


def _ratio(outcomes: list[Outcome]) -> float | None:
    counts = Counter(o.after for o in outcomes)
    total = counts["old"] + counts["new"]
    return round(counts["old"] / total, 4) if total else None


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes) or 1
    counts = Counter(o.after for o in outcomes)
    correct = [o for o in outcomes if o.before_correct]
    figures: dict[str, Any] = {
        "mr": _ratio(outcomes),
        "mr_correct_before": _ratio(correct),
        "correct_before": round(len(correct) / n, 4),
        "edited_paragraph_read": round(statistics.fmean(o.edited_read for o in outcomes), 4) if outcomes else None,
        "cites_new_revision": round(statistics.fmean(o.cited_new_revision for o in outcomes), 4) if outcomes else None,
        "old_citing_other_paragraph": sum(o.after == "old" and o.cited_other for o in outcomes),
    }
    for outcome in OUTCOMES:
        figures[f"share_{outcome}"] = round(counts[outcome] / n, 4)
        figures[f"share_{outcome}_correct_before"] = (
            round(sum(o.after == outcome for o in correct) / len(correct), 4) if correct else None
        )
    return figures


def markdown(f: dict[str, Any], outcomes: list[Outcome], cases: list[squad.Swap], quick: bool) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    kinds = Counter(c.kind for c in cases)
    lines = [
        f"{f['cases']} swapped paragraphs ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}) over "
        f"{f['paragraphs']} ingested paragraphs{' (quick sample)' if quick else ''}; reader: {f['reader']} "
        f"({', '.join(f.get('reader_models') or {}) or '?'}). "
        f"Answered correctly before the swap: {pct(f['correct_before'])}. The edited paragraph was among the 5 "
        f"read in {pct(f['edited_paragraph_read'])} of the cases; the answer cited its new revision in "
        f"{pct(f['cites_new_revision'])}. Of the 'old' answers, {f['old_citing_other_paragraph']} cite another "
        "paragraph (one that still states the original fact), not the edited one.",
        "",
        "| cases | MR = old/(old+new) | new (follows the wiki) | old (original answer) | other | abstained |",
        "|---|---|---|---|---|---|",
    ]
    for label, suffix, mr in (("all", "", f["mr"]), ("correct before", "_correct_before", f["mr_correct_before"])):
        cells = " | ".join(pct(f[f"share_{o}{suffix}"]) for o in OUTCOMES)
        lines.append(f"| {label} | {'n/a' if mr is None else f'{mr:.3f}'} | {cells} |")
    by_kind: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_kind.setdefault(o.kind, Counter())[o.after] += 1
    lines += ["", "| entity type | cases | new | old | other | abstained |", "|---|---|---|---|---|---|"]
    for kind, counts in sorted(by_kind.items()):
        lines.append(f"| {kind} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    return "\n".join(lines)
