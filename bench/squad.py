"""SQuAD v1.1 dev as open-domain QA, shared by the `reading` and `counterfactual` suites: the data, the held-out
questions (the reader and reranker were trained on the other articles: models/data/squad_split.json), SQuAD's
answer normalisation and scores, the entity swaps of the counterfactual suite, and one running system with the
paragraphs ingested that both suites use when they run in the same process (each starts it if it is not up).

Documents: one per paragraph, doc_id = passage_id ("Super_Bowl_50#3"), title = the article title with spaces, text
= the paragraph. Full runs ingest all 2,067 paragraphs; --quick ingests the gold paragraphs of both suites' samples
plus 120 others.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import string
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.common import ROOT, Context
from bench.peers import Peers, parallel_map, system_with_peers
from wikimem_contract.v1 import memory_pb2
from wikimem_train.data import Passage, Question, load_split, load_squad

SPLIT = ROOT / "models" / "data" / "squad_split.json"
QUICK_DISTRACTORS = 120
QUICK_READING = 25
QUICK_SWAPS = 15


@dataclass(frozen=True)
class Squad:
    passages: dict[str, Passage]
    #: Questions of the held-out articles only.
    heldout: list[Question]


@cache
def _load(root: Path) -> Squad:
    """The paragraphs and the held-out questions, read by the training package's loader (one reader of the split)."""
    passages, questions = load_squad(root)
    by_id = {p.pid: p for p in passages}
    heldout_titles = set(load_split(SPLIT)["heldout"])
    heldout = [q for q in questions if by_id[q.gold].title in heldout_titles]
    return Squad(by_id, heldout)


def load(ctx: Context) -> Squad:
    return _load(ctx.dataset("squad-v1.1-dev").parent)


# ----------------------------------------------------------------------------------------- SQuAD scoring
def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Iterable[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def f1_score(prediction: str, references: Iterable[str]) -> float:
    best = 0.0
    pred = normalize_answer(prediction).split()
    for ref in references:
        gold = normalize_answer(ref).split()
        common = Counter(pred) & Counter(gold)
        same = sum(common.values())
        if same:
            precision, recall = same / len(pred), same / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def mentions(prediction: str, target: str) -> bool:
    """Whether the normalised target occurs in the normalised prediction as whole tokens (works for span and
    sentence answers alike)."""
    pred, tgt = normalize_answer(prediction).split(), normalize_answer(target).split()
    if not tgt:
        return False
    return any(pred[i : i + len(tgt)] == tgt for i in range(len(pred) - len(tgt) + 1))


# ----------------------------------------------------------------------------------------- samples
def reading_sample(data: Squad, n: int, seed: int) -> list[Question]:
    rng = random.Random(f"reading-{seed}")
    return sorted(rng.sample(data.heldout, min(n, len(data.heldout))), key=lambda q: q.qid)


_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_YEAR = re.compile(r"(?:1[0-9]{3}|20[0-2][0-9])")
_DATE = re.compile(rf"(?:{_MONTH} \d{{1,2}}, \d{{4}}|\d{{1,2}} {_MONTH} \d{{4}}|{_MONTH} \d{{4}})")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?")
_NAME_TOKEN = re.compile(r"[A-Z][A-Za-z.'\-]*")
_PARTICLES = {"de", "da", "van", "von", "der", "of", "la", "le", "du", "y", "al", "bin"}
_PLACE_CUE = re.compile(
    r"^where\b|\b(?:which|what) (?:city|country|state|town|region|continent|island|river|county|province|nation|"
    r"capital|borough|district)\b",
    re.IGNORECASE,
)


def _is_name(answer: str, max_tokens: int) -> bool:
    tokens = answer.split()
    if not 1 <= len(tokens) <= max_tokens or any(ch.isdigit() for ch in answer):
        return False
    if not _NAME_TOKEN.fullmatch(tokens[0]) or not _NAME_TOKEN.fullmatch(tokens[-1]):
        return False
    return all(_NAME_TOKEN.fullmatch(t) or t in _PARTICLES for t in tokens)


def entity_kind(question: str, answer: str) -> str | None:
    """The entity type of a span answer, by simple rules (no NER model here): a year, a date with a month, a
    number (digits), a person (a "who" question answered by 2-4 capitalised words) or a place (a "where" /
    "which city|country|..." question answered by 1-3 capitalised words). Anything else: None (not swapped)."""
    answer = answer.strip()
    if _YEAR.fullmatch(answer):
        return "year"
    if _DATE.fullmatch(answer):
        return "date"
    if _NUMBER.fullmatch(answer):
        return "number"
    q = question.strip().lower()
    if re.match(r"who(m|se)?\b", q) and _is_name(answer, 4) and len(answer.split()) >= 2:
        return "person"
    if _PLACE_CUE.search(question) and _is_name(answer, 3):
        return "place"
    return None


@dataclass(frozen=True)
class Swap:
    question: Question
    kind: str
    original: str
    substitute: str
    passage: Passage
    edited: str
    replaced: int


def _mention(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(text)}(?![\w])")


def swap_cases(data: Squad, n: int, seed: int) -> list[Swap]:
    """Up to `n` held-out questions (one per paragraph) whose answer is entity-like, each with another answer of
    the same type (from other held-out questions) put in place of every mention of every reference answer in
    the gold paragraph (Longpre et al. 2021, corpus substitution)."""
    rng = random.Random(f"swap-{seed}")
    typed: list[tuple[Question, str]] = []
    for q in data.heldout:
        kind = entity_kind(q.question, q.answers[0])
        if kind is not None:
            typed.append((q, kind))
    pool: dict[str, list[str]] = {}
    for q, kind in typed:
        pool.setdefault(kind, [])
        if q.answers[0] not in pool[kind]:
            pool[kind].append(q.answers[0])
    order = list(typed)
    rng.shuffle(order)
    cases: list[Swap] = []
    used: set[str] = set()
    for q, kind in order:
        if len(cases) >= n:
            break
        passage = data.passages[q.gold]
        if passage.pid in used or not _mention(q.answers[0]).search(passage.text):
            continue
        refs = sorted({a.strip() for a in q.answers if a.strip()}, key=len, reverse=True)
        # Variants of the first answer ("Denver Broncos", "Broncos") are all replaced; a reference that names
        # something else (annotators disagreeing) must not stay in the paragraph: such questions are skipped.
        variants = [r for r in refs if mentions(r, q.answers[0]) or mentions(q.answers[0], r)]
        candidates = [
            s
            for s in pool[kind]
            if not any(mentions(s, r) or mentions(r, s) for r in refs) and not mentions(passage.text, s)
        ]
        if not candidates:
            continue
        substitute = rng.choice(candidates)
        edited, replaced = passage.text, 0
        for ref in variants:
            edited, count = _mention(ref).subn(substitute, edited)
            replaced += count
        if any(mentions(edited, r) for r in refs):
            continue  # a reference survives (another answer, or inside another word form): not a clean swap
        used.add(passage.pid)
        cases.append(Swap(q, kind, q.answers[0], substitute, passage, edited, replaced))
    return cases


def sample_sizes(ctx: Context) -> tuple[int, int]:
    """(reading questions, counterfactual swaps) for this run; WIKIMEM_BENCH_CF_N overrides the swaps."""
    reading = QUICK_READING if ctx.quick else 400
    raw = os.environ.get("WIKIMEM_BENCH_CF_N", "")
    swaps = int(raw) if raw else (QUICK_SWAPS if ctx.quick else 100)
    return reading, swaps


def corpus_for(ctx: Context, data: Squad) -> list[Passage]:
    if not ctx.quick:
        return list(data.passages.values())
    reading, swaps = sample_sizes(ctx)
    needed = {q.gold for q in reading_sample(data, reading, ctx.seed)}
    needed |= {c.passage.pid for c in swap_cases(data, swaps, ctx.seed)}
    others = sorted(set(data.passages) - needed)
    needed |= set(random.Random(f"distractors-{ctx.seed}").sample(others, QUICK_DISTRACTORS))
    return [data.passages[p] for p in sorted(needed)]


# ----------------------------------------------------------------------------------------- shared system
@dataclass
class Ingested:
    peers: Peers
    documents: int
    chunks: int
    ingest_s: float
    quick: bool


_shared: dict[str, tuple[contextlib.ExitStack, Ingested]] = {}


def document_title(passage: Passage) -> str:
    return passage.title.replace("_", " ")


def system(ctx: Context) -> Ingested:
    """The running system with the SQuAD paragraphs ingested: started (and ingested) on first use in this
    process, then shared; stopped by `release()` or at exit."""
    key = "quick" if ctx.quick else "full"
    if key in _shared:
        return _shared[key][1]
    release()
    data = load(ctx)
    passages = corpus_for(ctx, data)
    stack = contextlib.ExitStack()
    try:
        peers = stack.enter_context(system_with_peers(ctx, "squad"))
        start = time.perf_counter()
        parallel_map(
            lambda p: peers.put(p.pid, p.text, title=document_title(p)),
            passages,
            "ingest SQuAD paragraphs",
            total=len(passages),
        )
        elapsed = time.perf_counter() - start
        chunks = int(peers.memory.Stats(memory_pb2.StatsRequest()).chunks)
    except BaseException:
        stack.close()
        raise
    ingested = Ingested(peers, len(passages), chunks, round(elapsed, 1), ctx.quick)
    _shared[key] = (stack, ingested)
    return ingested


def release() -> None:
    while _shared:
        _, (stack, _ingested) = _shared.popitem()
        stack.close()


atexit.register(release)


def restore(peers: Peers, passages: Sequence[Passage]) -> None:
    for p in passages:
        peers.put(p.pid, p.text, title=document_title(p))
