"""Choosing the extractive answer, or abstaining, as a pipeline decision (issue 11).

The span reader alone decides from its own score (best span − no-answer score ≥ a threshold calibrated on SQuAD),
which on paraphrased wiki questions abstains far too often: the right passage is read, the right span often
scores well, yet below a threshold set for SQuAD. So the orchestrator asks the reader for its best few
non-overlapping candidate spans over the passages read with the reader's threshold off, and decides here, with
what the pipeline knows and the reader does not:

- the span: the best `reader score + rerank_weight × reranker score of its passage`;
- abstain unless `reader score + rerank_alpha × reranker score + agreement_beta × agreement ≥ threshold`, where
  agreement counts the other passages whose candidate span says the same (case and space folded).

**Sentence first** (the default since dev showed it answers more at the same abstention): the span reader, fine-tuned
on SQuAD-style questions, scores paraphrased questions poorly, while the sentence embedder (trained on paraphrase and
question-answer pairs) still recognises the sentence that answers them. So the sentences of the passages read are
embedded with their page title and heading, and the answer is the sentence with the best
`cosine(question, sentence) + sentence_reader_weight × max(reader score of its best candidate span, floor)`; it
answers with that span when the reader proposed one inside the sentence, else with the whole sentence; abstain
below `sentence_threshold`. The citation's quote is exactly the chosen sentence (citations.sentence_spans).
A reader that is sure keeps its answer: when a span scores at least `sentence_reader_sure` and the sentence around it
is at least `sentence_sure_similarity` similar to the question, that span answers. Without it "Where is the
headquarters of Acme Robotics?" got "three offices" (from "Acme Robotics has three offices.", cosine 0.80) instead
of the reader's "Lisbon" (span score 6.35, its sentence's cosine 0.32). Dev cost: one right answer and one
abstention on an unanswerable question.
Abstention weighs how much the answer stands out: the decision value is the chosen sentence's value plus
`sentence_margin_weight` × how far the best match stands out: (cosine + code bonus) of the best sentence minus that
of the best sentence with another text. A near miss (the page covers the topic, not the fact) matches several
sentences about equally; a sentence that answers stands out.
On dev (passages in the reranker + dense order, ranking.py) at >= 80 % unanswerable abstained this took right
answers from 18 to 30 of 214 (threshold 0.70, margin weight 5).
Identifiers count exactly: the question's tokens with a digit in them (part numbers, codes, years) that a sentence
contains verbatim add `sentence_code_bonus` × their share to its value; embeddings barely tell "QZ-7731-K" from
"QZ-7713-K", the reader and the reranker do, and so must the sentence choice. When the chosen sentence is the only
one (by text) naming all of them and is on the question's topic (cosine ≥ `sentence_sure_similarity`), it answers
whatever its margin: twenty look-alike shelves would otherwise make it look like a near miss.

The weights and the threshold were chosen on the wiki-qa **dev** split (bench/wiki_qa/tune.py; figures in
docs/benchmarks.md, "wiki-qa"), never on its test split. When the reranker failed (passages in vector order, scores
on another scale) the reranker terms are left out and the reader's own calibrated threshold applies.
Environment: WIKIMEM_ANSWER_POLICY (1 = this decision, 0 = the reader's own), WIKIMEM_ANSWER_CANDIDATES,
WIKIMEM_ANSWER_RERANK_WEIGHT, WIKIMEM_ANSWER_RERANK_ALPHA, WIKIMEM_ANSWER_AGREEMENT_BETA, WIKIMEM_ANSWER_THRESHOLD,
WIKIMEM_ANSWER_UNRERANKED_THRESHOLD, WIKIMEM_ANSWER_SENTENCES (1 = sentence first),
WIKIMEM_ANSWER_SENTENCE_READER_WEIGHT, WIKIMEM_ANSWER_SENTENCE_FLOOR, WIKIMEM_ANSWER_SENTENCE_THRESHOLD,
WIKIMEM_ANSWER_SENTENCE_READER_SURE, WIKIMEM_ANSWER_SENTENCE_SURE_SIMILARITY, WIKIMEM_ANSWER_SENTENCE_CODE_BONUS,
WIKIMEM_ANSWER_SENTENCE_MARGIN_WEIGHT.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wikimem_common.config import ConfigError, env_bool, env_float, env_int
from wikimem_contract.v1 import reader_pb2

#: The reader's threshold is switched off with this (it must be finite): every candidate comes back.
READER_THRESHOLD_OFF = -1.0e4
_SPACE = re.compile(r"\s+")
#: A token with a digit in it: "QZ-7731-K", "2024", "v2.1", "4242".
_CODE = re.compile(r"(?:[^\W_]+[-./:])*[^\W_]*\d[^\W_]*(?:[-./:][^\W_]+)*")


def code_terms(text: str) -> set[str]:
    """The tokens of `text` that have a digit in them, lower case."""
    return {m.group(0).lower() for m in _CODE.finditer(text)}


@dataclass(frozen=True)
class AnswerPolicy:
    enabled: bool = True
    #: Candidate spans asked of the reader (non-overlapping, best first, over all passages read).
    candidates: int = 10
    #: Dev (257 questions, 5 passages read): a reranker term in the span choice did not help (0.1–2 tried).
    rerank_weight: float = 0.0
    #: Dev: reader + 1.0 × reranker ≥ −1 answered 14/214 right (the reader's own threshold: 4/214) and still
    #: abstained on 37/43 unanswerable questions (the reader's own: 40/43).
    rerank_alpha: float = 1.0
    #: Dev: agreement across passages did not separate right from wrong answers (weights 1 and 2 tried).
    agreement_beta: float = 0.0
    threshold: float = -1.0
    #: The threshold on the reader's score alone, for answers whose passages were not reranked (dev: 10/214 right,
    #: 39/43 unanswerable abstained at 0).
    unreranked_threshold: float = 0.0
    #: Sentence first (see the module docstring); when off, or when the sentences could not be embedded, the span
    #: decision above applies.
    sentences: bool = True
    sentence_reader_weight: float = 0.005
    #: Sentences without a candidate span count as if their best span scored this (the reader's scores go far lower).
    sentence_floor: float = -30.0
    sentence_threshold: float = 0.70
    sentence_reader_sure: float = 5.0
    sentence_code_bonus: float = 0.2
    sentence_sure_similarity: float = 0.3
    #: Abstention: the decision value adds this x how far the most similar sentence stands out from the next one
    #: (distinct texts). A near miss matches a page's topic, so many sentences are about as similar; an answer's
    #: sentence stands out. Dev at the reranker + dense order, >= 80 % unanswerable abstained: 18 -> 30 of 214 right.
    sentence_margin_weight: float = 5.0

    @classmethod
    def from_env(cls) -> AnswerPolicy:
        policy = cls(
            enabled=env_bool("WIKIMEM_ANSWER_POLICY", cls.enabled),
            candidates=env_int("WIKIMEM_ANSWER_CANDIDATES", cls.candidates),
            rerank_weight=env_float("WIKIMEM_ANSWER_RERANK_WEIGHT", cls.rerank_weight),
            rerank_alpha=env_float("WIKIMEM_ANSWER_RERANK_ALPHA", cls.rerank_alpha),
            agreement_beta=env_float("WIKIMEM_ANSWER_AGREEMENT_BETA", cls.agreement_beta),
            threshold=env_float("WIKIMEM_ANSWER_THRESHOLD", cls.threshold),
            unreranked_threshold=env_float("WIKIMEM_ANSWER_UNRERANKED_THRESHOLD", cls.unreranked_threshold),
            sentences=env_bool("WIKIMEM_ANSWER_SENTENCES", cls.sentences),
            sentence_reader_weight=env_float("WIKIMEM_ANSWER_SENTENCE_READER_WEIGHT", cls.sentence_reader_weight),
            sentence_floor=env_float("WIKIMEM_ANSWER_SENTENCE_FLOOR", cls.sentence_floor),
            sentence_threshold=env_float("WIKIMEM_ANSWER_SENTENCE_THRESHOLD", cls.sentence_threshold),
            sentence_reader_sure=env_float("WIKIMEM_ANSWER_SENTENCE_READER_SURE", cls.sentence_reader_sure),
            sentence_code_bonus=env_float("WIKIMEM_ANSWER_SENTENCE_CODE_BONUS", cls.sentence_code_bonus),
            sentence_sure_similarity=env_float("WIKIMEM_ANSWER_SENTENCE_SURE_SIMILARITY", cls.sentence_sure_similarity),
            sentence_margin_weight=env_float("WIKIMEM_ANSWER_SENTENCE_MARGIN_WEIGHT", cls.sentence_margin_weight),
        )
        if not 1 <= policy.candidates <= 20:
            raise ConfigError(f"WIKIMEM_ANSWER_CANDIDATES={policy.candidates} must be in 1..20 (the reader's limit)")
        return policy


@dataclass(frozen=True)
class Decision:
    #: The chosen span; None: abstain.
    answer: reader_pb2.ReadAnswer | None
    #: The decision value and the threshold it was compared with.
    value: float
    threshold: float
    agreement: int


def _same(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip()


def decide(
    answers: Sequence[reader_pb2.ReadAnswer], rerank_scores: Sequence[float] | None, policy: AnswerPolicy
) -> Decision:
    """The span to answer with, or None. `rerank_scores[i]`: the reranker's score of passage i (None when the
    passages were not reranked; then only the reader's score counts)."""
    if not answers:
        return Decision(None, float("-inf"), policy.threshold, 0)
    if rerank_scores is None:  # scores on another scale (vector order): the reader's score alone
        best = max(answers, key=lambda a: a.score)
        ok = best.score >= policy.unreranked_threshold
        return Decision(best if ok else None, best.score, policy.unreranked_threshold, 0)

    def rerank(a: reader_pb2.ReadAnswer) -> float:
        return rerank_scores[a.passage_index]

    best = max(answers, key=lambda a: a.score + policy.rerank_weight * rerank(a))
    said = _same(best.text)
    agreement = len(
        {a.passage_index for a in answers if a.passage_index != best.passage_index and _same(a.text) == said}
    )
    value = best.score + policy.rerank_alpha * rerank(best) + policy.agreement_beta * agreement
    return Decision(best if value >= policy.threshold else None, value, policy.threshold, agreement)


@dataclass(frozen=True)
class Sentence:
    """passages[passage_index].text[start:end] == text."""

    passage_index: int
    start: int
    end: int
    text: str


def sentence_context(title: str, heading: str) -> str:
    """"Title > heading path" (the heading alone when it already starts with the title)."""
    title, heading = title.strip(), heading.strip()
    if heading and heading.startswith(title):
        return heading
    return f"{title} > {heading}" if heading and title else heading or title


def sentence_input(context: str, sentence: str) -> str:
    """What is embedded for a sentence: its page title and heading make "how long is it?" answerable."""
    return f"{context}: {sentence}" if context else sentence


def margin(sentences: Sequence[Sentence], values: Sequence[float], index: int) -> float:
    """How far `values[index]` stands above the best value of a sentence with another text (negative when below;
    0 when every sentence has its text)."""
    own = _same(sentences[index].text)
    others = [float(v) for s, v in zip(sentences, values, strict=True) if _same(s.text) != own]
    return float(values[index]) - max(others) if others else 0.0


def choose_sentence(
    answers: Sequence[reader_pb2.ReadAnswer],
    sentences: Sequence[Sentence],
    similarity: npt.NDArray[np.float32] | Sequence[float],
    policy: AnswerPolicy,
    question: str = "",
) -> Decision:
    """The sentence first decision: `similarity[i]` is the cosine of the question and `sentences[i]`."""
    if not sentences:
        return Decision(None, float("-inf"), policy.sentence_threshold, 0)
    inside: dict[int, reader_pb2.ReadAnswer] = {}
    for a in answers:  # the best candidate span inside each sentence
        for i, s in enumerate(sentences):
            if s.passage_index == a.passage_index and s.start <= a.start and a.end <= s.end:
                if i not in inside or a.score > inside[i].score:
                    inside[i] = a
                break

    codes = code_terms(question)
    exact = [
        len(codes & code_terms(s.text)) / len(codes) if codes else 0.0 for s in sentences
    ]

    def value(i: int) -> float:
        span = max(inside[i].score, policy.sentence_floor) if i in inside else policy.sentence_floor
        return float(similarity[i]) + policy.sentence_reader_weight * span + policy.sentence_code_bonus * exact[i]

    sure = [
        i
        for i, a in inside.items()
        if a.score >= policy.sentence_reader_sure and similarity[i] >= policy.sentence_sure_similarity
    ]
    if sure:  # the reader is sure of a span in a sentence on the question's topic: it answers
        i = max(sure, key=lambda i: inside[i].score)
        return Decision(inside[i], value(i), policy.sentence_threshold, 0)
    best = max(range(len(sentences)), key=value)
    # (The reader's term stays out of the margin: on dev it made the margin noise, 28 -> 21 right.)
    matched = [float(similarity[i]) + policy.sentence_code_bonus * exact[i] for i in range(len(sentences))]
    v = value(best) + policy.sentence_margin_weight * margin(sentences, matched, best)
    named = {_same(sentences[i].text) for i in range(len(sentences)) if exact[i] == 1.0}
    # Only one sentence names every identifier the question names, on the question's topic: it answers.
    unique_code = exact[best] == 1.0 and len(named) == 1 and similarity[best] >= policy.sentence_sure_similarity
    if v < policy.sentence_threshold and not unique_code:
        return Decision(None, v, policy.sentence_threshold, 0)
    s = sentences[best]
    chosen = inside.get(best) or reader_pb2.ReadAnswer(
        text=s.text, score=v, passage_index=s.passage_index, start=s.start, end=s.end
    )
    return Decision(chosen, v, policy.sentence_threshold, 0)
