"""Generative reading: the model writes the answer from the numbered passages, streamed token by token.

Subclasses only produce text deltas for chat messages (`complete`); prompting, limits, abstention and timings are
here. The answer is returned unverified (`Answer.generated`): linking its sentences to passage spans happens in
the orchestrator, which has the embedder (wikimem_orchestrator.verify).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from wikimem_common.errors import InvalidArgument
from wikimem_common.timing import Timings

from .backend import Answer, Passage, ReaderBackend, ReadOutcome
from .prompt import Message, build_messages, is_no_answer


@dataclass(frozen=True)
class GenerationSettings:
    #: Answer tokens when the request does not say.
    max_tokens: int = 256
    #: Upper bound a request may ask for.
    max_tokens_limit: int = 2048
    temperature: float = 0.0
    #: Passage characters put into the prompt (the rest is cut), to bound prompt time and context.
    max_prompt_chars: int = 6000


class GenerativeReader(ReaderBackend):
    """Base of the `local-llm` and `openai` backends."""

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings

    @property
    def model(self) -> str:
        raise NotImplementedError

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        """Text deltas of the model's reply to `messages`."""
        raise NotImplementedError

    def max_tokens(self, requested: int) -> int:
        if requested > self.settings.max_tokens_limit:
            raise InvalidArgument(f"max_tokens={requested}; the limit is {self.settings.max_tokens_limit}")
        return requested or self.settings.max_tokens

    def generate(
        self, question: str, passages: Sequence[Passage], max_tokens: int, timings: Timings
    ) -> Iterator[str | ReadOutcome]:
        """Deltas as the model writes them, then the outcome (an unverified generated answer, or abstained)."""
        limit = self.max_tokens(max_tokens)
        if not any(p.text.strip() for p in passages):
            yield ReadOutcome.abstain("no passages" if not passages else "no passage has any text", self.model)
            return
        messages = build_messages(question, passages, self.settings.max_prompt_chars)
        parts: list[str] = []
        # "prompt": until the first token (prompt processing dominates on a CPU); "generate": the rest.
        start = time.perf_counter()
        first: float | None = None
        try:
            for delta in self.complete(messages, limit, self.settings.temperature):
                if not delta:
                    continue
                if first is None:
                    first = time.perf_counter()
                    timings.add("prompt", (first - start) * 1000.0)
                parts.append(delta)
                yield delta
        finally:
            end = time.perf_counter()
            if first is None:
                timings.add("prompt", (end - start) * 1000.0)
            else:
                timings.add("generate", (end - first) * 1000.0)
        text = "".join(parts).strip()
        if is_no_answer(text):
            yield ReadOutcome.abstain("the model found no answer in the passages", self.model)
            return
        yield ReadOutcome(answers=[Answer(text, 0.0, 0, 0, 0, generated=True)], model=self.model)

    def stream(
        self,
        question: str,
        passages: Sequence[Passage],
        max_answers: int,
        threshold: float | None,
        timings: Timings,
    ) -> Iterator[str | ReadOutcome]:
        return self.generate(question, passages, 0, timings)

    def read(
        self,
        question: str,
        passages: Sequence[Passage],
        max_answers: int,
        threshold: float | None,
        timings: Timings,
    ) -> ReadOutcome:
        return self.read_generated(question, passages, 0, timings)

    def read_generated(
        self, question: str, passages: Sequence[Passage], max_tokens: int, timings: Timings
    ) -> ReadOutcome:
        for event in self.generate(question, passages, max_tokens, timings):
            if isinstance(event, ReadOutcome):
                return event
        return ReadOutcome.abstain("the model produced no answer", self.model)
