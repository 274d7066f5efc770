"""Typed records for the wiki-qa files and the dev/test split.

Files live in `bench/data/wiki_qa/`: `<corpus>.jsonl` holds questions, `<corpus>-edits.jsonl` edit scenarios, one JSON
object a line; `<corpus>` is the folder name under `../shared/data` and a doc id is a page's path relative to that
corpus's `pages/` folder. The split into dev and test is by page and computed, never hand-picked (`split_of`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where the question and edit files live.
WIKI_QA_DIR = REPO_ROOT / "bench" / "data" / "wiki_qa"
#: The shared data root (`<corpus>/pages/<doc_id>`); read-only, outside the project.
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
EDITS_SUFFIX = "-edits"

ANSWERABLE_KINDS = ("fact", "list", "table", "heading", "two-sentence")
KINDS = (*ANSWERABLE_KINDS, "unanswerable")
Split = Literal["dev", "test"]

_QUESTION_REQUIRED = {"id", "corpus", "doc_id", "question", "answers", "evidence", "kind", "answerable"}
_QUESTION_OPTIONAL = {"why", "alt_doc_ids"}
_EDIT_REQUIRED = {"id", "corpus", "doc_id", "question", "find", "replace", "old_answer", "new_answer"}


class FormatError(ValueError):
    """A line that is not a well-formed record; the message says which field and what is wrong."""


@dataclass(frozen=True)
class WikiQuestion:
    """A question answered (or, for a near miss, not answered) by one page of a corpus."""

    id: str
    corpus: str
    doc_id: str
    question: str
    answers: tuple[str, ...]
    evidence: str
    kind: str
    answerable: bool
    why: str = ""
    alt_doc_ids: tuple[str, ...] = ()

    @property
    def doc_ids(self) -> tuple[str, ...]:
        """The main page and every other page that states the answer."""
        return (self.doc_id, *self.alt_doc_ids)

    @property
    def split(self) -> Split:
        return split_of(self.corpus, self.doc_id)


@dataclass(frozen=True)
class EditScenario:
    """A page edit that changes the answer to `question` from `old_answer` to `new_answer`."""

    id: str
    corpus: str
    doc_id: str
    question: str
    find: str
    replace: str
    old_answer: str
    new_answer: str

    @property
    def split(self) -> Split:
        return split_of(self.corpus, self.doc_id)

    def apply(self, page: str) -> str:
        """The page text after the edit; `find` must occur exactly once."""
        count = page.count(self.find)
        if count != 1:
            raise ValueError(f"{self.id}: `find` occurs {count} times on {self.doc_id}, expected exactly once")
        return page.replace(self.find, self.replace)


def split_of(corpus: str, doc_id: str) -> Split:
    """'test' for half of the pages, 'dev' for the other half, fixed by a hash of `corpus/doc_id`."""
    digest = hashlib.sha256(f"{corpus}/{doc_id}".encode()).hexdigest()
    return "test" if int(digest[:8], 16) % 100 < 50 else "dev"


def _string(obj: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise FormatError(f"`{key}` must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise FormatError(f"`{key}` is empty")
    return value


def _strings(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise FormatError(f"`{key}` must be a list of non-empty strings")
    return tuple(value)


def _keys(obj: Any, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FormatError("a line must be one JSON object")
    missing = sorted(required - obj.keys())
    if missing:
        raise FormatError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(obj.keys() - required - optional)
    if unknown:
        raise FormatError(f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(required | optional))})")
    return obj


def parse_question(obj: Any) -> WikiQuestion:
    """A question record from one decoded JSON line; `FormatError` says what is malformed."""
    obj = _keys(obj, _QUESTION_REQUIRED, _QUESTION_OPTIONAL)
    kind = _string(obj, "kind")
    if kind not in KINDS:
        raise FormatError(f"`kind` {kind!r} is not one of {', '.join(KINDS)}")
    answerable = obj["answerable"]
    if not isinstance(answerable, bool):
        raise FormatError("`answerable` must be true or false")
    why = obj.get("why", "")
    if not isinstance(why, str):
        raise FormatError("`why` must be a string")
    return WikiQuestion(
        id=_string(obj, "id"),
        corpus=_string(obj, "corpus"),
        doc_id=_string(obj, "doc_id"),
        question=_string(obj, "question"),
        answers=_strings(obj, "answers"),
        evidence=_string(obj, "evidence", allow_empty=True),
        kind=kind,
        answerable=answerable,
        why=why,
        alt_doc_ids=_strings(obj, "alt_doc_ids"),
    )


def parse_edit(obj: Any) -> EditScenario:
    """An edit scenario from one decoded JSON line; `FormatError` says what is malformed."""
    obj = _keys(obj, _EDIT_REQUIRED, set())
    return EditScenario(**{key: _string(obj, key) for key in sorted(_EDIT_REQUIRED)})


def read_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON) for each non-blank line; `FormatError` names the line that is not JSON."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise FormatError(f"{path.name}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc


def _load(path: Path, parse: Any) -> list[Any]:
    records = []
    for number, obj in read_lines(path):
        try:
            records.append(parse(obj))
        except FormatError as exc:
            raise FormatError(f"{path.name}:{number}: {exc}") from exc
    return records


def load_questions(path: Path) -> list[WikiQuestion]:
    """Every question of a `<corpus>.jsonl` file, in file order."""
    questions: list[WikiQuestion] = _load(path, parse_question)
    return questions


def load_edits(path: Path) -> list[EditScenario]:
    """Every edit scenario of a `<corpus>-edits.jsonl` file, in file order."""
    edits: list[EditScenario] = _load(path, parse_edit)
    return edits


def question_path(corpus: str, directory: Path = WIKI_QA_DIR) -> Path:
    return directory / f"{corpus}.jsonl"


def edits_path(corpus: str, directory: Path = WIKI_QA_DIR) -> Path:
    return directory / f"{corpus}{EDITS_SUFFIX}.jsonl"


def corpora(directory: Path = WIKI_QA_DIR) -> list[str]:
    """The corpora that have a question or an edit file in `directory`, sorted."""
    names = {p.stem.removesuffix(EDITS_SUFFIX) for p in directory.glob("*.jsonl")}
    return sorted(names)


def split(questions: list[WikiQuestion], which: Split) -> list[WikiQuestion]:
    """The questions whose page falls in `which` ('dev' or 'test')."""
    if which not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', not {which!r}")
    return [q for q in questions if q.split == which]


def page_path(data_root: Path, corpus: str, doc_id: str) -> Path:
    return data_root / corpus / "pages" / doc_id


def read_page(data_root: Path, corpus: str, doc_id: str) -> str:
    """The raw text of a page, as `wikimem ingest <corpus>/pages` reads it."""
    return page_path(data_root, corpus, doc_id).read_text(encoding="utf-8")
