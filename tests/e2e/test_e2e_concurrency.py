"""Randomised concurrency: askers and editors at once, through two orchestrators sharing one real Redis.

Each edit writes a new, never reused number into a page, so an answer names the revision it was read from. For
every answer we record the window [request sent, response received] and its cited (doc_id, revision); for every
edit its send and ack times. A revision may be visible from the moment its PutDocument is sent until the moment
the write that replaced it is acknowledged. An answer is stale if its cited revision had been replaced (acked)
before the question was sent — this must never happen, cached or not. Nor may any call fail.

Replica A keys the answer cache on a generation fetched per Ask (the default); replica B reuses its generation for
up to a second (WIKIMEM_GENERATION_MAX_AGE_S), so for B the revision map shared in Redis is what keeps writes
made through A from being answered stale.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from wikimem.client import WikimemClient

from .system import System, start_orchestrator, start_system

DURATION_S = 20.0
COLLECTION = "concurrency"

#: doc id -> (template with {n}, question)
PAGES = {
    "rooms/aurora.md": (
        "---\ntitle: Aurora meeting room\n---\n\n# Aurora meeting room\n\nThe Aurora meeting room is on the "
        "third floor next to the kitchen. The Aurora meeting room seats {n} people. Book it in the calendar.\n",
        "How many people does the Aurora meeting room seat?",
    ),
    "facilities/parking.md": (
        "---\ntitle: Parking permits\n---\n\n# Parking permits\n\nEmployees can park in the garage under the "
        "building. A parking permit costs {n} dollars per month and is paid through payroll.\n",
        "How many dollars does a parking permit cost per month?",
    ),
    "it/wifi.md": (
        "---\ntitle: Guest Wi-Fi\n---\n\n# Guest Wi-Fi\n\nVisitors use the guest network. The guest Wi-Fi "
        "password is changed every {n} days by the IT team.\n",
        "Every how many days is the guest Wi-Fi password changed?",
    ),
}


@dataclass
class Edit:
    doc_id: str
    value: int
    sent: float
    acked: float
    revision: int


@dataclass
class Asked:
    doc_id: str
    replica: str
    sent: float
    received: float
    answer: str
    cited: list[tuple[str, int]]
    quote: str
    cached: bool
    source: str = "none"  # cache_source: none, exact or qa_memory


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[tuple[System, str]]:
    redis_server.flush()
    system = start_system(tmp_path_factory.mktemp("wikimem-concurrency"), redis_url=redis_server.url)
    extra = start_orchestrator(system, redis_server.url, {"WIKIMEM_GENERATION_MAX_AGE_S": "1"})
    try:
        yield system, extra.address
    finally:
        extra.stop(grace=1)
        system.close()


def test_answers_never_cite_a_superseded_revision(replicas: tuple[System, str]) -> None:
    system, second = replicas
    clients = {"A": WikimemClient(system.address, timeout=60), "B": WikimemClient(second, timeout=60)}
    counter = iter(range(1000, 10**6))
    counter_lock = threading.Lock()
    edits: list[Edit] = []
    asked: list[Asked] = []
    errors: list[str] = []
    lock = threading.Lock()

    def next_value() -> int:
        with counter_lock:
            return next(counter) * 7 % 9000 + 1000  # distinct four-digit numbers, not in order

    for doc_id, (template, _) in PAGES.items():
        value = next_value()
        sent = time.monotonic()
        result = clients["A"].put_document(doc_id, template.format(n=value), collection=COLLECTION)
        edits.append(Edit(doc_id, value, sent, time.monotonic(), result.document.revision))

    stop = threading.Event()

    def editor(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            doc_id = rnd.choice(list(PAGES))
            replica = rnd.choice("AB")
            value = next_value()
            try:
                sent = time.monotonic()
                result = clients[replica].put_document(doc_id, PAGES[doc_id][0].format(n=value), collection=COLLECTION)
                acked = time.monotonic()
            except Exception as exc:  # every failure is reported at the end
                with lock:
                    errors.append(f"edit {doc_id} via {replica}: {exc!r}")
                continue
            with lock:
                edits.append(Edit(doc_id, value, sent, acked, result.document.revision))
            stop.wait(rnd.uniform(0.3, 1.5))

    def asker(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            doc_id = rnd.choice(list(PAGES))
            replica = rnd.choice("AB")
            try:
                sent = time.monotonic()
                answer = clients[replica].ask(PAGES[doc_id][1], collection=COLLECTION)
                received = time.monotonic()
            except Exception as exc:
                with lock:
                    errors.append(f"ask {doc_id} via {replica}: {exc!r}")
                continue
            top = answer.citations[0] if answer.citations else None
            with lock:
                asked.append(
                    Asked(
                        doc_id,
                        replica,
                        sent,
                        received,
                        answer.answer,
                        [(c.doc_id, c.revision) for c in answer.citations],
                        top.quote if top else "",
                        answer.cached,
                        answer.cache_source,
                    )
                )
            stop.wait(rnd.uniform(0.0, 0.1))

    threads = [threading.Thread(target=editor, args=(s,)) for s in (1, 2)]
    threads += [threading.Thread(target=asker, args=(s,)) for s in (11, 12, 13)]
    for t in threads:
        t.start()
    time.sleep(DURATION_S)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    for c in clients.values():
        c.close()

    assert errors == []
    # when each (doc, revision) could be seen: from its put's send to the ack of the put that replaced it
    by_doc: dict[str, list[Edit]] = {}
    for e in sorted(edits, key=lambda e: e.revision):
        by_doc.setdefault(e.doc_id, []).append(e)
    window: dict[tuple[str, int], tuple[float, float, int]] = {}
    for doc_id, history in by_doc.items():
        assert [e.revision for e in history] == list(range(1, len(history) + 1)), doc_id  # no write lost
        for e, nxt in zip(history, [*history[1:], None], strict=True):
            window[(doc_id, e.revision)] = (e.sent, nxt.acked if nxt else float("inf"), e.value)

    stale: list[str] = []
    stale_cached = 0
    wrong: list[str] = []
    for a in asked:
        for doc_id, revision in a.cited:
            visible_from, replaced_at, _ = window[(doc_id, revision)]
            if replaced_at < a.sent or visible_from > a.received:
                stale.append(f"{a} cites {doc_id}@{revision}, visible {visible_from:.3f}..{replaced_at:.3f}")
                stale_cached += a.cached
        if a.cited:
            doc_id, revision = a.cited[0]
            value = str(window[(doc_id, revision)][2])
            if doc_id != a.doc_id or value not in a.quote:
                wrong.append(f"{a}: expected {a.doc_id} quoting {value}")
            elif value not in a.answer:
                wrong.append(f"{a}: the answer does not name {value}")

    answered = [a for a in asked if a.cited]
    cached = [a for a in asked if a.cached]
    print(
        f"\n{len(asked)} answers ({len(cached)} from the cache: A {sum(a.replica == 'A' for a in cached)}, "
        f"B {sum(a.replica == 'B' for a in cached)}; QA memory {sum(a.source == 'qa_memory' for a in cached)}), "
        f"{len(edits) - len(PAGES)} edits, "
        f"{len(asked) - len(answered)} without citation, {len(stale)} stale ({stale_cached} of them cache hits), "
        f"{len(wrong)} wrong, {len(errors)} errors"
    )
    assert stale_cached == 0 and stale == []
    assert wrong == []
    assert len(edits) - len(PAGES) >= 10 and len(asked) >= 30
    assert len(answered) >= 0.9 * len(asked)
    assert cached, "no answer came from the cache: the cache path was not exercised"
