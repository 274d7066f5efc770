"""Sentence vectors computed when a document is written, so that the first Ask reading its chunks only takes dot
products (the sentence first answer decision, sentences.py).

Why: embedding the ~40 sentences of the 5 passages an Ask reads costs ~190 ms of embedder CPU, which on a small
machine competes with the reader (18F handbook, 2 cores: cold p50 679 ms against 490 ms with sentence first off).
With the vectors cached an Ask costs what it costs with sentence first off (measured there, paired Asks: embedder
CPU per cold Ask 197 -> 7 ms, total CPU per Ask equal to sentence first off within 1 %).

Best effort, off the write path: PutDocument hands the document to a bounded queue and returns. One worker thread
fetches the document's current chunks (memory GetChunks, with the document's own ACL as groups) and embeds the
sentences of each chunk not cached yet (the inputs an Ask would embed: `sentences.chunk_inputs`; one Embed call per
chunk), keeping them in the pipeline's VectorCache under the model id an Ask keys on. Foreground calls come first:
before each Embed call the worker waits until no Ask or write has been in flight here for QUIET_S (at most
MAX_YIELD_S, so warming still progresses under steady traffic), so warming after a bulk ingest fills the gaps
instead of slowing Asks or the ingest. A write that finds the queue full is not warmed, and any failure (memory,
embedder, Redis) is logged and skips that document: its Ask embeds the sentences itself, as without warming.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Gauge

from wikimem_common import vectors
from wikimem_common.errors import NotFound
from wikimem_contract.v1 import embedder_pb2, embedder_pb2_grpc, memory_pb2, memory_pb2_grpc

from .peers import GrpcBackends
from .sentences import VectorCache, chunk_inputs, vector_key

log = logging.getLogger("wikimem.orchestrator.sentence_warming")

#: How long no Ask or write must have been in flight before the worker sends an Embed call.
QUIET_S = 0.05
#: The longest the worker waits for such a moment before sending one anyway (one chunk: ~10 sentences).
MAX_YIELD_S = 1.0

PENDING = Gauge("wikimem_sentence_warm_pending", "Written documents waiting for (or in) sentence vector warming")
CHUNKS = Counter(
    "wikimem_sentence_warm_chunks",
    "Chunks seen by sentence vector warming, by result: warmed (embedded now), cached (already there), failed",
    ["result"],
)
DROPPED = Counter("wikimem_sentence_warm_dropped", "Written documents not warmed because the queue was full")


class Foreground:
    """Asks and writes in flight in this orchestrator (the servicer marks them), so that background work can wait
    for a quiet moment."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._last_end = 0.0

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._last_end = time.monotonic()
                self._cond.notify_all()

    def wait_quiet(self, quiet_s: float, max_wait_s: float) -> bool:
        """Block until nothing has been in flight for `quiet_s` (True) or `max_wait_s` has passed (False)."""
        deadline = time.monotonic() + max_wait_s
        with self._cond:
            while True:
                now = time.monotonic()
                idle_for = now - self._last_end
                if self._active == 0 and idle_for >= quiet_s:
                    return True
                if now >= deadline:
                    return False
                wait = deadline - now if self._active else min(deadline - now, quiet_s - idle_for)
                self._cond.wait(wait)


class WarmPeers(Protocol):
    def get_chunks(self, request: memory_pb2.GetChunksRequest, timeout: float) -> memory_pb2.GetChunksResponse: ...

    def embed_batch(self, texts: Sequence[str], timeout: float) -> embedder_pb2.EmbedResponse: ...

    def embedder_info(self, timeout: float) -> embedder_pb2.InfoResponse: ...


class GrpcWarmPeers:
    """The two peer calls warming needs that GrpcBackends does not offer (GetChunks; Embed with its model id), on
    its channels and with its error mapping."""

    def __init__(self, backends: GrpcBackends) -> None:
        self.backends = backends
        self._memory = memory_pb2_grpc.MemoryStub(backends.memory.channel)
        self._embedder = embedder_pb2_grpc.EmbedderStub(backends.embedder.channel)

    def get_chunks(self, request: memory_pb2.GetChunksRequest, timeout: float) -> memory_pb2.GetChunksResponse:
        return self.backends.memory.call(self._memory.GetChunks, request, timeout)

    def embed_batch(self, texts: Sequence[str], timeout: float) -> embedder_pb2.EmbedResponse:
        return self.backends.embedder.call(
            self._embedder.Embed, embedder_pb2.EmbedRequest(texts=list(texts)), timeout
        )

    def embedder_info(self, timeout: float) -> embedder_pb2.InfoResponse:
        return self.backends.embedder_info(timeout)


def warm_peers(backends: object) -> WarmPeers | None:
    """Warming's peer calls over the orchestrator's gRPC channels; None for other backends (bench/direct.py calls
    the services in process and never writes)."""
    return GrpcWarmPeers(backends) if isinstance(backends, GrpcBackends) else None


@dataclass(frozen=True)
class _Job:
    collection: str
    doc_id: str
    acl: tuple[str, ...]


_STOP = _Job("", "", ())


class SentenceWarmer:
    """The queue and its worker. `info_model_fallback`: key vectors by the embedder's Info model id when its Embed
    response names none — what the pipeline does when its cache is on (pipeline._embed), so keys match."""

    def __init__(
        self,
        peers: WarmPeers,
        cache: VectorCache,
        foreground: Foreground | None = None,
        queue_size: int = 1000,
        timeout_s: float = 10.0,
        info_model_fallback: bool = True,
    ) -> None:
        self.peers = peers
        self.cache = cache
        self.foreground = foreground or Foreground()
        self.timeout_s = timeout_s
        self.info_model_fallback = info_model_fallback
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=queue_size)
        self._idle = threading.Condition()
        self._pending = 0
        self._stopped = threading.Event()
        self._worker = threading.Thread(target=self._run, name="orchestrator-sentence-warming", daemon=True)
        self._worker.start()

    def submit(self, collection: str, doc_id: str, acl: Sequence[str]) -> bool:
        """Queue a written document (never blocks, never raises); False when the queue is full or closed."""
        if self._stopped.is_set():
            return False
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(_Job(collection, doc_id, tuple(acl)))
        except queue.Full:
            self._done()
            DROPPED.inc()
            log.info("sentence warming queue full; document not warmed", extra={"doc_id": doc_id})
            return False
        PENDING.inc()
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued document has been handled (True) or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop: queued documents are dropped, the one being warmed stops at its next chunk."""
        self._stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
                PENDING.dec()
                self._done()
        with contextlib.suppress(queue.Full):  # (full again: the worker sees `_stopped` after its job)
            self._queue.put_nowait(_STOP)
        self._worker.join(timeout)

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while not self._stopped.is_set():
            job = self._queue.get()
            if job is _STOP:
                return
            if self._stopped.is_set():  # queued before close() drained the queue
                PENDING.dec()
                self._done()
                return
            try:
                self.warm(job.collection, job.doc_id, job.acl)
            except NotFound:
                log.debug("written document gone before warming", extra={"doc_id": job.doc_id})
            except Exception as exc:  # best effort: the Ask embeds what is missing
                log.warning("sentence warming failed", extra={"doc_id": job.doc_id, "error": str(exc)})
            finally:
                PENDING.dec()
                self._done()

    def warm(self, collection: str, doc_id: str, acl: Sequence[str]) -> int:
        """Embed the sentences of the document's current chunks that are not cached; the number embedded."""
        chunks = self.peers.get_chunks(
            memory_pb2.GetChunksRequest(doc_id=doc_id, collection=collection, groups=list(acl)), self.timeout_s
        ).chunks
        info_model = self.peers.embedder_info(self.timeout_s).model_id
        warmed = 0
        for chunk in chunks:
            if self._stopped.is_set():
                break
            inputs = chunk_inputs(chunk)
            if not inputs or not chunk.chunk_id:
                continue
            if self.cache.find(vector_key(info_model, chunk)) is not None:
                CHUNKS.labels("cached").inc()
                continue
            self.foreground.wait_quiet(QUIET_S, MAX_YIELD_S)
            if self.cache.find(vector_key(info_model, chunk)) is not None:  # an Ask read it meanwhile
                CHUNKS.labels("cached").inc()
                continue
            try:
                response = self.peers.embed_batch(inputs, self.timeout_s)
                rows = vectors.from_proto(response.vectors)
                if rows.shape[0] != len(inputs):
                    raise ValueError(f"the embedder returned {rows.shape[0]} vectors for {len(inputs)} sentences")
            except Exception:
                CHUNKS.labels("failed").inc()
                raise
            model = response.model_id or (info_model if self.info_model_fallback else "")
            self.cache.put(vector_key(model, chunk), rows)
            CHUNKS.labels("warmed").inc()
            warmed += 1
        return warmed
