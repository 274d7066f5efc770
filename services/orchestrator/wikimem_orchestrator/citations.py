"""Citations: map a reader answer (a span inside a chunk) to a quote and spans in the original document.

The quote is the sentence(s) of the chunk around the answer (at most MAX_QUOTE_CHARS, else a window centred on
the answer). Because a chunk's text is exactly doc_text[chunk.start:chunk.end], offsets inside the chunk shift by
chunk.start: quote == doc_text[start:end] and start <= answer_start < answer_end <= end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from wikimem_common.errors import ServiceError
from wikimem_contract.v1 import common_pb2, reader_pb2

MAX_QUOTE_CHARS = 400

# A sentence ends at ., ! or ? followed by whitespace, at a blank line, or at a line break that starts a list
# item, heading, table row or HTML tag. A plain line break does not end a sentence: wiki Markdown is often
# hard-wrapped at 80 columns.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\s*\n[ \t]*\n\s*|\s*\n(?=[ \t]*(?:[-*+][ \t]|\d+[.)][ \t]|#|\||<))")
_WORD_CHARS = re.compile(r"\w")
_LAST_WORD = re.compile(r"([^\s(]*)$")
#: Words after which a period does not end a sentence ("e.g.", "4 p.m.", "D.C."; single letters too).
ABBREVIATIONS = frozenset(
    {
        "e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "no", "fig", "approx", "dept", "inc", "ltd",
        "co", "jr", "sr", "u.s", "d.c", "a.m", "p.m", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec"
    }
)  # fmt: skip


def ends_with_abbreviation(before: str) -> bool:
    """True when the text before a period ends with an abbreviation (or a single letter): no sentence end."""
    word = _LAST_WORD.search(before[-24:])
    last = (word.group(1) if word else "").lower().rstrip(".")
    return last in ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def _boundaries(text: str) -> Iterator[re.Match[str]]:
    """Sentence boundaries of `text` (see _BOUNDARY), except after an abbreviation."""
    for m in _BOUNDARY.finditer(text):
        if m.start() > 0 and text[m.start() - 1] == "." and ends_with_abbreviation(text[: m.start()]):
            continue
        yield m


def sentence_spans(text: str, min_word_chars: int = 3) -> list[tuple[int, int]]:
    """Spans [s, e) of the sentences of `text` as `quote_span` bounds them (so a span inside one quotes exactly
    it), trimmed of white space; pieces with fewer than `min_word_chars` word characters (rules, lone markers)
    are left out."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in [*_boundaries(text), None]:
        end = m.start() if m is not None else len(text)
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if len(_WORD_CHARS.findall(text[s:e])) >= min_word_chars:
            spans.append((s, e))
        if m is not None:
            start = m.end()
    return spans


def quote_span(text: str, start: int, end: int, max_chars: int = MAX_QUOTE_CHARS) -> tuple[int, int]:
    """Span [qs, qe) of the sentence(s) of `text` containing [start, end), trimmed of surrounding whitespace."""
    qs, qe = 0, len(text)
    for m in _boundaries(text):
        if m.end() <= start:
            qs = m.end()
        elif m.start() >= end:
            qe = m.start()
            break
    if qe - qs > max_chars:
        room = max(0, max_chars - (end - start))
        qs = max(qs, start - room // 2)
        qe = min(qe, max(end, qs + max_chars))
        qs = min(qs, start)
    while qs < start and text[qs].isspace():
        qs += 1
    while qe > end and text[qe - 1].isspace():
        qe -= 1
    return qs, qe


def build_citation(chunk: common_pb2.Chunk, answer: reader_pb2.ReadAnswer) -> common_pb2.Citation:
    text = chunk.text
    start, end = int(answer.start), int(answer.end)
    if not 0 <= start < end <= len(text):
        raise ServiceError(
            f"reader returned the span [{start}, {end}) for chunk {chunk.chunk_id}, which has {len(text)} characters"
        )
    qs, qe = quote_span(text, start, end)
    return common_pb2.Citation(
        doc_id=chunk.doc_id,
        revision=chunk.revision,
        title=chunk.title,
        source=chunk.source,
        chunk_id=chunk.chunk_id,
        start=chunk.start + qs,
        end=chunk.start + qe,
        quote=text[qs:qe],
        answer_start=chunk.start + start,
        answer_end=chunk.start + end,
        score=answer.score,
    )
