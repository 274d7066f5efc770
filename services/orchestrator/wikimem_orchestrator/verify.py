"""Citation assignment and verification for generated answers, done outside the model.

A generative reader writes sentences in its own words; nothing guarantees they come from the passages (a small
model may fall back on what it memorised: "Paris" where the passage now says "Rome"). So each answer sentence
is checked against spans of the passages (their sentences):

1. **Candidates** — the passage sentences sharing the most content words with it (stemmed, stopwords dropped;
   words the question already has count half, so echoing the question proves little).
2. **Support** — `lexical_weight * lexical + (1 - lexical_weight) * semantic`, where lexical is that weighted
   share of the sentence's content words found in the span, and semantic is the cosine of their embeddings
   (the embedder's, when one is given; lexical alone otherwise).
3. **Key terms** — every number and name in the sentence (tokens with digits, number words, capitalised words
   after the first) must appear in the supporting spans or in the question: a swapped entity or number never
   passes on overlap. A second span may add missing key terms only from the same passage.

A sentence is verified when up to `max_spans` spans together cover its key terms and their pooled support
(words of the spans together, best similarity) reaches `threshold`.
Pure functions; the orchestrator wires them to the embedder and turns the result into citations
(grounding.py). Thresholds were measured on labelled cases (bench/verify_support.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import Stemmer

from .citations import ends_with_abbreviation

#: texts -> L2-normalised embeddings, one row per text.
Embed = Callable[[list[str]], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class VerifyConfig:
    #: Support a span needs to count (0..1).
    threshold: float = 0.55
    #: Weight of lexical overlap against embedding similarity.
    lexical_weight: float = 0.5
    #: Spans one sentence may cite together (a sentence may join facts from two places).
    max_spans: int = 2
    #: Candidate spans per sentence, by lexical overlap, that are embedded and scored.
    candidates: int = 4


@dataclass(frozen=True)
class Span:
    """A candidate supporting span: passages[passage][start:end] == text."""

    passage: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Support:
    span: Span
    score: float
    lexical: float
    semantic: float


@dataclass(frozen=True)
class CheckedSentence:
    text: str
    #: Span of the sentence in the generated text.
    start: int
    end: int
    verified: bool
    #: The supporting spans when verified (best first); else the best candidate, if any, for inspection.
    supports: tuple[Support, ...]
    #: Support of the chosen spans together (their words pooled, the best embedding similarity).
    support: float
    note: str = ""


# --- text ------------------------------------------------------------------------------------------------------

# End of a sentence: ., ! or ? (plus closing quotes/brackets) then white space; or a line break that starts a
# list item, heading or table row; or a blank line.
_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|\n[ \t]*\n|\n(?=[ \t]*(?:[-*+][ \t]|\d+[.)][ \t]|#|\|))")
_MARKERS = re.compile(
    r"\s*(?:\[(?:\d+(?:\s*[,;–-]\s*\d+)*)\]|\((?:passages?|documents?|sources?)\s*\d+(?:\s*(?:,|and)\s*\d+)*\))",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*(?:[.,:/-][^\W_]+)*", re.UNICODE)

STOPWORDS = frozenset(
    {
        "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at",
        "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
        "did", "do", "does", "doing", "done", "during", "each", "either", "else", "for", "from", "further",
        "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "however", "i", "if",
        "in", "into", "is", "it", "its", "itself", "just", "may", "me", "might", "more", "most", "must", "my",
        "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out",
        "over", "own", "per", "same", "shall", "she", "should", "since", "so", "some", "such", "than", "that",
        "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "thus",
        "to", "too", "under", "until", "up", "upon", "us", "very", "via", "was", "we", "were", "what", "when",
        "where", "whether", "which", "while", "who", "whom", "whose", "why", "will", "with", "within",
        "without", "would", "yes", "yet", "you", "your", "yours", "answer", "passage", "passages", "document",
        "according", "based"
    }
)

NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
        ]
    )
}

#: Spellings that name the same thing in addresses and titles.
ABBREVIATIONS = {
    "street": "st", "avenue": "ave", "road": "rd", "boulevard": "blvd", "suite": "ste", "room": "rm",
    "building": "bldg", "department": "dept", "northwest": "nw", "northeast": "ne", "southwest": "sw",
    "southeast": "se", "number": "no", "versus": "vs",
}
_INITIALS = re.compile(r"(?:[a-z]\.)+[a-z]")

_local = threading.local()


def _stem(words: list[str]) -> list[str]:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return list(stemmer.stemWords(words))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of `text`, trimmed of surrounding white space; abbreviations such as "e.g." or
    "D.C." and decimal points do not end a sentence."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        if m.group(0).startswith(".") and ends_with_abbreviation(text[start : m.start()]):
            continue
        end = m.end() if not m.group(0).startswith("\n") else m.start()
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if any(ch.isalnum() for ch in text[s:e]):
            out.append((s, e))
    return out


def strip_markers(sentence: str) -> str:
    """The sentence without citation markers a model may add ("[1]", "[2, 3]", "(Passage 2)")."""
    return " ".join(_MARKERS.sub("", sentence).split())


def words(text: str) -> list[str]:
    """Lower-cased words, possessive 's dropped ("Tower's" → "tower")."""
    return [w.lower().replace("’", "'").removesuffix("'s") for w in _WORD.findall(text)]


def content_terms(text: str) -> set[str]:
    """Stemmed, lower-cased words of `text` without stopwords."""
    kept = [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return set(_stem(kept)) if kept else set()


def key_terms(sentence: str) -> list[str]:
    """Numbers and names: words with a digit, number words, and capitalised words that do not start the sentence."""
    found: list[str] = []
    for i, m in enumerate(_WORD.finditer(sentence)):
        word = m.group(0).replace("’", "'").removesuffix("'s")
        lower = word.lower()
        name = word[0].isupper() and lower not in STOPWORDS and (i > 0 or (len(word) > 1 and word.isupper()))
        if name or lower in NUMBER_WORDS or any(ch.isdigit() for ch in word):
            found.append(word)
    return list(dict.fromkeys(found))


def _canonical(word: str) -> str:
    """One spelling for key-term matching: "d.c" → "dc", "street" → "st", "one" → "1"."""
    if _INITIALS.fullmatch(word):
        word = word.replace(".", "")
    return NUMBER_WORDS.get(word) or ABBREVIATIONS.get(word, word)


def _normal(text: str) -> str:
    """For key-term matching: canonical lower-cased words, dashes unified, joined by single spaces, a space at
    both ends."""
    found = words(text.replace("–", "-").replace("—", "-"))
    return " " + " ".join(_canonical(w) for w in found) + " "


def mentions(haystack_normal: str, term: str) -> bool:
    """Whether a `_normal` text contains `term` as whole words (a single word also by its stem: "Romes")."""
    needle = _normal(term).strip()
    if not needle or f" {needle} " in haystack_normal:
        return True
    if " " in needle or not needle.isalpha():
        return False
    stem = _stem([needle])[0]
    return stem in _stem([w for w in set(haystack_normal.split()) if w.isalpha()])


# --- scoring ---------------------------------------------------------------------------------------------------


def lexical_support(sentence_terms: set[str], question_terms: set[str], span_terms: set[str]) -> float:
    """Weighted share of the sentence's content terms found in the span (question terms weigh half)."""
    if not sentence_terms:
        return 0.0
    weight = {t: 0.5 if t in question_terms else 1.0 for t in sentence_terms}
    total = sum(weight.values())
    return sum(w for t, w in weight.items() if t in span_terms) / total


def passage_spans(passages: Sequence[str]) -> list[Span]:
    return [Span(i, s, e, text[s:e]) for i, text in enumerate(passages) for s, e in split_sentences(text)]


def check_answer(
    question: str,
    answer: str,
    passages: Sequence[str],
    embed: Embed | None = None,
    config: VerifyConfig | None = None,
) -> list[CheckedSentence]:
    """Each sentence of `answer`, verified or not, with its supporting spans of `passages`."""
    cfg = config or VerifyConfig()
    spans = passage_spans(passages)
    span_terms = [content_terms(s.text) for s in spans]
    span_normal = [_normal(s.text) for s in spans]
    question_terms = content_terms(question)
    question_normal = _normal(question)
    all_normal = _normal(" \n ".join(passages))

    sentences = [(s, e, strip_markers(answer[s:e])) for s, e in split_sentences(answer)]
    sentences = [(s, e, t) for s, e, t in sentences if any(ch.isalnum() for ch in t)]
    terms = [content_terms(t) for _, _, t in sentences]
    keys = [[k for k in key_terms(t) if not mentions(question_normal, k)] for _, _, t in sentences]
    lexical = [[lexical_support(t, question_terms, st) for st in span_terms] for t in terms]
    candidates: list[list[int]] = []
    for i, row in enumerate(lexical):
        best = [j for j in sorted(range(len(spans)), key=lambda j: -row[j])[: cfg.candidates] if row[j] > 0]
        # spans naming a key term of the sentence are candidates too (a fact may sit in a short span)
        naming = [j for j in range(len(spans)) if j not in best and any(mentions(span_normal[j], k) for k in keys[i])]
        candidates.append(best + naming[: cfg.candidates])

    semantic: dict[tuple[int, int], float] = {}
    if embed is not None and any(candidates):
        needed = sorted({j for chosen in candidates for j in chosen})
        vectors = embed([t for _, _, t in sentences] + [spans[j].text for j in needed])
        sent_vecs, span_vecs = vectors[: len(sentences)], vectors[len(sentences) :]
        column = {j: k for k, j in enumerate(needed)}
        for i, chosen in enumerate(candidates):
            for j in chosen:
                semantic[(i, j)] = max(0.0, float(sent_vecs[i] @ span_vecs[column[j]]))

    w = cfg.lexical_weight if embed is not None else 1.0
    out: list[CheckedSentence] = []
    for i, (start, end, text) in enumerate(sentences):
        if not candidates[i]:
            absent = [k for k in keys[i] if not mentions(all_normal, k)]
            note = f"no passage mentions {', '.join(map(repr, absent))}" if absent else "no passage shares its words"
            out.append(CheckedSentence(text, start, end, False, (), 0.0, note))
            continue
        scored = {
            j: Support(spans[j], w * lexical[i][j] + (1 - w) * semantic.get((i, j), 0.0), lexical[i][j],
                       semantic.get((i, j), 0.0))
            for j in candidates[i]
        }

        def covered(j: int, wanted: list[str]) -> list[str]:
            return [k for k in wanted if mentions(span_normal[j], k)]

        # the span covering most key terms (then best support), plus spans of the same passage covering what it
        # misses (joining passages would let "the tower is in Paris" pass on "Paris is ..." + "The tower ...")
        first = max(scored, key=lambda j: (len(covered(j, keys[i])), scored[j].score))
        chosen = [first]
        missing = [k for k in keys[i] if k not in covered(first, keys[i])]
        for j in sorted(scored, key=lambda j: -scored[j].score):
            if not missing or len(chosen) == cfg.max_spans:
                break
            if j not in chosen and spans[j].passage == spans[first].passage and covered(j, missing):
                chosen.append(j)
                missing = [k for k in missing if k not in covered(j, missing)]
        def pooled(group: list[int], i: int = i) -> float:
            union = set().union(*(span_terms[j] for j in group))
            lexical_part = lexical_support(terms[i], question_terms, union)
            return w * lexical_part + (1 - w) * max(semantic.get((i, j), 0.0) for j in group)

        score = pooled(chosen)
        if score < cfg.threshold and len(chosen) < cfg.max_spans:
            # a sentence may also join two statements of one passage ("report incidents" + "within 1 hour")
            same = [j for j in scored if j not in chosen and spans[j].passage == spans[first].passage]
            if same:
                extra = max(same, key=lambda j: pooled([*chosen, j]))
                if pooled([*chosen, extra]) > score:
                    chosen.append(extra)
                    score = pooled(chosen)
        supports = tuple(sorted((scored[j] for j in chosen), key=lambda s: -s.score))
        if score >= cfg.threshold and not missing:
            out.append(CheckedSentence(text, start, end, True, supports, score))
            continue
        absent = [k for k in missing if not mentions(all_normal, k)]
        if absent:
            note = f"no passage mentions {', '.join(map(repr, absent))}"
        elif missing:
            note = f"no passage span with its other words mentions {', '.join(map(repr, missing))}"
        else:
            note = f"support {score:.2f} < {cfg.threshold:.2f}"
        out.append(CheckedSentence(text, start, end, False, supports[:1], score, note))
    return out
