"""Synthetic cloze QA for reader pre-training (no human questions needed).

After Lewis et al. 2019 ("Unsupervised Question Answering by Cloze Translation": answer = an entity or number of
a sentence, question = the sentence turned into a noisy "wh + cloze" clause) with the recurring-span idea of
Splinter (Ram et al. 2021): when the answer string also occurs in another sentence of the same document, the
question's own sentence is left out of the context, so the answer must be found in a different sentence, not by
copying the question's words. A share of examples has no answer (a passage of the same document without the
answer string), which the reader must learn for abstention anyway.

Text sources (no held-out text): paragraphs of the SQuAD *training* articles (not the validation or held-out
articles), BEIR SciFact abstracts, and the 18F handbook pages. Writes one gzipped JSONL:
  {"kind": "ctx", "i": n, "text": ...}                      contexts (listed once)
  {"q": question, "c": n, "s": char_start or -1, "a": answer, "src": source, "t": "far"|"near"|"none"}
"""

from __future__ import annotations

import argparse
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import load_scifact, load_split, load_squad
from .io_utils import read_jsonl, write_jsonl
from .paths import DEFAULT_CARRY, data_dir

log = logging.getLogger(__name__)

MAX_PASSAGE_CHARS = 900
_STOP_WORDS = (
    "a an the of in on at to for from by with and or but as is are was were be been being this that these those "
    "it its their his her our your we you they he she i not no yes if then than so such which who whom whose what "
    "when where why how all any each some more most other into over under after before during between about also "
    "can could may might must should would will shall do does did has have had there here one two"
)
STOP = frozenset(_STOP_WORDS.split())
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|et al|vs|Dr|Mr|Mrs|Ms|St|U\.S|No|Fig|approx|ca)\.$")
_SENT_END = re.compile(r"[.!?][\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_NUMBER = re.compile(
    r"(?<![\w\-:/.])(?:\$|£|€)?\d[\d,]*(?:\.\d+)?(?:\s?(?:%|percent|million|billion|thousand|years?|months?|weeks?"
    r"|days?|hours?|minutes?|km|kg|mg|miles?|people|times|fold))?(?![\w\-:/])"
)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(rf"(?:\d{{1,2}}\s+)?(?:{_MONTHS})(?:\s+\d{{1,2}})?,?\s+\d{{4}}|(?:{_MONTHS})\s+\d{{1,2}}")
_CAPS = re.compile(
    r"[A-Z][\w'’\-.&]*[\w)]?(?:\s+(?:of|the|and|for|de|du|von|van|on|upon)?\s?[A-Z][\w'’\-&]*[\w)]?)*"
)
_MARKUP = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]{0,500}?>|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_PLAIN = re.compile(r"[\w\-]+(?: [\w\-]+)*")


@dataclass(frozen=True)
class Sentence:
    doc: int
    para: int
    start: int  # char offsets inside the passage text
    end: int


@dataclass
class Doc:
    src: str
    passages: list[str]


# ------------------------------------------------------------------ text sources


def clean_markdown(text: str) -> str:
    """Plain text from a handbook page: no front matter, markup, link targets, list or heading markers."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        text = text[end + 4 :] if end > 0 else text
    text = _LINK.sub(r"\1", _MARKUP.sub(" ", text))
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:#+|[*+-]|\d+\.)\s+", "", line)
        line = re.sub(r"[*_`>|]+", " ", line)
        lines.append(re.sub(r"\s+", " ", line).strip())
    return "\n".join(lines)


def chunk_paragraphs(paragraphs: Iterable[str], max_chars: int = MAX_PASSAGE_CHARS) -> list[str]:
    """Passages of whole sentences up to max_chars (short neighbouring paragraphs are merged)."""
    out: list[str] = []
    cur = ""
    for para in paragraphs:
        for s in split_sentences(para):
            piece = para[s[0] : s[1]]
            if cur and len(cur) + 1 + len(piece) > max_chars:
                out.append(cur)
                cur = ""
            cur = f"{cur} {piece}" if cur else piece
        if cur and len(cur) > max_chars // 2:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return [p for p in out if len(p) >= 120]


def squad_docs(root: Path) -> list[Doc]:
    """Paragraphs of the SQuAD training articles only (validation and held-out articles excluded)."""
    passages, _ = load_squad(root)
    train = set(load_split()["train"])
    by_title: dict[str, list[str]] = {}
    for p in passages:
        if p.title in train:
            by_title.setdefault(p.title, []).append(p.text)
    return [Doc("squad-train", paras) for paras in by_title.values()]


def scifact_docs(root: Path) -> list[Doc]:
    sf = load_scifact(root)
    return [Doc("scifact", chunk_paragraphs([text])) for text in sf.corpus.values()]


def handbook_docs(root: Path) -> list[Doc]:
    pages = sorted((root / "handbook-18f" / "pages").rglob("*.md"))
    docs = []
    for path in pages:
        paras = [p for p in re.split(r"\n\s*\n", clean_markdown(path.read_text(encoding="utf-8"))) if p.strip()]
        chunks = chunk_paragraphs([p.replace("\n", " ") for p in paras])
        if chunks:
            docs.append(Doc("handbook", chunks))
    return docs


# ------------------------------------------------------------------ sentences and answer candidates


def split_sentences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END.finditer(text):
        if _ABBREV.search(text[start : m.start() + 1]):
            continue
        end = m.start() + 1
        if text[start:end].strip():
            spans.append((start, end))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def answer_candidates(sentence: str, recurring: set[str]) -> list[tuple[int, int, str]]:
    """(start, end, type) of entity-, date- and number-like spans, plus recurring content n-grams."""
    found: list[tuple[int, int, str]] = []
    for m in _DATE.finditer(sentence):
        found.append((m.start(), m.end(), "date"))
    for m in _NUMBER.finditer(sentence):
        found.append((m.start(), m.end(), "year" if re.fullmatch(r"1[5-9]\d\d|20\d\d", m.group()) else "number"))
    for m in _CAPS.finditer(sentence):
        span = m.group().rstrip(".,;:")
        parts = span.split()
        if not parts or (m.start() == 0 and len(parts) == 1) or parts[0].lower() in STOP or len(span) < 2:
            continue
        found.append((m.start(), m.start() + len(span), "entity"))
    toks = [(m.start(), m.end(), m.group().lower()) for m in re.finditer(r"[\w\-]+", sentence)]
    for n in (3, 2, 1):
        for i in range(len(toks) - n + 1):
            a, b = toks[i][0], toks[i + n - 1][1]
            if " ".join(w[2] for w in toks[i : i + n]) in recurring and _PLAIN.fullmatch(sentence[a:b]):
                found.append((a, b, "phrase"))
    found.sort(key=lambda x: (x[0], -(x[1] - x[0])))
    out: list[tuple[int, int, str]] = []
    last_end = -1
    for s, e, kind in found:  # longest first at each position, no overlaps
        if s >= last_end and e - s <= 60:
            out.append((s, e, kind))
            last_end = e
    return out


def recurring_phrases(doc: Doc, max_n: int = 3) -> set[str]:
    """Lower-cased content n-grams (1..max_n words) found in at least two sentences of the document."""
    counts: Counter[str] = Counter()
    for p in doc.passages:
        for s, e in split_sentences(p):
            words = re.findall(r"[\w\-]+", p[s:e].lower())
            grams = set()
            for n in range(1, max_n + 1):
                for i in range(len(words) - n + 1):
                    g = words[i : i + n]
                    if g[0] in STOP or g[-1] in STOP or max(len(w) for w in g) < 5 or g[0].isdigit():
                        continue
                    grams.add(" ".join(g))
            counts.update(grams)
    return {g for g, c in counts.items() if 2 <= c <= 6}


# ------------------------------------------------------------------ questions


def wh_word(kind: str, before: str) -> str:
    if kind in ("date", "year"):
        return "when"
    if kind == "number":
        return "how many"
    prev = before.split()[-1].lower() if before.split() else ""
    if kind == "entity" and prev in ("in", "at", "from", "near", "to"):
        return "where"
    if kind == "entity" and prev in ("by", "with"):
        return "who"
    return "what"


def make_question(sentence: str, s: int, e: int, kind: str, rng: random.Random) -> str:
    """A noisy cloze question: the clause around the answer, answer replaced by a wh-word (in place or fronted),
    with a few words dropped and one neighbouring pair swapped."""
    before, after = sentence[:s], sentence[e:]
    lo = max(before.rfind(c) for c in ",;:(") + 1 if len(before.split()) > 12 else 0
    his = [i for i in (after.find(c) for c in ",;:)") if i >= 0]
    hi = min(his) if his and len(after.split()) > 12 else len(after)
    left = before[lo:].split()[-14:]
    right = after[:hi].rstrip(" .!?").split()[:14]
    wh = wh_word(kind, before)
    if rng.random() < 0.5:
        words = [*left, wh, *right]
    else:
        if left and not left[0].isupper() and left[0][:1].isupper() and left[0].lower() in STOP | {"however"}:
            left[0] = left[0].lower()
        words = [wh, *left, *right]
    kept = [w for w in words if w == wh or rng.random() > 0.08]
    if len(kept) > 3 and rng.random() < 0.3:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    q = " ".join(kept).strip(" ,;:")
    return q[:1].upper() + q[1:] + "?"


# ------------------------------------------------------------------ examples


@dataclass
class Generated:
    contexts: list[str]
    examples: list[dict[str, Any]]


def _find_all(low: str, answer_low: str) -> list[int]:
    """Whole-word occurrences of answer_low in low (both lower-cased)."""
    out, i, n = [], low.find(answer_low), len(answer_low)
    while i >= 0:
        if (i == 0 or not low[i - 1].isalnum()) and (i + n == len(low) or not low[i + n].isalnum()):
            out.append(i)
        i = low.find(answer_low, i + 1)
    return out


def examples_for_doc(doc: Doc, rng: random.Random, ctx_id: Callable[[str], int], rare: Callable[[str], bool],
                     per_sentence: int = 2, far_rate: float = 0.5, none_rate: float = 0.1) -> Iterator[dict[str, Any]]:
    """Questions for the sentences of one document. For each answer: with probability none_rate a passage of the
    document without the answer (no-answer example); else, where the answer recurs elsewhere (entities and
    phrases across the document, numbers only inside their own passage) with probability far_rate the context
    without the question's sentence ("far"); otherwise the answer's own passage ("near")."""
    recurring = {g for g in recurring_phrases(doc) if rare(g)}
    lows = [p.lower() for p in doc.passages]
    for pi, passage in enumerate(doc.passages):
        for ss, se in split_sentences(passage):
            sentence = passage[ss:se]
            if len(sentence.split()) < 6:
                continue
            cands = [c for c in answer_candidates(sentence, recurring) if c[2] != "entity" or rare(sentence[c[0]:c[1]])]
            rng.shuffle(cands)
            for s, e, kind in cands[:per_sentence]:
                answer = sentence[s:e]
                alow = answer.lower()
                q = make_question(sentence, s, e, kind, rng)
                if rng.random() < none_rate:
                    empty = [p for p, low in zip(doc.passages, lows, strict=True) if not _find_all(low, alow)]
                    if empty:
                        yield {"q": q, "c": ctx_id(rng.choice(empty)), "s": -1, "a": "", "t": "none"}
                    continue
                far: list[tuple[str, int]] = []
                if rng.random() < far_rate:
                    without = passage[:ss].rstrip() + (" " if ss and se < len(passage) else "") + passage[se:].lstrip()
                    far = [(without, i) for i in _find_all(without.lower(), alow)]
                    if kind in ("entity", "phrase"):
                        for pj, other in enumerate(doc.passages):
                            if pj != pi:
                                far.extend((other, i) for i in _find_all(lows[pj], alow)[:1])
                if far:
                    text, i = rng.choice(far)
                    yield {"q": q, "c": ctx_id(text), "s": i, "a": text[i : i + len(answer)], "t": "far"}
                else:
                    yield {"q": q, "c": ctx_id(passage), "s": ss + s, "a": answer, "t": "near"}


def rarity(docs: list[Doc], max_df: float = 0.003) -> Callable[[str], bool]:
    """True for a span holding a word that occurs in at most max_df of all passages (content words, names)."""
    df: Counter[str] = Counter()
    n = 0
    for d in docs:
        for p in d.passages:
            n += 1
            df.update(set(re.findall(r"[\w\-]+", p.lower())))
    limit = max(2, int(max_df * n))

    def rare(span: str) -> bool:
        return any(df[w] <= limit for w in re.findall(r"[\w\-]+", span.lower()) if w not in STOP)

    return rare


def generate(docs: list[Doc], seed: int = 0, max_examples: int | None = None, per_sentence: int = 2) -> Generated:
    rng = random.Random(seed)
    contexts: list[str] = []
    index: dict[str, int] = {}

    def ctx_id(text: str) -> int:
        if text not in index:
            index[text] = len(contexts)
            contexts.append(text)
        return index[text]

    rare = rarity(docs)
    examples: list[dict[str, Any]] = []
    for doc in docs:
        for ex in examples_for_doc(doc, rng, ctx_id, rare, per_sentence):
            ex["src"] = doc.src
            examples.append(ex)
    rng.shuffle(examples)
    if max_examples is not None:
        examples = examples[:max_examples]
    used = sorted({ex["c"] for ex in examples})
    remap = {old: new for new, old in enumerate(used)}
    for ex in examples:
        ex["c"] = remap[ex["c"]]
    return Generated([contexts[i] for i in used], examples)


def write_synthetic(gen: Generated, path: Path) -> int:
    rows: list[dict[str, Any]] = [{"kind": "ctx", "i": i, "text": t} for i, t in enumerate(gen.contexts)]
    return write_jsonl(path, rows + gen.examples) - len(gen.contexts)


def read_synthetic(path: Path) -> Generated:
    contexts: list[str] = []
    examples: list[dict[str, Any]] = []
    for row in read_jsonl(path):
        if row.get("kind") == "ctx":
            contexts.append(row["text"])
        else:
            examples.append(row)
    return Generated(contexts, examples)


def load_docs(root: Path, sources: list[str]) -> list[Doc]:
    loaders = {"squad": squad_docs, "scifact": scifact_docs, "handbook": handbook_docs}
    docs: list[Doc] = []
    for name in sources:
        docs.extend(loaders[name](root))
    return docs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="wikimem_train synth")
    ap.add_argument("--out", type=Path, default=DEFAULT_CARRY / "data" / "synthetic.jsonl.gz")
    ap.add_argument("--sources", default="squad,scifact,handbook")
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-sentence", type=int, default=3, help="questions per sentence at most")
    a = ap.parse_args(argv)
    docs = load_docs(data_dir(), a.sources.split(","))
    gen = generate(docs, a.seed, a.max_examples, a.per_sentence)
    n = write_synthetic(gen, a.out)
    kinds = Counter(f"{e['src']}/{e['t']}" for e in gen.examples)
    log.info("wrote %d synthetic questions over %d contexts to %s (%.1f MiB): %s", n, len(gen.contexts), a.out,
             a.out.stat().st_size / 2**20, dict(sorted(kinds.items())))
