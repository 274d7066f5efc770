"""KeyedLocks: one holder per key at a time, other keys independent, and no entry left once nobody holds a key."""

from __future__ import annotations

import threading
import time

from wikimem_common.locks import KeyedLocks


def test_one_holder_per_key_and_nothing_left_behind() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    overlaps: list[str] = []

    def work(key: str) -> None:
        with locks.hold(key):
            if key in inside:
                overlaps.append(key)
            inside.append(key)
            time.sleep(0.01)
            inside.remove(key)

    threads = [threading.Thread(target=work, args=(k,)) for k in ("a", "b") * 5]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert locks._locks == {}


def test_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    done = threading.Event()

    def other() -> None:
        with locks.hold(("c", "y")):
            done.set()

    with locks.hold(("c", "x")):
        threading.Thread(target=other).start()
        assert done.wait(2)
