"""The wiki-qa suite: how answers are judged, the split switch and its log, the quick run end to end, and a fixed
sample of dev questions the default pipeline answers right (a regression guard; never the test split)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import Context
from bench.wiki_qa import data, run, score
from bench.wiki_qa.data import EditScenario, WikiQuestion

SHARED = data.DEFAULT_DATA_ROOT

Q = WikiQuestion(
    id="t-1",
    corpus="tiny",
    doc_id="leave/fmla.md",
    question="How long can I stay home to look after a sick parent?",
    answers=("12 workweeks", "12 weeks"),
    evidence="You can take up to **12 workweeks** of unpaid, job-protected leave in a 12-month period.",
    kind="fact",
    answerable=True,
)
NEAR_MISS = WikiQuestion(
    id="t-2",
    corpus="tiny",
    doc_id="leave/fmla.md",
    question="Is family time off paid?",
    answers=(),
    evidence="",
    kind="unanswerable",
    answerable=False,
    why="the page never says",
)


def test_a_gold_answer_in_the_answer_is_right_whatever_the_case_spacing_and_emphasis() -> None:
    asked = score.judge(Q, "up to **12\n Workweeks**", False, "leave/fmla.md", "", 1.0)
    assert asked.right and asked.page_first


def test_a_span_of_the_gold_fact_is_right_only_when_its_quote_shows_a_gold_answer() -> None:
    quote = "You can take up to 12 workweeks of unpaid, job-protected leave in a 12-month period."
    assert score.judge(Q, "unpaid, job-protected", False, "leave/fmla.md", quote, 1.0).right
    assert not score.judge(Q, "unpaid, job-protected", False, "leave/fmla.md", "unpaid, job-protected leave", 1.0).right
    assert not score.judge(Q, "a 12-month period", False, "other.md", "in a 12-month period", 1.0).right
    assert not score.judge(Q, "12 workweeks", True, None, "", 1.0).right  # an abstention is never right


def test_unanswerable_is_right_when_abstained_and_alt_pages_count_as_the_right_page() -> None:
    assert score.judge(NEAR_MISS, "", True, None, "", 1.0).right
    assert not score.judge(NEAR_MISS, "Yes, paid", False, "leave/fmla.md", "Yes, paid", 1.0).right
    alt = WikiQuestion(**{**Q.__dict__, "alt_doc_ids": ("leave/other.md",)})
    assert score.judge(alt, "12 weeks", False, "leave/other.md", "", 1.0).page_first
    assert not score.judge(Q, "12 weeks", False, "leave/other.md", "", 1.0).page_first


def test_an_edit_is_right_with_the_new_fact_and_stale_with_the_old() -> None:
    edit = EditScenario(
        "t-e1",
        "tiny",
        "leave/fmla.md",
        "How long?",
        "up to 12 workweeks",
        "up to 14 workweeks",
        "12 workweeks",
        "14 workweeks",
    )
    assert score.judge_edit(edit, "14 workweeks", False, "").right
    stale = score.judge_edit(edit, "12 workweeks", False, "")
    assert stale.stale and not stale.right
    assert not score.judge_edit(edit, "", True, "").right


def test_summary_counts_answerable_and_unanswerable_apart() -> None:
    asked = [
        score.judge(Q, "12 weeks", False, "leave/fmla.md", "", 10.0),
        score.judge(Q, "", True, None, "", 20.0),
        score.judge(NEAR_MISS, "", True, None, "", 30.0),
    ]
    s = score.summary(asked)
    assert (s["answerable"], s["right"], s["abstained_answerable"], s["abstained_unanswerable"]) == (2, 1, 1, 1)
    assert s["p50_ms"] == 20.0


def test_split_is_dev_unless_test_is_asked_for_and_test_runs_are_logged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(run.SPLIT_ENV, raising=False)
    assert run.chosen_split() == "dev"
    monkeypatch.setenv(run.SPLIT_ENV, "test")
    assert run.chosen_split() == "test"
    monkeypatch.setenv(run.SPLIT_ENV, "train")
    with pytest.raises(ValueError, match="dev"):
        run.chosen_split()
    log = tmp_path / "runs.log"
    monkeypatch.setattr(run, "TEST_LOG", log)
    assert run.test_runs_logged() == 0
    run.log_test_run(["handbook-18f", "srcd-guide"], 42, quick=False)
    run.log_test_run(["handbook-18f"], 5, quick=True)
    lines = log.read_text().splitlines()
    assert run.test_runs_logged() == 2
    assert "corpora=handbook-18f,srcd-guide questions=42 quick=False" in lines[0]
    assert lines[0][:4].isdigit()  # dated


needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs the shared data at {SHARED}")


@pytest.fixture()
def no_test_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "test_runs.log"
    monkeypatch.setattr(run, "TEST_LOG", log)
    monkeypatch.delenv(run.SPLIT_ENV, raising=False)
    yield log


@pytest.mark.shared_data
@pytest.mark.slow
@needs_data
def test_quick_suite_runs_on_dev_and_reports_every_corpus(
    tmp_path: Path, no_test_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.suites import wiki_qa

    monkeypatch.setenv(wiki_qa.LLM_MODELS_ENV, "")  # the LLM rows take minutes; tests/llm covers that reader
    ctx = Context(quick=True, out=tmp_path, data=SHARED, work=tmp_path / "work")
    result = wiki_qa.run(ctx)
    f = result.figures
    assert f["split"] == "dev"
    assert not no_test_log.exists()  # a dev run leaves no trace in the test log
    corpora = [c for c in data.corpora() if data.question_path(c).exists()]
    for corpus in corpora:
        assert f[f"wikimem_{corpus}_answerable"] == run.QUICK_ANSWERABLE
        assert f[f"wikimem_{corpus}_unanswerable"] == run.QUICK_UNANSWERABLE
        assert f[f"wikimem_{corpus}_p50_ms"] > 0
    assert f["wikimem_all_answerable"] == run.QUICK_ANSWERABLE * len(corpora)
    assert "| wikimem, extractive reader (default) | **all** |" in result.markdown
    details = json.loads((tmp_path / "wiki_qa_dev_details.json").read_text())
    ids = {a["id"] for items in details["wikimem"].values() for a in items}
    dev_ids = {q.id for c in corpora for q in data.split(data.load_questions(data.question_path(c)), "dev")}
    assert ids and ids <= dev_ids


#: Dev questions the default pipeline (sentence first with the margin rule, answering.py; passages in the reranker +
#: dense order, ranking.py) answered right from their page in the online dev dump (bench/wiki_qa/tune.py dump);
#: never test-split questions. Asked over each sample page plus every `SAMPLE_EVERY`-th other page.
DEV_SAMPLE = (
    "18f-006",
    "18f-052",
    "18f-082",
    "18f-169",
    "18f-209",
    "sg-008",
    "sg-020",
    "sg-025",
    "sg-050",
    "sg-102",
    "srcd-017",
    "srcd-019",
    "srcd-024",
    "srcd-113",
)
SAMPLE_EVERY = 5


@pytest.mark.shared_data
@pytest.mark.slow
@needs_data
def test_a_fixed_sample_of_dev_questions_stays_answered(tmp_path: Path) -> None:
    from bench import handbook
    from bench.common import running_system
    from wikimem.client import WikimemClient

    questions = {
        q.id: q
        for c in data.corpora()
        if data.question_path(c).exists()
        for q in data.load_questions(data.question_path(c))
    }
    sample = [questions[i] for i in DEV_SAMPLE]
    assert all(q.split == "dev" and q.answerable for q in sample)  # never the test split
    ctx = Context(quick=True, out=tmp_path, data=SHARED, work=tmp_path / "work")
    right: list[str] = []
    misses: list[str] = []
    with running_system(ctx, "dev-sample", in_process=True) as address:
        for corpus in sorted({q.corpus for q in sample}):
            root = SHARED / corpus / "pages"
            files = sorted(root.rglob("*.md"))
            wanted = {q.doc_id for q in sample if q.corpus == corpus}
            pages = [
                handbook.Page(f.relative_to(root).as_posix(), f, f.read_text(encoding="utf-8"))
                for i, f in enumerate(files)
                if i % SAMPLE_EVERY == 0 or f.relative_to(root).as_posix() in wanted
            ]
            with WikimemClient(address, timeout=600) as client:
                for page in pages:
                    client.put_document(page.doc_id, page.text, source=str(page.path), collection=corpus)
        with WikimemClient(address, timeout=120) as client:
            for q in sample:
                a = client.ask(q.question, collection=q.corpus, no_cache=True)
                cited = a.citations[0] if a.citations else None
                asked = score.judge(
                    q, a.answer, a.abstained, cited.doc_id if cited else None, cited.quote if cited else "", 0.0
                )
                (right if asked.right else misses).append(f"{q.id}: {q.question!r} -> {a.answer!r}")
    assert len(right) >= len(sample) - 1, misses
