"""The pipeline's answer decision (answering.py): which span answers, and when to abstain."""

from __future__ import annotations

import pytest

from wikimem_common.config import ConfigError
from wikimem_contract.v1 import reader_pb2
from wikimem_orchestrator.answering import (
    AnswerPolicy,
    Sentence,
    choose_sentence,
    decide,
    margin,
    sentence_context,
)


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


SENTENCES = [
    Sentence(0, 0, 31, "Parental leave lasts 12 weeks."),
    Sentence(0, 32, 60, "Ask HR for the form."),
    Sentence(1, 0, 25, "Badges open every door."),
]
SENTENCE_POLICY = AnswerPolicy(
    sentence_reader_weight=0.01, sentence_floor=-30.0, sentence_threshold=0.5, sentence_margin_weight=0.0
)


def test_the_most_similar_sentence_answers_with_the_span_the_reader_found_inside_it() -> None:
    inside = reader_pb2.ReadAnswer(text="12 weeks", score=1.0, passage_index=0, start=21, end=29)
    elsewhere = reader_pb2.ReadAnswer(text="every door", score=4.5, passage_index=1, start=13, end=23)
    decision = choose_sentence([elsewhere, inside], SENTENCES, [0.8, 0.3, 0.4], SENTENCE_POLICY)
    assert decision.answer == inside  # 0.8 + 0.01 * 1 beats 0.4 + 0.01 * 4.5 (and 4.5 < 5: the reader is not sure)
    assert decision.value == pytest.approx(0.81)


def test_a_span_the_reader_is_sure_of_answers_when_its_sentence_is_on_topic() -> None:
    inside = reader_pb2.ReadAnswer(text="12 weeks", score=1.0, passage_index=0, start=21, end=29)
    sure = reader_pb2.ReadAnswer(text="every door", score=6.5, passage_index=1, start=13, end=23)
    assert choose_sentence([sure, inside], SENTENCES, [0.8, 0.3, 0.35], SENTENCE_POLICY).answer == sure
    # Off topic (similarity below 0.3), the sure span does not answer: the sentence choice does.
    assert choose_sentence([sure, inside], SENTENCES, [0.8, 0.3, 0.25], SENTENCE_POLICY).answer == inside


def test_a_sentence_without_a_candidate_span_answers_whole_and_the_reader_can_tip_the_choice() -> None:
    decision = choose_sentence([], SENTENCES, [0.3, 0.9, 0.4], SENTENCE_POLICY)
    assert decision.answer is not None and decision.answer.text == "Ask HR for the form."
    assert (decision.answer.passage_index, decision.answer.start, decision.answer.end) == (0, 32, 60)
    strong = reader_pb2.ReadAnswer(text="every door", score=60.0, passage_index=1, start=13, end=23)
    assert choose_sentence([strong], SENTENCES, [0.3, 0.9, 0.4], SENTENCE_POLICY).answer == strong


def test_sentence_first_abstains_below_its_threshold_and_without_sentences() -> None:
    low = choose_sentence([], SENTENCES, [0.3, 0.2, 0.1], SENTENCE_POLICY)  # 0.3 - 0.3 < 0.5
    assert low.answer is None and low.value == pytest.approx(0.0)
    assert choose_sentence([], [], [], SENTENCE_POLICY).answer is None


def test_a_sentence_that_stands_out_answers_where_a_crowd_of_similar_ones_abstains() -> None:
    policy = AnswerPolicy(sentence_reader_weight=0.0, sentence_threshold=0.8, sentence_margin_weight=1.0)
    standout = choose_sentence([], SENTENCES, [0.6, 0.3, 0.2], policy)
    assert standout.answer is not None and standout.value == pytest.approx(0.9)  # 0.6 + 1 x (0.6 - 0.3)
    # A near miss: the page's topic, no sentence more on the question than the others.
    crowd = choose_sentence([], SENTENCES, [0.6, 0.58, 0.55], policy)
    assert crowd.answer is None and crowd.value == pytest.approx(0.62)
    # The same sentence read twice (overlapping chunks) is not its own runner-up.
    twice = [*SENTENCES, Sentence(2, 0, 31, "Parental  leave lasts 12 weeks.")]
    assert margin(twice, [0.6, 0.3, 0.2, 0.59], 0) == pytest.approx(0.3)
    assert margin(twice, [0.6, 0.3, 0.2, 0.59], 1) == pytest.approx(-0.3)  # below the best: negative
    assert margin(SENTENCES[:1], [0.6], 0) == 0.0
    # What stands out is the whole value: a part code only one sentence names lifts it above its look-alikes.
    lookalikes = [
        Sentence(0, 0, 40, "Part QZ-7713-K is kept on shelf 3."),
        Sentence(1, 0, 40, "Part QZ-7137-K is kept on shelf 4."),
        Sentence(2, 0, 40, "The key, tag QZ-7731-K, hangs in the office."),
    ]
    policy = AnswerPolicy(sentence_reader_weight=0.0, sentence_threshold=0.6, sentence_margin_weight=1.0)
    coded = choose_sentence([], lookalikes, [0.55, 0.55, 0.45], policy, "Where is QZ-7731-K kept?")
    assert coded.answer is not None and coded.answer.passage_index == 2
    assert coded.value == pytest.approx(0.65 + 0.1)  # 0.45 + 0.2 code bonus, 0.1 above the look-alikes
    # The only sentence naming the code answers even below the threshold (look-alikes crowd the margin) ...
    close = choose_sentence([], lookalikes, [0.55, 0.55, 0.37], policy, "Where is QZ-7731-K kept?")
    assert close.answer is not None and close.answer.passage_index == 2 and close.value < 0.6
    # ... but not off topic, and not when another sentence names it too.
    assert choose_sentence([], lookalikes, [0.55, 0.55, 0.2], policy, "Where is QZ-7731-K kept?").answer is None
    two = [*lookalikes, Sentence(3, 0, 40, "QZ-7731-K was retired in May.")]
    assert choose_sentence([], two, [0.55, 0.55, 0.37, 0.36], policy, "Where is QZ-7731-K kept?").answer is None


def test_sentence_context_names_title_and_heading_once() -> None:
    assert sentence_context("Leave", "Parental leave") == "Leave > Parental leave"
    assert sentence_context("Leave", "Leave > Parental") == "Leave > Parental"
    assert sentence_context("Leave", "") == "Leave" and sentence_context("", "") == ""


def test_sentence_vectors_are_embedded_once_per_chunk_and_reused() -> None:
    import numpy as np

    from wikimem_contract.v1 import common_pb2
    from wikimem_orchestrator.sentences import VectorCache, score

    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (len(texts), 1))

    def chunk(cid: str, text: str) -> common_pb2.ScoredChunk:
        return common_pb2.ScoredChunk(chunk=common_pb2.Chunk(chunk_id=cid, text=text, title="Leave"))

    cache = VectorCache(max_chunks=1)
    q = np.array([1.0, 0.0], dtype=np.float32)
    a, b = chunk("p@1#0", "Leave lasts 12 weeks. Ask HR."), chunk("p@1#1", "Badges open doors.")
    sentences, sims = score(q, [a, b], embed, cache, "m")
    assert [s.text for s in sentences] == ["Leave lasts 12 weeks.", "Ask HR.", "Badges open doors."]
    assert calls == [["Leave: Leave lasts 12 weeks.", "Leave: Ask HR.", "Leave: Badges open doors."]]
    assert np.allclose(sims, 0.6)
    score(q, [b], embed, cache, "m")  # the newest chunk is cached: nothing embedded
    assert len(calls) == 1
    score(q, [a], embed, cache, "m")  # evicted (one chunk kept): embedded again
    assert calls[-1] == ["Leave: Leave lasts 12 weeks.", "Leave: Ask HR."]
    score(q, [a], embed, cache, "other-model")  # another model's vectors are never reused
    assert len(calls) == 3


def test_a_code_in_the_question_counts_exactly_in_the_sentence_choice() -> None:
    from wikimem_orchestrator.answering import code_terms

    assert code_terms("Where is QZ-7731-K kept, in v2.1 or 2024?") == {"qz-7731-k", "v2.1", "2024"}
    sentences = [
        Sentence(0, 0, 40, "The belt (part QZ-7713-K) is on shelf 3."),
        Sentence(1, 0, 40, "The key, tag QZ-7731-K, hangs in the office."),
    ]
    policy = AnswerPolicy(sentence_threshold=0.3)
    chosen = choose_sentence([], sentences, [0.7, 0.6], policy, "Where is QZ-7731-K kept?").answer
    assert chosen is not None and chosen.passage_index == 1
    assert choose_sentence([], sentences, [0.7, 0.6], policy, "Where is the key kept?").answer.passage_index == 0  # type: ignore[union-attr]
