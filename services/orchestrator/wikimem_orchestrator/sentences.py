"""The sentences of the passages read and their similarity to the question, for the sentence first decision.

Computed while the reader reads (one Embed call for the sentences not cached, on a small thread pool), so on a
machine with a core to spare it adds little to an Ask. The question's own embedding (already made for retrieval)
is reused. Sentence vectors are kept per chunk id in an LRU (WIKIMEM_SENTENCE_VECTOR_CHUNKS), and with Redis also
there (shared by replicas, kept across restarts): a chunk id names one revision of a page, so an entry never goes
stale. Writes through the orchestrator compute them ahead of the first Ask (sentence_warming.py), so an Ask usually
only takes dot products; one whose vectors are missing embeds them as above.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from wikimem_common import metrics
from wikimem_common.markup import mask_markup
from wikimem_contract.v1 import common_pb2

from .answering import Sentence, sentence_context, sentence_input
from .cache import CacheError, CacheStore
from .citations import sentence_spans
from .verify import Embed

log = logging.getLogger("wikimem.orchestrator.sentences")

#: Sentences of the passages read, and the cosine of each with the question (same order).
Scored = tuple[list[Sentence], npt.NDArray[np.float32]]

_POOL = ThreadPoolExecutor(4, thread_name_prefix="orchestrator-sentences")


def passage_sentences(passages: Sequence[common_pb2.ScoredChunk]) -> tuple[list[Sentence], list[str]]:
    """Sentence spans over each passage's text as the reader sees it (markup masked, offsets unchanged), and what is
    embedded for each (title and heading in front)."""
    sentences: list[Sentence] = []
    inputs: list[str] = []
    for i, p in enumerate(passages):
        masked = mask_markup(p.chunk.text)
        context = sentence_context(p.chunk.title, p.chunk.heading)
        for start, end in sentence_spans(masked):
            text = " ".join(masked[start:end].split())
            sentences.append(Sentence(i, start, end, text))
            inputs.append(sentence_input(context, text))
    return sentences, inputs


def vector_key(model: str, chunk: common_pb2.Chunk) -> tuple[str, str]:
    """What a chunk's sentence vectors are kept under: the embedder's model id and the chunk id within its collection
    (a chunk id, "<doc_id>@<revision>#<ordinal>", names one revision of one document only inside its collection)."""
    return model, f"{chunk.collection}\0{chunk.chunk_id}"


def chunk_inputs(chunk: common_pb2.Chunk) -> list[str]:
    """What an Ask embeds for this chunk's sentences, in order (`passage_sentences` of it alone: the vectors of a
    chunk do not depend on the other passages read with it)."""
    return passage_sentences([common_pb2.ScoredChunk(chunk=chunk)])[1]


#: Redis values: magic, rows and dim (uint32 little endian), then rows x dim float32 little endian. float32, not
#: float16: vectors read back are exactly the ones an Ask would compute, so the decision cannot differ.
_MAGIC = b"SV1"
_HEADER = struct.Struct("<II")


def encode_rows(rows: npt.NDArray[np.float32]) -> bytes:
    n, dim = rows.shape
    return _MAGIC + _HEADER.pack(n, dim) + np.ascontiguousarray(rows, dtype="<f4").tobytes()


def decode_rows(raw: bytes) -> npt.NDArray[np.float32] | None:
    """None for anything that is not a well-formed entry (treated as a miss)."""
    start = len(_MAGIC) + _HEADER.size
    if not raw.startswith(_MAGIC) or len(raw) < start:
        return None
    n, dim = _HEADER.unpack_from(raw, len(_MAGIC))
    if len(raw) != start + 4 * n * dim:
        return None
    return np.frombuffer(raw, dtype="<f4", offset=start).reshape(n, dim).astype(np.float32)


class VectorCache:
    """Sentence vectors per `vector_key` (model id, collection and chunk id), least recently used out first; with
    `shared` (the orchestrator's Redis store) also kept there for `ttl_s`, so replicas and restarts reuse them. A
    shared store that fails is a miss (and is skipped for its back-off window), never an error."""

    def __init__(self, max_chunks: int = 2000, shared: CacheStore | None = None, ttl_s: float = 7 * 86400.0) -> None:
        self.max_chunks = max_chunks
        self.shared = shared
        self.ttl_s = ttl_s
        self._rows: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def shared_key(key: tuple[str, str]) -> str:
        model, chunk_id = key
        return "sv:" + hashlib.sha256(f"{model}\0{chunk_id}".encode()).hexdigest()

    def get(self, key: tuple[str, str]) -> npt.NDArray[np.float32] | None:
        rows = self.find(key)
        metrics.cache_lookup("sentence_vectors", rows is not None)
        return rows

    def find(self, key: tuple[str, str]) -> npt.NDArray[np.float32] | None:
        """`get` without counting a lookup (the ingest-time warming asks before computing)."""
        with self._lock:
            rows = self._rows.get(key)
            if rows is not None:
                self._rows.move_to_end(key)
                return rows
        if self.shared is None:
            return None
        try:
            raw = self.shared.get(self.shared_key(key))
        except CacheError:
            return None
        rows = decode_rows(raw) if raw is not None else None
        if rows is not None:
            self._keep(key, rows)
        return rows

    def put(self, key: tuple[str, str], rows: npt.NDArray[np.float32]) -> None:
        self._keep(key, rows)
        if self.shared is not None and self.ttl_s > 0:
            try:
                self.shared.set(self.shared_key(key), encode_rows(rows), self.ttl_s)
            except CacheError as exc:
                log.debug("sentence vectors not shared", extra={"error": str(exc)})

    def _keep(self, key: tuple[str, str], rows: npt.NDArray[np.float32]) -> None:
        if self.max_chunks <= 0:
            return
        with self._lock:
            self._rows[key] = rows
            self._rows.move_to_end(key)
            while len(self._rows) > self.max_chunks:
                self._rows.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)


def score(
    question: npt.NDArray[np.float32],
    passages: Sequence[common_pb2.ScoredChunk],
    embed: Embed,
    cache: VectorCache | None = None,
    model: str = "",
) -> Scored:
    sentences, inputs = passage_sentences(passages)
    if not sentences:
        return sentences, np.zeros(0, dtype=np.float32)
    dim = question.size
    rows = np.zeros((len(sentences), dim), dtype=np.float32)
    missing: list[int] = []  # passages whose sentence vectors are not cached
    for i, p in enumerate(passages):
        cached = cache.get(vector_key(model, p.chunk)) if cache is not None and p.chunk.chunk_id else None
        where = [j for j, s in enumerate(sentences) if s.passage_index == i]
        if cached is not None and cached.shape == (len(where), dim):
            rows[where] = cached
        else:
            missing.append(i)
    todo = [j for j, s in enumerate(sentences) if s.passage_index in missing]
    if todo:
        rows[todo] = embed([inputs[j] for j in todo])
        if cache is not None:
            for i in missing:
                if passages[i].chunk.chunk_id:
                    own = [j for j in todo if sentences[j].passage_index == i]
                    cache.put(vector_key(model, passages[i].chunk), rows[own])
    q = question.reshape(-1)
    return sentences, (rows @ q).astype(np.float32)


def start(
    question: npt.NDArray[np.float32],
    passages: Sequence[common_pb2.ScoredChunk],
    embed: Embed,
    cache: VectorCache | None = None,
    model: str = "",
) -> Future[Scored]:
    """`score` on the pool: the caller reads meanwhile and takes the result (or its error) afterwards. It runs in a
    copy of the caller's context, so its Embed call stays in the Ask's trace."""
    context = contextvars.copy_context()
    return _POOL.submit(context.run, score, question, list(passages), embed, cache, model)
