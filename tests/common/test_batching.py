"""The dynamic batcher really merges concurrent callers and hands each its own results."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from wikimem_common.batching import DynamicBatcher
from wikimem_common.errors import ResourceExhausted


def test_concurrent_callers_share_batches_and_get_their_own_results() -> None:
    sizes: list[int] = []

    def square(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.01)
        return [x * x for x in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(square, max_batch=64, max_wait_ms=20)
    results: dict[int, list[int]] = {}

    def call(k: int) -> None:
        results[k] = batcher([k * 10 + i for i in range(3)])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert all(results[k] == [(k * 10 + i) ** 2 for i in range(3)] for k in range(12))
    assert batcher.batches_run < 12, sizes
    assert max(sizes) <= 64


def test_errors_reach_every_caller_of_the_batch_and_batcher_survives() -> None:
    def boom(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return list(items)

    batcher: DynamicBatcher[int, int] = DynamicBatcher(boom, max_batch=8, max_wait_ms=1)
    with pytest.raises(ValueError):
        batcher([13])
    assert batcher([1, 2]) == [1, 2]
    batcher.close()


def test_queue_limit_is_resource_exhausted() -> None:
    gate = threading.Event()

    def slow(items: Sequence[int]) -> list[int]:
        gate.wait(5)
        return list(items)

    batcher: DynamicBatcher[int, int] = DynamicBatcher(slow, max_batch=4, max_wait_ms=0, max_queue=10)
    first = batcher.submit(list(range(4)))
    time.sleep(0.05)  # the worker holds the first batch
    batcher.submit(list(range(6)))
    with pytest.raises(ResourceExhausted):
        batcher.submit(list(range(5)))
    gate.set()
    assert first.result(5) == [0, 1, 2, 3]
    batcher.close()


def test_large_job_runs_alone_and_empty_job_returns_immediately() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(lambda xs: [x + 1 for x in xs], max_batch=4)
    assert batcher(list(range(10))) == list(range(1, 11))
    assert batcher([]) == []
    batcher.close()
