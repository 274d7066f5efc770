"""Dynamic batching: concurrent callers' items are run through the model together.

Callers submit a list of items and block on a future; one worker thread drains the queue, packs up to
`max_batch` items (waiting at most `max_wait_ms` for more once the first arrives), runs `fn` once, and hands each
caller its slice. With one caller this adds no wait beyond the queue hop.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from . import metrics
from .errors import ResourceExhausted, Unavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    items: Sequence[T]
    future: Future[list[R]] = field(default_factory=Future)


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[Sequence[T]], list[R]],
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 10_000,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self.max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job[T, R] | None] = queue.Queue()
        self._max_queue = max_queue
        self._queued_items = 0
        self._lock = threading.Lock()
        self._closed = False
        self.batches_run = 0
        self._queue_gauge = metrics.QUEUE_ITEMS.labels(name)
        self._batch_size = metrics.BATCH_SIZE.labels(name)
        self._batch_seconds = metrics.BATCH_SECONDS.labels(name)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[T]) -> Future[list[R]]:
        job: _Job[T, R] = _Job(items)
        if not items:
            job.future.set_result([])
            return job.future
        with self._lock:
            if self._closed:
                raise Unavailable("shutting down")
            if self._queued_items + len(items) > self._max_queue:
                raise ResourceExhausted(
                    f"{self._queued_items} items already queued (limit {self._max_queue}); retry later"
                )
            self._queued_items += len(items)
        self._queue_gauge.inc(len(items))
        self._queue.put(job)
        return job.future

    def __call__(self, items: Sequence[T]) -> list[R]:
        return self.submit(items).result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        pending: list[_Job[T, R]] = []
        while True:
            job = self._queue.get() if not pending else None
            if job is None and not pending:
                return
            if job is not None:
                pending.append(job)
            size = sum(len(j.items) for j in pending)
            deadline = time.perf_counter() + self._max_wait
            stop = False
            while size < self.max_batch:
                timeout = deadline - time.perf_counter()
                try:
                    nxt = self._queue.get(timeout=max(timeout, 0)) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                pending.append(nxt)
                size += len(nxt.items)
            batch, pending = self._take(pending)
            self._run(batch)
            if stop:
                for j in pending:
                    self._run([j])
                return

    def _take(self, pending: list[_Job[T, R]]) -> tuple[list[_Job[T, R]], list[_Job[T, R]]]:
        """Whole jobs up to max_batch items (a single larger job runs alone)."""
        batch: list[_Job[T, R]] = []
        size = 0
        for i, job in enumerate(pending):
            if batch and size + len(job.items) > self.max_batch:
                return batch, pending[i:]
            batch.append(job)
            size += len(job.items)
        return batch, []

    def _run(self, jobs: list[_Job[T, R]]) -> None:
        items: list[T] = [item for job in jobs for item in job.items]
        with self._lock:
            self._queued_items -= len(items)
        self._queue_gauge.dec(len(items))
        t0 = time.perf_counter()
        try:
            results = self._fn(items) if items else []
            self.batches_run += 1
            self._batch_size.observe(len(items))
            self._batch_seconds.observe(time.perf_counter() - t0)
        except BaseException as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return
        offset = 0
        for job in jobs:
            job.future.set_result(results[offset : offset + len(job.items)])
            offset += len(job.items)
