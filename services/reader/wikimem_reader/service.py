"""The reader core (no gRPC): validation and dispatch to the requested backend."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from wikimem_common.config import ConfigError
from wikimem_common.errors import InvalidArgument, require_text
from wikimem_common.timing import Timings

from .backend import Passage, ReaderBackend, ReadOutcome
from .config import ReaderConfig
from .generative import GenerativeReader


@dataclass(frozen=True)
class ReadQuery:
    question: str
    passages: Sequence[Passage]
    backend: str = ""
    #: 0 means the default (1).
    max_answers: int = 0
    threshold: float | None = None
    #: Generative backends: answer tokens (0 = configured).
    max_tokens: int = 0


class Reader:
    def __init__(self, config: ReaderConfig, backends: Mapping[str, ReaderBackend]) -> None:
        if config.default_backend not in backends:
            raise ConfigError(
                f"WIKIMEM_READER_BACKEND={config.default_backend!r} is not available; "
                f"available: {', '.join(sorted(backends))}"
            )
        self.config = config
        self.backends = dict(backends)

    def _check(self, query: ReadQuery) -> tuple[ReaderBackend, int]:
        require_text(query.question, "question", self.config.max_question_chars)
        name = query.backend or self.config.default_backend
        backend = self.backends.get(name)
        if backend is None:
            raise InvalidArgument(f"unknown reader backend {name!r}; available: {', '.join(sorted(self.backends))}")
        if len(query.passages) > self.config.max_passages:
            raise InvalidArgument(
                f"{len(query.passages)} passages in one request; the limit is {self.config.max_passages}"
            )
        for i, passage in enumerate(query.passages):
            if len(passage.text) > self.config.max_chars:
                raise InvalidArgument(
                    f"passages[{i}].text is {len(passage.text)} characters; the limit is {self.config.max_chars}"
                )
        max_answers = query.max_answers or 1
        if max_answers > self.config.max_answers:
            raise InvalidArgument(f"max_answers={max_answers}; the limit is {self.config.max_answers}")
        if query.threshold is not None and not math.isfinite(query.threshold):
            raise InvalidArgument(f"no_answer_threshold must be a finite number, got {query.threshold}")
        return backend, max_answers

    def read(self, query: ReadQuery) -> tuple[str, ReadOutcome, Timings]:
        timings = Timings()
        backend, max_answers = self._check(query)
        if isinstance(backend, GenerativeReader):
            outcome = backend.read_generated(query.question, query.passages, query.max_tokens, timings)
        else:
            outcome = backend.read(query.question, query.passages, max_answers, query.threshold, timings)
        return backend.name, outcome, timings

    def stream(self, query: ReadQuery) -> Iterator[tuple[str, str | ReadOutcome, Timings]]:
        """(backend name, delta or final outcome, timings); validation errors raise before the first item."""
        timings = Timings()
        backend, max_answers = self._check(query)
        events = (
            backend.generate(query.question, query.passages, query.max_tokens, timings)
            if isinstance(backend, GenerativeReader)
            else backend.stream(query.question, query.passages, max_answers, query.threshold, timings)
        )
        for event in events:
            yield backend.name, event, timings

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
