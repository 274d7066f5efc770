"""Write coordination between memory replicas: who may write a document now, and which revision a write gets.

One memory process guards each document with an in-process lock (`LocalCoordinator`, the default; the embedded Edge
store is single-process by construction). Several memory processes on one Qdrant store use `RedisCoordinator`:

- **revisions come from Redis** (`INCR`, never below the store's own floor), so two writers never build chunks under
  the same `(doc_id, revision)` point ids, and a revision is never handed out twice — not after a delete either;
- **a per-document lease** (`SET NX PX`, renewed by a watchdog, released by compare-and-delete) keeps writers of one
  document in line, so they rarely conflict;
- **the commit is conditional** (compare-and-set on the registry point: "the revision I read is still current", see
  `Registry.put(expect=...)`), so correctness never rests on the lease: a writer whose lease expired while it was
  paused (GC, SIGSTOP, a slow embedder) finds its commit refused with ABORTED and discards its own chunks, which no
  other writer shares.

Redis unreachable: writes fail with UNAVAILABLE (never written without coordination); reads do not touch Redis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from wikimem_common.errors import Aborted, FailedPrecondition, Unavailable
from wikimem_common.locks import KeyedLocks
from wikimem_common.redis_target import RedisTarget

log = logging.getLogger("wikimem.memory.coordination")

Key = tuple[str, str]


class Coordinator(Protocol):
    #: Whether commits must be conditional (several writers may share the store).
    shared: bool

    def hold(self, key: Key) -> contextlib.AbstractContextManager[None]:
        """Exclusive (best effort) right to write `key` = (collection, doc_id) while the context is open."""
        ...

    def allocate(self, key: Key, floor: int, requested: int) -> int:
        """The revision of a new write: `requested` if given (must be above every revision ever allocated or
        stored, else FailedPrecondition), else one above both `floor` and every revision allocated before."""
        ...

    def close(self) -> None: ...


class LocalCoordinator:
    """One lock per document inside this process; revisions from the store's floor (single writer)."""

    shared = False

    def __init__(self) -> None:
        self._locks = KeyedLocks()

    def hold(self, key: Key) -> contextlib.AbstractContextManager[None]:
        return self._locks.hold(key)

    def allocate(self, key: Key, floor: int, requested: int) -> int:
        if requested and requested <= floor:
            raise _not_newer(key, requested, floor)
        return requested or floor + 1

    def close(self) -> None:
        pass


def _not_newer(key: Key, requested: int, latest: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"revision {requested} of document {key[1]!r} is not newer than its latest revision {latest}; "
        f"send 0 to let the memory assign {latest + 1}"
    )


#: Allocate a revision: KEYS[1] the document's counter; ARGV floor, requested. Returns the revision, or -latest when
#: the requested one is not above everything allocated or stored.
_ALLOCATE = """
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > latest then latest = floor end
local requested = tonumber(ARGV[2])
local rev
if requested > 0 then
  if requested <= latest then return -latest end
  rev = requested
else
  rev = latest + 1
end
redis.call('SET', KEYS[1], rev)
return rev
"""

#: Release / renew only a lease we still own.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
)


@dataclass(frozen=True)
class RedisSettings:
    target: RedisTarget
    #: Key prefix: one per store (replicas of one store share it).
    prefix: str = "wikimem:memory"
    lease_ms: int = 15_000
    #: How long a writer waits for another writer's lease before giving up with ABORTED.
    wait_s: float = 30.0


class RedisCoordinator:
    """Leases and revision counters in Redis, shared by every memory replica of one store."""

    shared = True

    def __init__(self, settings: RedisSettings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self._redis = client or settings.target.connect(socket_timeout=2.0, socket_connect_timeout=2.0)
        self._allocate: Any = self._redis.register_script(_ALLOCATE)
        self._release: Any = self._redis.register_script(_RELEASE)
        self._renew: Any = self._redis.register_script(_RENEW)
        self._owner = f"{os.getpid()}-{secrets.token_hex(4)}"

    def _key(self, kind: str, key: Key) -> str:
        collection, doc_id = key
        return f"{self.settings.prefix}:{kind}:{len(collection)}:{collection}:{doc_id}"

    @contextlib.contextmanager
    def _redis_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise Unavailable(
                f"cannot {what}: Redis (write coordination of the memory replicas) is unreachable: {exc}; "
                "writes resume when it is back, reads are unaffected"
            ) from exc

    @contextlib.contextmanager
    def hold(self, key: Key) -> Iterator[None]:
        lock_key = self._key("lease", key)
        token = f"{self._owner}-{secrets.token_hex(8)}"
        deadline = time.monotonic() + self.settings.wait_s
        delay = 0.002
        with self._redis_errors("take the document's write lease"):
            while not self._redis.set(lock_key, token, nx=True, px=self.settings.lease_ms):
                if time.monotonic() > deadline:
                    raise Aborted(
                        f"document {key[1]!r} is being written by another memory replica for more than "
                        f"{self.settings.wait_s:.0f}s; retry later"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        stop = threading.Event()
        watchdog = threading.Thread(target=self._keep, args=(lock_key, token, stop), daemon=True)
        watchdog.start()
        try:
            yield
        finally:
            stop.set()
            watchdog.join()
            try:
                self._release(keys=[lock_key], args=[token])
            except redis.RedisError:  # the lease expires on its own
                log.warning("could not release a write lease", extra={"doc_id": key[1]})

    def _keep(self, lock_key: str, token: str, stop: threading.Event) -> None:
        """Renew the lease at a third of its term while the write runs (a lost lease is caught at commit)."""
        period = self.settings.lease_ms / 3000.0
        while not stop.wait(period):
            try:
                if not self._renew(keys=[lock_key], args=[token, self.settings.lease_ms]):
                    log.warning("write lease lost before the write finished; its commit will be checked")
                    return
            except redis.RedisError:
                return

    def allocate(self, key: Key, floor: int, requested: int) -> int:
        with self._redis_errors("allocate a revision"):
            rev = int(self._allocate(keys=[self._key("revision", key)], args=[floor, requested]))
        if rev < 0:
            raise _not_newer(key, requested, -rev)
        return rev

    def close(self) -> None:
        self._redis.close()
