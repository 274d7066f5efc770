"""Choosing the extractive answer, or abstaining, as a pipeline decision (issue 11).

The span reader alone decides from its own score (best span − no-answer score ≥ a threshold calibrated on SQuAD),
which on paraphrased wiki questions abstains far too often: the right passage is read, the right span often
scores well, yet below a threshold set for SQuAD. So the orchestrator asks the reader for its best few
non-overlapping candidate spans over the passages read with the reader's threshold off, and decides here, with
what the pipeline knows and the reader does not:

- the span: the best `reader score + rerank_weight × reranker score of its passage`;
- abstain unless `reader score + rerank_alpha × reranker score + agreement_beta × agreement ≥ threshold`, where
  agreement counts the other passages whose candidate span says the same (case and space folded).

The weights and the threshold were chosen on the wiki-qa **dev** split (bench/wiki_qa/tune.py; figures in
docs/benchmarks.md, "wiki-qa"), never on its test split. When the reranker failed (passages in vector order, scores
on another scale) the reranker terms are left out and the reader's own calibrated threshold applies.
Environment: WIKIMEM_ANSWER_POLICY (1 = this decision, 0 = the reader's own), WIKIMEM_ANSWER_CANDIDATES,
WIKIMEM_ANSWER_RERANK_WEIGHT, WIKIMEM_ANSWER_RERANK_ALPHA, WIKIMEM_ANSWER_AGREEMENT_BETA, WIKIMEM_ANSWER_THRESHOLD,
WIKIMEM_ANSWER_UNRERANKED_THRESHOLD.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wikimem_common.config import ConfigError, env_bool, env_float, env_int
from wikimem_contract.v1 import reader_pb2

#: The reader's threshold is switched off with this (it must be finite): every candidate comes back.
READER_THRESHOLD_OFF = -1.0e4
_SPACE = re.compile(r"\s+")


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
