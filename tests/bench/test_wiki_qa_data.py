"""The wiki-qa checker catches each broken rule on a small made-up corpus, and the committed files pass it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.wiki_qa import check, data

PAGE = """---
title: Time off
---
# Family leave

You can take up to 12 workweeks of unpaid, job-protected leave in a 12-month period.

## Who approves it

- Your supervisor
- The HR office

| Code | Meaning |
|---|---|
| 670 | Out of office |
"""
OTHER = "# Holidays\n\nThere are 11 federal holidays a year.\nOffices close on each of them.\n"


def _question(n: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"t-{n:03d}",
        "corpus": "tiny",
        "doc_id": "leave/fmla.md",
        "question": "How long can I stay home to look after a sick parent?",
        "answers": ["12 workweeks"],
        "evidence": "You can take up to 12 workweeks of unpaid, job-protected leave in a 12-month period.",
        "kind": "fact",
        "answerable": True,
    }
    record.update(fields)
    return record


def _edit(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "t-e01",
        "corpus": "tiny",
        "doc_id": "leave/fmla.md",
        "question": "How long can I stay home to look after a sick parent?",
        "find": "up to 12 workweeks",
        "replace": "up to 16 workweeks",
        "old_answer": "12 workweeks",
        "new_answer": "16 workweeks",
    }
    record.update(fields)
    return record


def _good_questions() -> list[dict[str, Any]]:
    """Seven questions over two pages that satisfy every rule, shares of kinds included."""
    return [
        _question(1),
        _question(
            2,
            question="Who signs off on my request?",
            answers=["Your supervisor"],
            evidence="- Your supervisor",
            kind="list",
        ),
        _question(
            3,
            question="What do I bill when I'm away?",
            answers=["670"],
            evidence="| 670 | Out of office |",
            kind="table",
        ),
        _question(
            4,
            doc_id="holidays.md",
            question="How many days off does the government give everyone?",
            answers=["11"],
            evidence="There are 11 federal holidays a year.",
            kind="fact",
        ),
        _question(
            5,
            doc_id="holidays.md",
            question="Is the building open on those days?",
            answers=["close"],
            evidence="There are 11 federal holidays a year.\nOffices close on each of them.",
            kind="two-sentence",
        ),
        _question(
            6,
            question="Can I carry unused family time over to next year?",
            answers=[],
            evidence="",
            kind="unanswerable",
            answerable=False,
            why="page covers family leave but not carry-over",
        ),
        _question(
            7,
            doc_id="holidays.md",
            question="Do I get the day after Thanksgiving?",
            answers=[],
            evidence="",
            kind="unanswerable",
            answerable=False,
            why="page lists no days",
        ),
    ]


def _run(tmp_path: Path, questions: list[dict[str, Any]], edits: list[dict[str, Any]] | None = None) -> check.Report:
    pages = tmp_path / "data" / "tiny" / "pages"
    (pages / "leave").mkdir(parents=True)
    (pages / "leave" / "fmla.md").write_text(PAGE)
    (pages / "holidays.md").write_text(OTHER)
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "tiny.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    if edits is not None:
        (qa / "tiny-edits.jsonl").write_text("".join(json.dumps(e) + "\n" for e in edits))
    return check.check_corpus("tiny", qa, tmp_path / "data")


def _messages(report: check.Report) -> str:
    return "\n".join(str(f) for f in report.failures)


def test_a_set_that_follows_every_rule_passes(tmp_path: Path) -> None:
    report = _run(tmp_path, _good_questions(), [_edit()])
    assert report.failures == []
    assert report.summary[0].startswith("7 questions (5 answerable, 2 unanswerable) over 2 pages; 1 edit scenarios")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"answers": ["twelve weeks"]}, "answer 'twelve weeks' is not on leave/fmla.md"),
        ({"answers": ["12-month period", "670"]}, "answer '670' is not in the evidence"),
        ({"evidence": "You can take up to 12 workweeks of paid leave."}, "is not verbatim on leave/fmla.md"),
        ({"doc_id": "leave/missing.md"}, "doc_id 'leave/missing.md' is not a page"),
        (
            {"question": "How many workweeks of unpaid job-protected leave?"},
            "shares 5 content words with the evidence (job, leav, protect, unpaid, workweek)",
        ),
        ({"kind": "guess"}, "`kind` 'guess' is not one of"),
        ({"answerable": True, "kind": "unanswerable"}, "kind is 'unanswerable' but answerable is true"),
        ({"corpus": "other"}, "corpus is 'other' but the file is for 'tiny'"),
        ({"alt_doc_ids": ["holidays.md"]}, "no answer occurs on alt page holidays.md"),
        ({"extra": 1}, "unknown field(s): extra"),
    ],
)
def test_each_broken_question_rule_is_reported(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    questions = _good_questions()
    questions[0].update(change)
    assert expected in _messages(_run(tmp_path, questions))


def test_unanswerable_needs_no_answer_no_evidence_and_a_reason(tmp_path: Path) -> None:
    questions = _good_questions()
    questions[5].update(answers=["12 workweeks"], evidence="x", why="")
    text = _messages(_run(tmp_path, questions))
    assert 'set "answers": []' in text and 'set "evidence": ""' in text and "needs `why`" in text


def test_duplicate_ids_crowded_pages_and_missing_kinds_are_reported(tmp_path: Path) -> None:
    questions = _good_questions()
    questions[1]["id"] = questions[0]["id"]
    questions += [_question(10 + n, question=f"Is it true that I can stay away {n}?") for n in range(3)]
    text = _messages(_run(tmp_path, questions))
    assert "id 't-001' is used more than once" in text
    assert "leave/fmla.md: 7 questions on this page; at most 4" in text
    assert "two-sentence questions" not in text  # 1 of 10 is above the 5 % floor
    only_facts = [q for q in _good_questions() if q["kind"] in ("fact",)]
    assert "list/table/heading questions are 0 of 2" in _messages(_run(tmp_path / "b", only_facts))


def test_evidence_on_another_page_must_be_listed(tmp_path: Path) -> None:
    pages = tmp_path / "data" / "tiny" / "pages"
    questions = _good_questions()
    report = _run(tmp_path, questions)
    assert report.failures == []
    (pages / "copy.md").write_text(PAGE)
    assert "also occurs on copy.md; add to alt_doc_ids" in _messages(
        check.check_corpus("tiny", tmp_path / "qa", tmp_path / "data")
    )


def test_not_json_is_reported_with_its_line(tmp_path: Path) -> None:
    report = _run(tmp_path, _good_questions())
    path = tmp_path / "qa" / "tiny.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    report = check.check_corpus("tiny", tmp_path / "qa", tmp_path / "data")
    assert "tiny.jsonl:8: not valid JSON" in _messages(report)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"find": "12 weeks"}, "find '12 weeks' is not on leave/fmla.md"),
        ({"find": "12", "replace": "16", "old_answer": "12", "new_answer": "16"}, "find occurs 2 times"),
        ({"replace": "up to 670 workweeks", "new_answer": "670"}, "new_answer '670' already occurs on"),
        ({"replace": "up to 16 workweeks (was 12 workweeks)"}, "old_answer '12 workweeks' still occurs in replace"),
        ({"old_answer": "10 workweeks"}, "old_answer '10 workweeks' is not in find"),
        ({"new_answer": "20 workweeks"}, "new_answer '20 workweeks' is not in replace"),
        (
            {
                "question": "Can I take 12 workweeks?",
                "find": "You can take up to 12 workweeks",
                "replace": "You can take up to 16 workweeks",
            },
            "shares 3 content words with find (12, take, workweek)",
        ),
    ],
)
def test_each_broken_edit_rule_is_reported(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    assert expected in _messages(_run(tmp_path, _good_questions(), [_edit(**change)]))


def test_edit_apply_replaces_the_one_occurrence() -> None:
    edit = data.parse_edit(_edit())
    assert "up to 16 workweeks of unpaid" in edit.apply(PAGE)
    with pytest.raises(ValueError, match="occurs 0 times"):
        edit.apply(OTHER)


def test_content_words_are_stemmed_and_drop_stopwords() -> None:
    assert check.content_words("How do I get reimbursed for the trips I took?") == {"get", "reimburs", "trip", "took"}
    assert check.shared_words("Can I get paid back for travel?", "Travel is reimbursed.") == {"travel"}


def test_split_is_by_page_fixed_and_about_half() -> None:
    ids = [f"section-{i}/page-{j}.md" for i in range(20) for j in range(20)]
    splits = [data.split_of("handbook-18f", d) for d in ids]
    assert splits == [data.split_of("handbook-18f", d) for d in ids]
    assert 150 < splits.count("test") < 250


@pytest.mark.shared_data
def test_committed_question_files_pass_the_checker() -> None:
    if not data.DEFAULT_DATA_ROOT.is_dir():
        pytest.skip(f"no shared data at {data.DEFAULT_DATA_ROOT}")
    names = data.corpora()
    assert names, f"no question files in {data.WIKI_QA_DIR}"
    reports = check.check(names)
    failures = [f"{r.corpus}: {f}" for r in reports for f in r.failures]
    assert failures == [], "\n".join(failures)
    for name in names:
        questions = data.load_questions(data.question_path(name))
        assert {q.split for q in questions} == {"dev", "test"}, name


@pytest.mark.shared_data
def test_handbook_18f_set_meets_its_targets() -> None:
    """Issue 11: at least 170 questions (26 near misses) over 80 pages, 25 edits on pages that have questions."""
    if not data.DEFAULT_DATA_ROOT.is_dir():
        pytest.skip(f"no shared data at {data.DEFAULT_DATA_ROOT}")
    questions = data.load_questions(data.question_path("handbook-18f"))
    edits = data.load_edits(data.edits_path("handbook-18f"))
    pages = {q.doc_id for q in questions}
    assert len(questions) >= 170
    assert sum(not q.answerable for q in questions) >= 26
    assert len(pages) >= 80
    assert len(edits) >= 25
    assert {e.doc_id for e in edits} <= pages
    for edit in edits:  # each edit applies cleanly to the real page and puts the new answer in its place
        page = data.read_page(data.DEFAULT_DATA_ROOT, edit.corpus, edit.doc_id)
        edited = edit.apply(page)
        assert edit.new_answer.lower() in edited.lower() and edit.new_answer.lower() not in page.lower(), edit.id
