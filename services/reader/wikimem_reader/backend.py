"""The reader backend interface: question + passages → answers pointing into the passages, or an abstention.

The extractive backend is the default; the generative ones (local LLM, OpenAI-compatible; see generative.py)
implement `ReaderBackend` and override `stream` to yield text as it is produced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from wikimem_common.timing import Timings


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Answer:
    text: str
    #: Answer score minus the no-answer score.
    score: float
    passage_index: int
    #: Code-point span: passages[passage_index].text[start:end] == text (0, 0 when generated).
    start: int
    end: int
    #: Written by a generative backend in its own words: not a span (passage_index, start, end and score are 0).
    generated: bool = False


@dataclass
class ReadOutcome:
    answers: list[Answer] = field(default_factory=list)
    abstained: bool = False
    abstain_reason: str = ""
    #: The generative model that answered ("" for extractive).
    model: str = ""

    @classmethod
    def abstain(cls, reason: str, model: str = "") -> ReadOutcome:
        return cls(answers=[], abstained=True, abstain_reason=reason, model=model)


class ReaderBackend:
    """Base class; subclasses implement `read` and may override `stream`."""

    name: str = ""

    def read(
        self,
        question: str,
        passages: Sequence[Passage],
        max_answers: int,
        threshold: float | None,
        timings: Timings,
    ) -> ReadOutcome:
        raise NotImplementedError

    def stream(
        self,
        question: str,
        passages: Sequence[Passage],
        max_answers: int,
        threshold: float | None,
        timings: Timings,
    ) -> Iterator[str | ReadOutcome]:
        """Text deltas, then the outcome. Default: the whole best answer as one delta; none when several
        candidates were asked for (the caller chooses among them, so the best span may not be the answer)."""
        outcome = self.read(question, passages, max_answers, threshold, timings)
        if outcome.answers and max_answers <= 1:
            yield outcome.answers[0].text
        yield outcome

    def close(self) -> None:
        """Release model resources."""
