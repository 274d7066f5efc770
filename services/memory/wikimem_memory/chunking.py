"""Markdown / plain text → retrieval chunks with exact character offsets.

A Markdown document may start with YAML front matter (its `title` names the document; the block itself is not
indexed). The body is split by ATX headings (outside fenced code) into sections, each section into units
(paragraphs; over-long paragraphs into sentences / list items, then lines, then word windows), and units are
packed into chunks of about `target_words` words (never more than `max_words`), carrying up to `overlap_words`
words of trailing sentences into the next chunk of the same section.

Every offset is a Python str index (Unicode code point) into the *original* text, and a chunk's text is always
`text[start:end]` — nothing is normalised (CRLF, tabs and odd Unicode stay as they are).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import yaml

from wikimem_common.markup import mask_markup

PLAIN_TEXT_SUFFIXES = (".txt", ".text", ".log", ".rst")

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_OPEN = re.compile(r"\A\ufeff?---[ \t]*(?:\r\n|\r|\n)")
_FRONT_CLOSE = re.compile(r"(?:---|\.\.\.)[ \t]*")
#: Sentence ends (followed by whitespace) and line breaks that start a list item or table row.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'’”)\]]*(?=\s)|(?:\r\n|\r|\n)(?=[ \t]*(?:[-*+]|\d{1,3}[.)]|\|)[ \t])")
_NEWLINE = re.compile(r"\r\n|\r|\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    start: int
    end: int
    text: str
    #: Heading path above the chunk: "Getting started > Laptops" ("" before the first heading).
    heading: str
    words: int


@dataclass(frozen=True)
class ChunkedDocument:
    title: str
    #: Where the indexed body starts (after front matter).
    body_start: int
    chunks: list[Chunk]


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    words: int
    para_start: bool


@dataclass(frozen=True)
class _Section:
    heading: str
    start: int
    end: int


def embedding_text(title: str, heading: str, text: str) -> str:
    """What the embedder sees for a chunk: its place in the document, then the text with markup blanked."""
    context = f"{title} > {heading}" if heading and title else (heading or title)
    text = mask_markup(text)
    return f"{context}\n\n{text}" if context else text


def is_plain_text(name: str) -> bool:
    return name.lower().endswith(PLAIN_TEXT_SUFFIXES)


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(start, content end, end incl. newline) of each line in text[start:end]."""
    for m in _LINE.finditer(text, start, end):
        s, e = m.span()
        if s == e:
            continue
        content_end = e
        while content_end > s and text[content_end - 1] in "\r\n":
            content_end -= 1
        yield s, content_end, e


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _word_count(text: str, start: int, end: int) -> int:
    return len(text[start:end].split())


def front_matter(text: str) -> tuple[dict[str, object], int]:
    """The parsed YAML front matter (empty if none / unparsable) and where the body starts."""
    opening = _FRONT_OPEN.match(text)
    if not opening:
        return {}, 0
    for line_start, content_end, line_end in _lines(text, opening.end(), len(text)):
        if _FRONT_CLOSE.fullmatch(text, line_start, content_end):
            try:
                data = yaml.safe_load(text[opening.end() : line_start])
            except yaml.YAMLError:
                data = None
            return (data if isinstance(data, dict) else {}), line_end
    return {}, 0


def _sections(text: str, start: int, end: int, markdown: bool) -> tuple[list[_Section], str]:
    """Split text[start:end] at headings; also returns the first level-1 heading ('' if none)."""
    if not markdown:
        return [_Section("", start, end)], ""
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    first_h1 = ""
    section_start = start
    heading = ""
    fence: str | None = None
    for line_start, content_end, line_end in _lines(text, start, end):
        line = text[line_start:content_end]
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0] and len(fence_match.group(1)) >= len(fence):
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        m = _HEADING.match(line)
        if not m:
            continue
        sections.append(_Section(heading, section_start, line_start))
        level = len(m.group(1))
        title = _CLOSING_HASHES.sub("", m.group(2) or "").strip()
        if level == 1 and not first_h1 and title:
            first_h1 = title
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        heading = " > ".join(t for _, t in stack if t)
        section_start = line_end
    sections.append(_Section(heading, section_start, end))
    return sections, first_h1


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Runs of non-blank lines; blank lines inside fenced code do not end a paragraph."""
    para_start: int | None = None
    para_end = start
    fence: str | None = None
    for line_start, content_end, _line_end in _lines(text, start, end):
        line = text[line_start:content_end]
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0] and len(fence_match.group(1)) >= len(fence):
                fence = None
        elif fence_match:
            fence = fence_match.group(1)
        if not line.strip() and fence is None:
            if para_start is not None:
                yield para_start, para_end
                para_start = None
            continue
        if para_start is None:
            para_start = line_start
        para_end = content_end
    if para_start is not None:
        yield para_start, para_end


def _split_at(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    cursor = start
    for m in pattern.finditer(text, start, end):
        cut = m.end() if m.group(0)[0] not in "\r\n" else m.start()
        if cut > cursor:
            pieces.append((cursor, cut))
            cursor = cut
    if cursor < end:
        pieces.append((cursor, end))
    return pieces


def _word_windows(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    words = [m.span() for m in _WORD.finditer(text, start, end)]
    return [(words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size)]


def _units(text: str, start: int, end: int, target: int, max_words: int) -> list[_Unit]:
    units: list[_Unit] = []
    for p_start, p_end in _paragraphs(text, start, end):
        p_start, p_end = _trim(text, p_start, p_end)
        if p_start >= p_end:
            continue
        words = _word_count(text, p_start, p_end)
        if words <= target:
            units.append(_Unit(p_start, p_end, words, True))
            continue
        first = True
        for s_start, s_end in _split_at(text, p_start, p_end, _SENTENCE_END):
            for l_start, l_end in (
                _split_at(text, s_start, s_end, _NEWLINE)
                if _word_count(text, s_start, s_end) > max_words
                else [(s_start, s_end)]
            ):
                for w_start, w_end in (
                    _word_windows(text, l_start, l_end, max_words)
                    if _word_count(text, l_start, l_end) > max_words
                    else [(l_start, l_end)]
                ):
                    u_start, u_end = _trim(text, w_start, w_end)
                    if u_start < u_end:
                        units.append(_Unit(u_start, u_end, _word_count(text, u_start, u_end), first))
                        first = False
    return units


def _pack(units: list[_Unit], target: int, max_words: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of units into (start, end) spans, with a small overlap of trailing sentences."""
    spans: list[tuple[int, int, int]] = []  # start, end, words
    current: list[_Unit] = []
    words = 0
    for unit in units:
        if current and words + unit.words > target:
            spans.append((current[0].start, current[-1].end, words))
            carry: list[_Unit] = []
            carried = 0
            for prev in reversed(current[1:]):
                if carried + prev.words > overlap:
                    break
                carry.insert(0, prev)
                carried += prev.words
            if carried + unit.words > max_words:
                carry, carried = [], 0
            current, words = carry, carried
        current.append(unit)
        words += unit.words
    if current:
        spans.append((current[0].start, current[-1].end, words))
    # A short tail joins the chunk before it when both fit in one.
    if len(spans) >= 2 and spans[-1][2] < target // 4:
        (a_start, _a_end, a_words), (_b_start, b_end, b_words) = spans[-2], spans[-1]
        if a_words + b_words <= max_words:
            spans[-2:] = [(a_start, b_end, a_words + b_words)]
    return [(s, e) for s, e, _ in spans]


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    words: int
    heading: str
    first_in_section: bool
    last_in_section: bool


def _merge_small_sections(text: str, pieces: list[_Piece], target: int) -> list[_Piece]:
    """Join a short section with its neighbour (the later heading line stays in the text) while both fit in one
    chunk, so a two-line section does not become a chunk of its own; the heading is the first section's."""
    out: list[_Piece] = []
    for piece in pieces:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.last_in_section
            and piece.first_in_section
            and min(prev.words, piece.words) < target // 4
            and _word_count(text, prev.start, piece.end) <= target
        ):
            out[-1] = _Piece(
                prev.start,
                piece.end,
                _word_count(text, prev.start, piece.end),
                prev.heading,
                prev.first_in_section,
                piece.last_in_section,
            )
        else:
            out.append(piece)
    return out


def _fallback_title(source: str, doc_id: str) -> str:
    name = PurePosixPath((source or doc_id).replace("\\", "/").rstrip("/")).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return stem or doc_id


def chunk_document(
    text: str,
    *,
    doc_id: str = "",
    source: str = "",
    title: str = "",
    plain_text: bool | None = None,
    target_words: int = 200,
    max_words: int = 250,
    overlap_words: int = 40,
) -> ChunkedDocument:
    """Chunk a document. Title: `title` if given, else front matter `title`, else the first `#` heading, else the
    file name of `source` / `doc_id`. Plain text (no front matter / headings) when `plain_text`, or by default
    when the source / doc id ends with a plain-text suffix."""
    if plain_text is None:
        plain_text = is_plain_text(source or doc_id)
    meta, body_start = ({}, 0) if plain_text else front_matter(text)
    sections, first_h1 = _sections(text, body_start, len(text), markdown=not plain_text)
    fm_title = meta.get("title")
    resolved = (
        title.strip()
        or (str(fm_title).strip() if isinstance(fm_title, str | int | float) else "")
        or first_h1
        or _fallback_title(source, doc_id)
    )
    pieces: list[_Piece] = []
    for section in sections:
        units = _units(text, section.start, section.end, target_words, max_words)
        spans = _pack(units, target_words, max_words, overlap_words)
        for i, (start, end) in enumerate(spans):
            words = _word_count(text, start, end)
            pieces.append(_Piece(start, end, words, section.heading, i == 0, i == len(spans) - 1))
    chunks = [
        Chunk(ordinal=i, start=p.start, end=p.end, text=text[p.start : p.end], heading=p.heading, words=p.words)
        for i, p in enumerate(_merge_small_sections(text, pieces, target_words))
    ]
    return ChunkedDocument(title=resolved, body_start=body_start, chunks=chunks)
