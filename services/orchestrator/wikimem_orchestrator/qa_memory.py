"""QA memory ("label smearing"): a question answered before reuses that answer, while it is still current.

Lookup (after the exact answer cache missed and the question was embedded): the question's vector is compared
(cosine, numpy) with the vectors of the most recent `max_entries` questions answered in the same *scope*; those at
or above the calibrated `threshold` that also pass the lexical `guard` are candidates (at most MAX_CANDIDATES,
best first). The guard ("same-words", default) demands the same content words in the same order
(`same_question`): the calibration (bench/qa_memory_calibration.py, docs/architecture.md "QA memory") found
different questions at cosine up to 0.997-0.998 with this embedder ("from Lisbon to Munich" / "from Munich to
Lisbon", "AFC" / "NFC"), above every true paraphrase (at most 0.964), so cosine alone cannot reuse paraphrases
without reusing wrong answers. What is reused is the same question worded with other function words,
punctuation, case or contractions, and — the main gain — the same question after writes that did not change its
answer, which the generation-keyed exact cache cannot reuse. `guard="none"` reuses on cosine alone.

A candidate is reused only if it is still what its documents say, checked by one of two rules (`check`):

- ``retrieval`` (default): re-running retrieval for the *remembered* question (its stored vector and text, the
  caller's groups) returns exactly the same chunks (chunk ids name doc@revision). Then the reranker and reader
  would see the same input and give the same answer, so a write anywhere that could change it (an edit of a cited
  or retrieved page, a new page that now ranks in) invalidates it. One memory Search: milliseconds, against the
  hundreds that reranking and reading take.
- ``cited``: every document the answer names (citations, and passages when returned) is at the same revision
  and readable by the caller (memory Get with the caller's groups). Fewer misses after unrelated edits, but a new
  page that would now answer better is not noticed until the entry is evicted or expires.

Fast path for both: the memory generation is still the one the answer was computed at (no write at all since)
and the shared revision map agrees with every document the entry depends on (guards replicas that reuse a
generation for a while). An invalid candidate is forgotten.

Scope: the embedder model, collection, the caller's group set and the options that change the answer
(`AskParams.cache_options`: retrieval mode, retrieve_k, read_k, reader, ...), as in the exact cache's key. Access
control is therefore the answer cache's: an entry is only ever seen by callers with the same groups, whose retrieval
is what produced it; verification runs with the caller's groups too, so an unreadable document can never be served.

Not remembered: abstentions (they cite nothing, so no revision check could ever retire them, and a paraphrase's
"no answer" is weak evidence), degraded answers (reranker unavailable), `no_cache` / `no_qa_memory` requests.

Storage (Redis, keys under the cache prefix): list `qa:<scope>:v` of `entry id (16 bytes) + float32 vector`, newest
first, trimmed to `max_entries` (evicted entries' records are deleted in the same Lua script), and hash
`qa:<scope>:e` entry id -> JSON header line + AskResponse bytes. Both expire `ttl_s` after the last addition. A
lookup is one LRANGE (max_entries x (16 + 4 x dim) bytes), one O(max_entries x dim) matrix-vector product and
one HMGET of at most MAX_FETCHED records. The in-process store keeps the same structure per scope (LRU over
scopes). Redis errors never fail an Ask: the lookup misses and the answer is computed (with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import redis

from wikimem_common import metrics
from wikimem_common.errors import NotFound, ServiceError
from wikimem_contract.v1 import common_pb2, memory_pb2, rag_pb2

from .cache import DELETED, CacheError, RedisStore, _digest

log = logging.getLogger("wikimem.orchestrator.qa_memory")

CHECK_RETRIEVAL = "retrieval"
CHECK_CITED = "cited"
CHECKS = (CHECK_RETRIEVAL, CHECK_CITED)

#: Candidates above the threshold verified per lookup (each may cost one memory call), out of at most
#: MAX_FETCHED most similar entries read.
MAX_CANDIDATES = 3
MAX_FETCHED = 8

ID_BYTES = 16

Vector = npt.NDArray[np.float32]


#: Words that never change what a question asks: articles, present forms of "be", the "s" of "what's",
#: fillers. Question words, negations, modals, prepositions, pronouns, past tenses ("was"), "do" (a verb too:
#: "what do auricles do?") and every content word are kept.
IGNORABLE = frozenset(
    ["a", "an", "the", "is", "are", "am", "be", "s", "so", "please", "well", "ok", "okay", "just", "actually",
     "hey", "hi"]
)
GUARD_SAME_WORDS = "same-words"
GUARD_NONE = "none"
GUARDS = (GUARD_SAME_WORDS, GUARD_NONE)
_WORD = re.compile(r"[^\W_]+")


def content_words(question: str) -> tuple[str, ...]:
    """The words of a question that can change its meaning, lower-cased, in order."""
    text = unicodedata.normalize("NFKC", question).lower()
    return tuple(w for w in _WORD.findall(text) if w not in IGNORABLE)


def same_question(a: str, b: str) -> bool:
    """The lexical guard: the same content words in the same order (so "What's X called?" and "So, what is X
    called" match; "from Lisbon to Munich" and "from Munich to Lisbon", or "full-time" and "part-time", do not —
    MiniLM puts such pairs at cosine 0.91 to 0.998, above every true paraphrase)."""
    return content_words(a) == content_words(b)


@dataclass(frozen=True)
class Entry:
    """A remembered answer and what it depends on."""

    question: str
    generation: int
    created: float
    #: doc_id -> revision for every document the entry depends on (retrieved docs, or the docs it names).
    docs: dict[str, int]
    #: Sorted chunk ids the remembered question retrieved (rule `retrieval`).
    retrieved: list[str]
    #: The AskResponse as computed (no warnings, no timings).
    payload: bytes

    def encode(self) -> bytes:
        header = {"q": self.question, "g": self.generation, "t": self.created, "d": self.docs, "r": self.retrieved}
        return json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n" + self.payload

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        header, _, payload = raw.partition(b"\n")
        h = json.loads(header)
        return cls(
            question=str(h["q"]),
            generation=int(h["g"]),
            created=float(h["t"]),
            docs={str(k): int(v) for k, v in h["d"].items()},
            retrieved=[str(c) for c in h["r"]],
            payload=payload,
        )


@dataclass(frozen=True)
class Candidate:
    similarity: float
    entry_id: bytes
    vector: Vector
    entry: Entry


class QAStore(Protocol):
    name: str

    def scan(self, scope: str, dim: int) -> tuple[list[bytes], Vector]:
        """Entry ids (newest first) and their vectors (rows, dim); entries of another dim are skipped."""
        ...

    def fetch(self, scope: str, ids: Sequence[bytes]) -> list[bytes | None]: ...

    def add(self, scope: str, entry_id: bytes, vector: Vector, record: bytes, max_entries: int, ttl_s: float) -> None:
        ...

    def forget(self, scope: str, entry_id: bytes, vector: Vector) -> None: ...


def _element(entry_id: bytes, vector: Vector) -> bytes:
    return entry_id + np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _parse(elements: Sequence[bytes], dim: int) -> tuple[list[bytes], Vector]:
    size = ID_BYTES + 4 * dim
    good = [e for e in elements if len(e) == size]
    if not good:
        return [], np.zeros((0, dim), dtype=np.float32)
    rows = np.frombuffer(b"".join(good), dtype=np.dtype([("id", f"S{ID_BYTES}"), ("v", "<f4", (dim,))]))
    return [bytes(e[:ID_BYTES]) for e in good], np.asarray(rows["v"], dtype=np.float32)


class LocalQAStore:
    """In-process: per scope a deque (newest first) of (id, element, record, expires at); LRU over scopes."""

    name = "in-process QA memory"

    def __init__(self, max_scopes: int = 1024) -> None:
        self.max_scopes = max_scopes
        self._scopes: OrderedDict[str, deque[tuple[bytes, bytes, bytes, float]]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, scope: str) -> list[tuple[bytes, bytes, bytes, float]]:
        entries = self._scopes.get(scope)
        if entries is None:
            return []
        self._scopes.move_to_end(scope)
        now = time.monotonic()
        return [e for e in entries if e[3] > now]

    def scan(self, scope: str, dim: int) -> tuple[list[bytes], Vector]:
        with self._lock:
            elements = [e[1] for e in self._live(scope)]
        return _parse(elements, dim)

    def fetch(self, scope: str, ids: Sequence[bytes]) -> list[bytes | None]:
        with self._lock:
            records = {e[0]: e[2] for e in self._live(scope)}
        return [records.get(i) for i in ids]

    def add(self, scope: str, entry_id: bytes, vector: Vector, record: bytes, max_entries: int, ttl_s: float) -> None:
        with self._lock:
            entries = self._scopes.get(scope)
            if entries is None or entries.maxlen != max_entries:
                entries = deque(entries or (), maxlen=max_entries)
                self._scopes[scope] = entries
            entries.appendleft((entry_id, _element(entry_id, vector), record, time.monotonic() + ttl_s))
            self._scopes.move_to_end(scope)
            while len(self._scopes) > self.max_scopes:
                self._scopes.popitem(last=False)

    def forget(self, scope: str, entry_id: bytes, vector: Vector) -> None:
        with self._lock:
            entries = self._scopes.get(scope)
            if entries is not None:
                kept = [e for e in entries if e[0] != entry_id]
                entries.clear()
                entries.extend(kept)


#: KEYS: vector list, record hash; ARGV: element (id + vector), id, record, max entries, ttl ms.
_ADD_LUA = """
redis.call('LPUSH', KEYS[1], ARGV[1])
local limit = tonumber(ARGV[4])
local evicted = redis.call('LRANGE', KEYS[1], limit, -1)
for _, element in ipairs(evicted) do
  redis.call('HDEL', KEYS[2], string.sub(element, 1, 16))
end
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""


class RedisQAStore:
    """The QA memory in the cache's Redis (same connection, timeouts and back-off as the answer cache)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.name = store.name
        self._add = store.client.register_script(_ADD_LUA)

    def _keys(self, scope: str) -> tuple[str, str]:
        base = f"{self.store.prefix}qa:{scope}"
        return f"{base}:v", f"{base}:e"

    def scan(self, scope: str, dim: int) -> tuple[list[bytes], Vector]:
        vec_key, _ = self._keys(scope)
        elements = self.store.run(lambda r: r.lrange(vec_key, 0, -1))
        assert isinstance(elements, list)
        return _parse(elements, dim)

    def fetch(self, scope: str, ids: Sequence[bytes]) -> list[bytes | None]:
        if not ids:
            return []
        _, rec_key = self._keys(scope)
        values = self.store.run(lambda r: r.hmget(rec_key, list(ids)))
        assert isinstance(values, list)
        return [v if isinstance(v, bytes) else None for v in values]

    def add(self, scope: str, entry_id: bytes, vector: Vector, record: bytes, max_entries: int, ttl_s: float) -> None:
        keys = list(self._keys(scope))
        args: list[bytes | int] = [_element(entry_id, vector), entry_id, record, max_entries, max(1, int(ttl_s * 1000))]
        self.store.run(lambda r: self._add(keys=keys, args=args, client=r))

    def forget(self, scope: str, entry_id: bytes, vector: Vector) -> None:
        vec_key, rec_key = self._keys(scope)

        def drop(r: redis.Redis) -> object:
            pipe = r.pipeline(transaction=True)
            pipe.lrem(vec_key, 1, _element(entry_id, vector))  # type: ignore[arg-type]  # bytes values work
            pipe.hdel(rec_key, entry_id)
            return pipe.execute()

        self.store.run(drop)


class Verifier(Protocol):
    """What verification needs from the peers and the answer cache (implemented by the pipeline's parts)."""

    def search(self, request: memory_pb2.SearchRequest, timeout: float) -> memory_pb2.SearchResponse: ...

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse: ...


@dataclass(frozen=True)
class QAMemorySettings:
    threshold: float
    max_entries: int = 256
    ttl_s: float = 86400.0
    check: str = CHECK_RETRIEVAL
    guard: str = GUARD_SAME_WORDS


@dataclass(frozen=True)
class Hit:
    response: rag_pb2.AskResponse
    similarity: float
    question: str


class QAMemory:
    """Lookup, verification and remembering; every method catches cache errors into `warnings`."""

    def __init__(
        self,
        store: QAStore,
        settings: QAMemorySettings,
        revisions: Callable[[str, Sequence[str]], list[int | None]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        #: The shared revision map (collection, doc ids) -> revisions, for the fast path; None: no map.
        self.revisions = revisions

    @staticmethod
    def scope(model_id: str, collection: str, groups: Sequence[str], options: dict[str, object]) -> str:
        return _digest({"m": model_id, "c": collection, "g": sorted(set(groups)), "o": options})

    def _warn(self, warnings: list[str], exc: CacheError) -> None:
        if not any(w.startswith("cache unavailable") for w in warnings):
            warnings.append(f"cache unavailable, answered without it: {exc}")

    def candidates(self, scope: str, vector: Vector, question: str, warnings: list[str]) -> list[Candidate]:
        """Entries at or above the threshold that pass the lexical guard, best first (newest first among equals),
        at most MAX_CANDIDATES."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if norm == 0.0:
            return []
        query = query / norm
        try:
            ids, matrix = self.store.scan(scope, query.shape[0])
            if not ids:
                return []
            norms = np.linalg.norm(matrix, axis=1)
            sims = (matrix @ query) / np.clip(norms, 1e-12, None)
            order = [int(i) for i in np.argsort(-sims, kind="stable") if sims[i] >= self.settings.threshold]
            order = order[:MAX_FETCHED]
            records = self.store.fetch(scope, [ids[i] for i in order])
        except CacheError as exc:
            self._warn(warnings, exc)
            return []
        out: list[Candidate] = []
        oldest = time.time() - self.settings.ttl_s
        for i, raw in zip(order, records, strict=True):
            if raw is None:
                continue
            try:
                entry = Entry.decode(raw)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable QA memory entry skipped", extra={"error": str(exc)})
                continue
            if entry.created < oldest:
                continue
            if self.settings.guard == GUARD_SAME_WORDS and not same_question(entry.question, question):
                continue
            out.append(Candidate(float(sims[i]), ids[i], matrix[i], entry))
        return out[:MAX_CANDIDATES]

    def lookup(
        self,
        scope: str,
        vector: Vector,
        question: str,
        *,
        collection: str,
        groups: Sequence[str],
        search_request: Callable[[Vector, str], memory_pb2.SearchRequest],
        generation: int,
        verifier: Verifier,
        timeout: Callable[[], float],
        warnings: list[str],
    ) -> Hit | None:
        """The first candidate still valid (see the module docstring), else None; outdated ones are forgotten.
        `search_request(vector, question)` builds the Ask's retrieval for a remembered question."""
        hit = self._lookup(
            scope, vector, question, collection, groups, search_request, generation, verifier, timeout, warnings
        )
        metrics.cache_lookup("qa_memory", hit is not None)
        return hit

    def _lookup(
        self,
        scope: str,
        vector: Vector,
        question: str,
        collection: str,
        groups: Sequence[str],
        search_request: Callable[[Vector, str], memory_pb2.SearchRequest],
        generation: int,
        verifier: Verifier,
        timeout: Callable[[], float],
        warnings: list[str],
    ) -> Hit | None:
        for candidate in self.candidates(scope, vector, question, warnings):
            try:
                valid = self._valid(candidate, collection, groups, search_request, generation, verifier, timeout)
            except CacheError as exc:
                self._warn(warnings, exc)
                return None
            except ServiceError as exc:  # memory down or slow: answer without the QA memory
                warnings.append(f"QA memory not used (could not verify a remembered answer: {exc.message})")
                return None
            if valid:
                response = rag_pb2.AskResponse.FromString(candidate.entry.payload)
                return Hit(response, candidate.similarity, candidate.entry.question)
            log.info("QA memory entry outdated", extra={"question": candidate.entry.question})
            try:
                self.store.forget(scope, candidate.entry_id, candidate.vector)
            except CacheError as exc:
                self._warn(warnings, exc)
        return None

    def _valid(
        self,
        candidate: Candidate,
        collection: str,
        groups: Sequence[str],
        search_request: Callable[[Vector, str], memory_pb2.SearchRequest],
        generation: int,
        verifier: Verifier,
        timeout: Callable[[], float],
    ) -> bool:
        entry = candidate.entry
        if self.revisions is not None and entry.docs:
            # Revisions only grow (a re-created document continues after its deleted ones); a map behind the
            # entry (a write that bypassed the orchestrators) is no evidence of change, a newer or deleted one is.
            doc_ids = sorted(entry.docs)
            known = self.revisions(collection, doc_ids)
            for doc_id, now in zip(doc_ids, known, strict=True):
                if now is not None and (now == DELETED or now > entry.docs[doc_id]):
                    return False
        if generation and entry.generation == generation:
            return True  # nothing was written since the answer was computed
        if self.settings.check == CHECK_CITED:
            for doc_id, revision in entry.docs.items():
                request = memory_pb2.GetRequest(doc_id=doc_id, collection=collection, groups=list(groups))
                try:
                    found = verifier.get(request, timeout())
                except NotFound:
                    return False
                if int(found.document.revision) != revision:
                    return False
            return True
        found_chunks = verifier.search(search_request(candidate.vector, entry.question), timeout())
        return sorted(h.chunk.chunk_id for h in found_chunks.hits) == entry.retrieved

    def remember(
        self,
        scope: str,
        question: str,
        vector: Vector,
        response: rag_pb2.AskResponse,
        hits: Sequence[common_pb2.ScoredChunk],
        generation: int,
        warnings: list[str],
    ) -> bool:
        """Store a computed answer (not abstentions, not degraded answers). True if stored."""
        if response.abstained or not response.citations or not response.reranked:
            return False
        if self.settings.check == CHECK_CITED:
            docs = {c.doc_id: int(c.revision) for c in response.citations}
            docs.update({p.chunk.doc_id: int(p.chunk.revision) for p in response.passages})
        else:
            docs = {h.chunk.doc_id: int(h.chunk.revision) for h in hits}
        entry = Entry(
            question=question,
            generation=generation,
            created=time.time(),
            docs=docs,
            retrieved=sorted(h.chunk.chunk_id for h in hits),
            payload=response.SerializeToString(),
        )
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        try:
            self.store.add(
                scope, os.urandom(ID_BYTES), query, entry.encode(), self.settings.max_entries, self.settings.ttl_s
            )
        except CacheError as exc:
            self._warn(warnings, exc)
            return False
        return True
