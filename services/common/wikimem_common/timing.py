"""Per-stage timings that every response carries (`timings_ms`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager


class Timings:
    """Collects wall-clock milliseconds per named stage; repeated stages add up."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self.ms[name] = self.ms.get(name, 0.0) + ms

    def merge(self, other: MutableMapping[str, float] | dict[str, float], prefix: str = "") -> None:
        for key, value in other.items():
            self.add(prefix + key, value)

    def total(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0

    def finish(self, target: MutableMapping[str, float]) -> None:
        """Write all stages plus `total` into a protobuf map field."""
        for key, value in self.ms.items():
            target[key] = round(value, 3)
        target["total"] = round(self.total(), 3)
