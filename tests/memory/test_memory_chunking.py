"""Chunking: exact offsets on random documents (non-ASCII, CRLF / CR / LF, code fences, lists), titles, headings."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest

from wikimem_memory.chunking import chunk_document, embedding_text

#: Random documents per run (raise it to soak the chunker: WIKIMEM_CHUNK_SEEDS=2000).
SEEDS = int(os.environ.get("WIKIMEM_CHUNK_SEEDS", "60"))

WORDS = [
    "laptop",
    "onboarding",
    "café",
    "naïve",
    "Straße",
    "東京",
    "日本語の文",
    "emoji🙂",
    "👩‍💻",
    "e\u0301",
    "שלום",
    "مرحبا",
    "x\u200by",
    "tab\there",
    "nbsp\u00a0word",
    "zero",
    "18F",
    "GSA",
    "policy.",
    "why?",
    "yes!",
    "(see",
    "docs)",
    "“quoted”",
    "it’s",
    "a",
    "the",
    "of",
    "—",
    "…",
    "\U0001d11e",
    "\u2028sep",
]


@dataclass
class Placed:
    start: int
    end: int
    heading: str


def random_document(rng: random.Random) -> tuple[str, list[Placed], str | None]:
    """A random Markdown document; returns it, the spans of the words it placed in paragraphs (with the heading
    path they sit under) and the front-matter title if any."""
    newline = rng.choice(["\n", "\r\n", "\r", "\n"])
    parts: list[str] = []
    placed: list[Placed] = []
    pos = 0

    def emit(s: str) -> None:
        nonlocal pos
        parts.append(s)
        pos += len(s)

    title = None
    if rng.random() < 0.5:
        title = f"Doc {rng.randint(1, 999)} ✓"
        emit(f'---{newline}title: "{title}"{newline}tags: [a, b]{newline}# not a heading{newline}---{newline}')
    stack: list[str] = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.5:
            level = rng.randint(1, 4)
            name = " ".join(rng.choice(WORDS[:20]).replace("\t", " ").replace("\u2028", "") for _ in range(2)).strip()
            name = name or "H"
            stack = stack[: level - 1] + [""] * max(0, level - 1 - len(stack)) + [name]
            emit(f"{'#' * level} {name}{newline}{newline}")
        heading = " > ".join(s for s in stack if s)
        kind = rng.random()
        if kind < 0.15:
            emit(f"```{newline}# comment, not a heading{newline}{newline}code = 1{newline}```{newline}{newline}")
            continue
        n_words = rng.choice([1, 5, 30, 120, 400, 900])
        for i in range(n_words):
            word = rng.choice(WORDS)
            if i and rng.random() < 0.08:
                emit(newline + ("- " if rng.random() < 0.5 else ""))
            elif i:
                emit(rng.choice([" ", " ", " ", "  ", "\t"]))
            s = pos
            emit(word)
            placed.append(Placed(s, pos, heading))
        emit(newline + newline * rng.randint(1, 2))
    return "".join(parts), placed, title


@pytest.mark.parametrize("seed", range(SEEDS))
def test_offsets_are_exact_and_every_word_is_covered(seed: int) -> None:
    rng = random.Random(seed)
    text, placed, fm_title = random_document(rng)
    target, max_words, overlap = rng.choice([(200, 250, 40), (30, 40, 10), (8, 12, 3)])
    doc = chunk_document(text, doc_id="random.md", target_words=target, max_words=max_words, overlap_words=overlap)
    if fm_title:
        assert doc.title == fm_title
    previous_start = -1
    for i, chunk in enumerate(doc.chunks):
        assert chunk.ordinal == i
        assert doc.body_start <= chunk.start < chunk.end <= len(text)
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip() and not chunk.text[0].isspace() and not chunk.text[-1].isspace()
        assert chunk.words <= max_words
        assert chunk.start >= previous_start
        previous_start = chunk.start
    covered = bytearray(len(text))
    for chunk in doc.chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    for word in placed:
        for i in range(word.start, word.end):
            assert covered[i] or text[i].isspace(), f"{text[word.start : word.end]!r} at {i} is in no chunk"
    # The heading path of the chunk that starts with a placed word is that word's heading path.
    starts = {w.start: w.heading for w in placed}
    for chunk in doc.chunks:
        if chunk.start in starts:
            assert chunk.heading == starts[chunk.start]


def test_title_front_matter_heading_and_file_name() -> None:
    fm = "---\ntitle: From front matter\nlayout: x\n---\n\n# Heading One\n\nBody text here.\n"
    doc = chunk_document(fm, source="pages/a.md")
    assert doc.title == "From front matter"
    assert all("layout" not in c.text and "front matter" not in c.text for c in doc.chunks)
    assert chunk_document("intro\n\n## Two\n\n# One\n\ntext", source="x.md").title == "One"
    assert chunk_document("just words, no heading", source="dir/Leave policy.md").title == "Leave policy"
    assert chunk_document("just words", doc_id="hr/faq").title == "faq"
    assert chunk_document("# Ignored\n\ntext", title="Given").title == "Given"


def test_sections_keep_heading_paths_and_code_fences_are_not_headings() -> None:
    text = (
        "# Handbook\n\nWelcome to the handbook. " + "word " * 80 + "\n\n"
        "## Laptops\n\nAsk IT for a laptop on day one. " + "more " * 80 + "\n\n"
        "### Linux\n\n```bash\n# install packages\nsudo apt install git\n```\n\nLinux laptops are supported. "
        + "text " * 80
        + "\n\n## Leave\n\nYou get 13 days of leave. "
        + "days " * 80
    )
    doc = chunk_document(text, source="handbook.md")
    headings = [c.heading for c in doc.chunks]
    assert headings == ["Handbook", "Handbook > Laptops", "Handbook > Laptops > Linux", "Handbook > Leave"]
    linux = doc.chunks[2]
    assert "# install packages" in linux.text and "sudo apt install git" in linux.text
    assert embedding_text(doc.title, linux.heading, "t") == "Handbook > Handbook > Laptops > Linux\n\nt"


def test_long_sections_split_near_target_with_small_overlap() -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail here." for i in range(120)]
    text = "# Long\n\n" + " ".join(sentences[:60]) + "\n\n" + " ".join(sentences[60:])
    doc = chunk_document(text, target_words=100, max_words=130, overlap_words=25)
    assert len(doc.chunks) >= 10
    assert all(c.words <= 130 for c in doc.chunks)
    assert all(c.words >= 50 for c in doc.chunks[:-1])
    # Neighbouring chunks inside a paragraph overlap by at most a couple of sentences.
    overlaps = [a.end - b.start for a, b in zip(doc.chunks, doc.chunks[1:], strict=False) if b.start < a.end]
    assert overlaps and all(0 < o < 200 for o in overlaps)
    # Chunks end at sentence boundaries.
    assert all(c.text.endswith(".") for c in doc.chunks)


def test_plain_text_crlf_and_unsplittable_runs() -> None:
    text = "# not a heading in plain text\r\n\r\n" + ("línea " * 700) + "\r\n\r\nfin"
    doc = chunk_document(text, source="notes.txt", target_words=200, max_words=250)
    assert doc.title == "notes"
    assert doc.chunks[0].text.startswith("# not a heading") and doc.chunks[0].heading == ""
    for c in doc.chunks:
        assert text[c.start : c.end] == c.text and c.words <= 250
    assert doc.chunks[-1].text.endswith("fin")


def test_front_matter_only_or_headings_only_gives_no_chunks() -> None:
    assert chunk_document("---\ntitle: Empty\n---\n\n# Just a heading\n\n## And another\n").chunks == []
