"""The pipeline's answer decision (answering.py): which span answers, and when to abstain."""

from __future__ import annotations

import pytest

from wikimem_common.config import ConfigError
from wikimem_contract.v1 import reader_pb2
from wikimem_orchestrator.answering import AnswerPolicy, decide


def span(text: str, score: float, passage: int) -> reader_pb2.ReadAnswer:
    return reader_pb2.ReadAnswer(text=text, score=score, passage_index=passage, start=0, end=len(text))


POLICY = AnswerPolicy(
    enabled=True, rerank_weight=0.5, rerank_alpha=0.5, agreement_beta=1.0, threshold=2.0, unreranked_threshold=4.0
)


def test_the_reranker_score_of_a_passage_can_change_which_span_answers() -> None:
    answers = [span("Tuesday", 3.0, 0), span("12 weeks", 2.5, 1)]
    assert decide(answers, [0.0, 0.0], POLICY).answer == answers[0]
    chosen = decide(answers, [-2.0, 4.0], POLICY)  # 3 - 1 < 2.5 + 2
    assert chosen.answer == answers[1]
    assert chosen.value == pytest.approx(2.5 + 0.5 * 4.0)


def test_abstains_below_the_threshold_and_passages_that_agree_lift_the_decision() -> None:
    weak = [span("12 weeks", 1.0, 0), span("Friday", 0.5, 1)]
    assert decide(weak, [0.0, 0.0], POLICY).answer is None
    agreeing = [span("12 weeks", 1.0, 0), span("12  Weeks", 0.5, 1)]
    decision = decide(agreeing, [0.0, 0.0], POLICY)
    assert decision.agreement == 1 and decision.answer == agreeing[0]
    assert decide([], [0.0], POLICY).answer is None


def test_without_reranker_scores_the_reader_score_alone_decides() -> None:
    answers = [span("12 weeks", 3.0, 0)]
    assert decide(answers, None, POLICY).answer is None  # 3.0 < unreranked threshold 4.0
    assert decide([span("12 weeks", 4.5, 0)], None, POLICY).answer is not None


def test_policy_from_the_environment_fails_fast_on_a_bad_candidate_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIKIMEM_ANSWER_THRESHOLD", "1.5")
    assert AnswerPolicy.from_env().threshold == 1.5
    monkeypatch.setenv("WIKIMEM_ANSWER_CANDIDATES", "0")
    with pytest.raises(ConfigError, match="WIKIMEM_ANSWER_CANDIDATES"):
        AnswerPolicy.from_env()
