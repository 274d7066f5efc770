"""Query-embedding and answer caches (Redis when REDIS_URL is set, else an in-process LRU).

Correctness rule: an answer is never served if a document it cites has changed since, or if any write could now
change it. Three mechanisms enforce that:

1. **Generation in the key.** Memory bumps a monotonic `generation` on every accepted write. The answer key is
   `ans:<generation>:sha256(collection, normalised question, sorted caller groups, retrieve_k, read_k, reader,
   include_passages)`, so any write anywhere makes every older answer unreachable (it just expires by TTL). The
   orchestrator learns the generation from memory `Stats` before each cached Ask (strict default; set
   WIKIMEM_GENERATION_MAX_AGE_S > 0 to reuse it for a while), and each PutDocument / DeleteDocument through it hands
   it the write's generation (UpsertResponse / DeleteResponse) before returning, so read-your-writes holds. An
   answer is stored only if the Search that produced it reported the same generation as the lookup (no write raced
   in between).
2. **Cited revisions verified on a hit.** The stored entry carries the (doc_id, revision) pairs it cites. Writes
   through any orchestrator sharing the cache record the document's current revision (0 once deleted) in a
   per-collection revision map (`rev:<collection>` hash); a hit whose citations disagree with that map is dropped.
   This also protects replicas that reuse a generation for a while (max age > 0) against each other's writes.
   The map only moves forward: each entry remembers the memory generation of the write that set it
   (`revgen:<collection>`), and a write's revision is recorded only if its generation is newer (one Lua script,
   atomic in Redis), so two replicas racing on one document can never leave the older revision behind.
3. **Groups in the key.** The caller's group set is part of the key, so an answer computed for one set of groups
   (which decides what could be retrieved) never reaches a caller with another.

Embeddings are keyed by the embedder's model id (+ dim, max length) and the normalised question hash; they do not
depend on the wiki, so they never go stale.

Failure: every Redis error is caught; the request is answered uncached with a note in `warnings`, never from a
stale entry. After an error Redis is skipped for WIKIMEM_REDIS_RETRY_S, then tried again (redis-py reconnects), so
caching resumes by itself when Redis is back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from wikimem_common import metrics
from wikimem_common.redis_target import RedisTarget

log = logging.getLogger("wikimem.orchestrator.cache")

#: Revision recorded for a deleted document.
DELETED = 0


class CacheError(RuntimeError):
    """The cache backend failed; the caller proceeds without it."""


class CacheStore(Protocol):
    name: str

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def get_revisions(self, collection: str, doc_ids: Sequence[str]) -> list[int | None]: ...

    def set_revision(self, collection: str, doc_id: str, revision: int, generation: int = 0) -> bool:
        """Record `revision` unless a write with a newer generation is already recorded (generation 0: unknown,
        recorded unconditionally). True if recorded."""
        ...

    def close(self) -> None: ...


class LocalStore:
    """In-process LRU with per-entry expiry; the revision map is a plain dict (one entry per written document)."""

    name = "in-process cache"

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._revisions: dict[tuple[str, str], tuple[int, int]] = {}  # (revision, generation of its write)
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def get_revisions(self, collection: str, doc_ids: Sequence[str]) -> list[int | None]:
        with self._lock:
            found = [self._revisions.get((collection, d)) for d in doc_ids]
        return [None if f is None else f[0] for f in found]

    def set_revision(self, collection: str, doc_id: str, revision: int, generation: int = 0) -> bool:
        with self._lock:
            seen = self._revisions.get((collection, doc_id))
            if generation and seen is not None and seen[1] >= generation:
                return False
            self._revisions[(collection, doc_id)] = (revision, generation or (seen[1] if seen else 0))
            return True

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        pass


#: KEYS: revision hash, generation hash; ARGV: doc_id, revision, generation. Sets the revision only if the write's
#: generation is newer than the one recorded (generation 0 = unknown: set unconditionally). Returns 1 if set.
_SET_REVISION_LUA = """
local generation = tonumber(ARGV[3])
if generation > 0 then
  local seen = redis.call('HGET', KEYS[2], ARGV[1])
  if seen and tonumber(seen) >= generation then
    return 0
  end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisStore:
    """Redis with short timeouts, no client-side retries, and a back-off window after errors."""

    def __init__(
        self, url: str | RedisTarget, prefix: str = "wikimem:", timeout_s: float = 0.25, retry_s: float = 1.0
    ) -> None:
        target = RedisTarget(url=url) if isinstance(url, str) else url
        self.name = target.describe()
        self.prefix = prefix
        self.retry_s = retry_s
        self._client = target.connect(
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._last_error = ""
        self._set_revision = self._client.register_script(_SET_REVISION_LUA)

    def _run(self, what: Callable[[redis.Redis], object]) -> object:
        with self._lock:
            if time.monotonic() < self._down_until:
                raise CacheError(f"{self.name} is unavailable ({self._last_error}); retrying shortly")
        try:
            return what(self._client)
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                self._down_until = time.monotonic() + self.retry_s
                self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning("redis error", extra={"cache": self.name, "error": str(exc)})
            raise CacheError(f"{self.name} is unavailable ({type(exc).__name__}: {exc})") from exc

    def get(self, key: str) -> bytes | None:
        value = self._run(lambda r: r.get(self.prefix + key))
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._run(lambda r: r.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000))))

    def delete(self, key: str) -> None:
        self._run(lambda r: r.delete(self.prefix + key))

    def get_revisions(self, collection: str, doc_ids: Sequence[str]) -> list[int | None]:
        if not doc_ids:
            return []
        values = self._run(lambda r: r.hmget(f"{self.prefix}rev:{collection}", list(doc_ids)))
        assert isinstance(values, list)
        return [None if v is None else int(v) for v in values]

    def set_revision(self, collection: str, doc_id: str, revision: int, generation: int = 0) -> bool:
        keys = [f"{self.prefix}rev:{collection}", f"{self.prefix}revgen:{collection}"]
        done = self._run(lambda r: self._set_revision(keys=keys, args=[doc_id, revision, generation], client=r))
        return bool(done)

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for other structures sharing this store's connection and failure handling
        (through `run`)."""
        return self._client

    def run(self, what: Callable[[redis.Redis], object]) -> object:
        """Run `what` against Redis; any Redis error becomes CacheError and starts the back-off window."""
        return self._run(what)

    def close(self) -> None:
        self._client.close()


def normalise_question(text: str) -> str:
    """NFKC, whitespace collapsed, stripped. Case is kept: the reader may be case-sensitive."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _digest(payload: object) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AnswerKey:
    generation: int
    collection: str
    key: str


class QueryCache:
    """The orchestrator's caches over a CacheStore; methods never raise, they append to `warnings` instead."""

    def __init__(self, store: CacheStore | None, answer_ttl_s: float = 3600.0, embedding_ttl_s: float = 604800.0):
        self.store = store
        self.answer_ttl_s = answer_ttl_s
        self.embedding_ttl_s = embedding_ttl_s

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def _warn(self, warnings: list[str], exc: CacheError) -> None:
        if not any(w.startswith("cache unavailable") for w in warnings):  # one note per request is enough
            warnings.append(f"cache unavailable, answered without it: {exc}")

    # embeddings
    @staticmethod
    def embedding_key(model_id: str, question: str) -> str:
        return f"emb:{model_id}:{hashlib.sha256(question.encode('utf-8')).hexdigest()}"

    def get_embedding(self, key: str, warnings: list[str]) -> bytes | None:
        if self.store is None:
            return None
        try:
            value = self.store.get(key)
        except CacheError as exc:
            self._warn(warnings, exc)
            value = None
        metrics.cache_lookup("embedding", value is not None)
        return value

    def put_embedding(self, key: str, value: bytes, warnings: list[str]) -> None:
        if self.store is None:
            return
        try:
            self.store.set(key, value, self.embedding_ttl_s)
        except CacheError as exc:
            self._warn(warnings, exc)

    # answers
    @staticmethod
    def answer_key(
        generation: int, collection: str, question: str, groups: Sequence[str], options: dict[str, object]
    ) -> AnswerKey:
        digest = _digest({"c": collection, "q": question, "g": sorted(set(groups)), "o": options})
        return AnswerKey(generation, collection, f"ans:{generation}:{digest}")

    def get_answer(self, key: AnswerKey, warnings: list[str]) -> bytes | None:
        """The cached payload, or None on a miss, a stale entry (cited revision changed) or a cache error."""
        if self.store is None:
            return None
        payload = self._get_answer(key, warnings)
        metrics.cache_lookup("answer", payload is not None)
        return payload

    def _get_answer(self, key: AnswerKey, warnings: list[str]) -> bytes | None:
        assert self.store is not None
        try:
            raw = self.store.get(key.key)
            if raw is None:
                return None
            header, _, payload = raw.partition(b"\n")
            cited: list[list[object]] = json.loads(header)
            doc_ids = [str(doc_id) for doc_id, _ in cited]
            current = self.store.get_revisions(key.collection, doc_ids)
            for (doc_id, revision), now in zip(cited, current, strict=True):
                if now is not None and now != revision:
                    log.info("dropping stale answer", extra={"doc_id": doc_id, "cited": revision, "current": now})
                    self.store.delete(key.key)
                    return None
            return payload
        except CacheError as exc:
            self._warn(warnings, exc)
            return None
        except (ValueError, TypeError) as exc:
            log.warning("unreadable cache entry dropped", extra={"error": str(exc)})
            return None

    def put_answer(
        self, key: AnswerKey, payload: bytes, cited: Sequence[tuple[str, int]], warnings: list[str]
    ) -> None:
        if self.store is None:
            return
        header = json.dumps([[doc_id, revision] for doc_id, revision in cited]).encode("utf-8")
        try:
            self.store.set(key.key, header + b"\n" + payload, self.answer_ttl_s)
        except CacheError as exc:
            self._warn(warnings, exc)

    # writes
    def record_revision(
        self, collection: str, doc_id: str, revision: int, warnings: list[str], generation: int = 0
    ) -> None:
        """A write through the orchestrator: remember the document's current revision (DELETED once deleted),
        unless a newer write (larger memory generation) is already recorded."""
        if self.store is None:
            return
        try:
            if not self.store.set_revision(collection, doc_id, revision, generation):
                log.info("older write not recorded", extra={"doc_id": doc_id, "revision": revision})
        except CacheError as exc:
            self._warn(warnings, exc)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class GenerationTracker:
    """The memory generation the answer cache keys on: fetched per lookup (max_age 0) or reused for max_age_s."""

    def __init__(self, fetch: Callable[[], int], max_age_s: float = 0.0) -> None:
        self._fetch = fetch
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._value: int | None = None
        self._at = 0.0

    def current(self) -> int:
        with self._lock:
            if self._value is not None and self.max_age_s > 0 and time.monotonic() - self._at < self.max_age_s:
                return self._value
        return self.refresh()

    def refresh(self) -> int:
        value = self._fetch()
        with self._lock:
            self._value = value
            self._at = time.monotonic()
        return value

    def after_write(self, generation: int = 0) -> None:
        """Observe the generation a write produced (from its response, else by asking memory; if memory cannot
        say, force a fetch on the next lookup). Strict trackers (max age 0) ask on every lookup anyway."""
        if self.max_age_s <= 0:
            return
        if generation > 0:
            with self._lock:
                if self._value is None or generation > self._value:
                    self._value, self._at = generation, time.monotonic()
            return
        try:
            self.refresh()
        except Exception:
            with self._lock:
                self._value = None
            log.warning("could not observe the memory generation after a write; will ask on the next lookup")


def normalise_collection(collection: str) -> str:
    return collection.strip() or "default"
