"""Ask: embed -> search -> rerank -> read -> answer with citations, through the answer cache.

Caches, in order: the exact answer cache (cache.py: same question, options and groups at the same memory
generation), then — after embedding — the QA memory (qa_memory.py: the same question asked before, reused while
re-running its retrieval gives the same chunks); `AskResponse.cache_source` says which answered.

Peers are reached through the `Backends` protocol (messages in, messages out, domain errors raised); no gRPC
channels or call objects here. Deadlines: the caller's deadline bounds every peer call (each gets the time left,
at most its configured timeout), and a stage with no time left is not started (DEADLINE_EXCEEDED). Degradation:
a reranker that is overloaded, too slow or down fails the Ask, or, with WIKIMEM_ON_RERANK_OVERLOAD=degrade, leaves
the vector order (`reranked=false` plus a warning; overload.py); a failing cache leaves the answer uncached (plus a
warning). Everything else that fails is an error.

Abstaining: when nothing is retrieved or no supported answer is found (extractive readers: the pipeline decides
from the reader's candidate spans and the reranker's scores, answering.py), `abstained=true`,
`abstain_reason` says why and `answer` is ABSTAIN_ANSWER (a sentence a person can read; clients that want an
empty string check `abstained`).

Generative readers: the model's text is checked sentence by sentence against the passages it was given
(grounding.py, verify.py); unsupported sentences are dropped (or flagged), and nothing supported means abstaining.

Streams: the reader's deltas as they come, then the final AskResponse, which is authoritative. When nothing was
streamed (a cache hit, an abstention, a reader that does not stream) the final answer text is sent as one delta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from wikimem_common import vectors
from wikimem_common.errors import DeadlineExceeded, InvalidArgument, ServiceError, require_text
from wikimem_common.markup import mask_markup
from wikimem_common.timing import Timings
from wikimem_contract.v1 import common_pb2, embedder_pb2, memory_pb2, rag_pb2, reader_pb2, reranker_pb2

from . import sentences as sentence_scores
from .answering import READER_THRESHOLD_OFF, AnswerPolicy, Decision, choose_sentence, decide
from .cache import AnswerKey, GenerationTracker, QueryCache, normalise_collection, normalise_question
from .citations import build_citation
from .config import OrchestratorConfig
from .grounding import POLICIES, add_extractive, ground_generated
from .overload import ReaderRateLimit, on_rerank_failure
from .qa_memory import Hit, QAMemory
from .ranking import rank
from .verify import Embed

log = logging.getLogger("wikimem.orchestrator.pipeline")

ABSTAIN_ANSWER = "I don't know: the wiki has no passage that answers this."

#: AskOptions.retrieval / memory SearchRequest.mode by name (WIKIMEM_RETRIEVAL_MODE takes the names).
RETRIEVAL_MODES: dict[str, common_pb2.RetrievalMode.ValueType] = {
    "dense": common_pb2.RETRIEVAL_MODE_DENSE,
    "bm25": common_pb2.RETRIEVAL_MODE_BM25,
    "hybrid": common_pb2.RETRIEVAL_MODE_HYBRID,
}

#: Stages every Ask response reports (0 when skipped: a cache hit, one hit not worth reranking, ...).
STAGES = ("cache", "embed", "qa_memory", "search", "rerank", "read")


class Backends(Protocol):
    def embedder_info(self, timeout: float) -> embedder_pb2.InfoResponse: ...

    def embed(self, text: str, timeout: float) -> embedder_pb2.EmbedResponse: ...

    def search(self, request: memory_pb2.SearchRequest, timeout: float) -> memory_pb2.SearchResponse: ...

    def generation(self, timeout: float) -> int: ...

    def get(self, request: memory_pb2.GetRequest, timeout: float) -> memory_pb2.GetResponse: ...

    def rerank(self, request: reranker_pb2.RerankRequest, timeout: float) -> reranker_pb2.RerankResponse: ...

    def read(self, request: reader_pb2.ReadRequest, timeout: float) -> reader_pb2.ReadResponse: ...

    def read_stream(
        self, request: reader_pb2.ReadStreamRequest, timeout: float
    ) -> Iterator[reader_pb2.ReadStreamResponse]: ...

    def embed_texts(self, texts: Sequence[str], timeout: float) -> common_pb2.Vectors: ...


@dataclass(frozen=True)
class AskParams:
    question: str  # normalised
    collection: str
    groups: tuple[str, ...]
    retrieve_k: int
    read_k: int
    reader: str
    no_cache: bool
    include_passages: bool
    #: Neither reuse a paraphrase's answer nor remember this one (AskOptions.no_qa_memory).
    no_qa_memory: bool = False

    #: Generative readers: answer tokens (0 = the reader's default) and what happens to unsupported sentences.
    max_tokens: int = 0
    unsupported: str = ""
    #: "dense", "bm25" or "hybrid" (AskOptions.retrieval, else WIKIMEM_RETRIEVAL_MODE).
    retrieval: str = "hybrid"

    def cache_options(self) -> dict[str, object]:
        return {
            "retrieval": self.retrieval,
            "retrieve_k": self.retrieve_k,
            "read_k": self.read_k,
            "reader": self.reader,
            "passages": self.include_passages,
            "max_tokens": self.max_tokens,
            "unsupported": self.unsupported,
        }


#: A peer call is not started with less than this left of the caller's deadline (it could not do useful work).
MIN_PEER_CALL_S = 0.01


class Deadline:
    """The caller's deadline (absolute, monotonic clock) bounding each peer call's configured timeout."""

    def __init__(self, remaining_s: float | None = None) -> None:
        self.at = None if remaining_s is None else time.monotonic() + remaining_s

    def timeout(self, configured: float) -> float:
        """The timeout of the next peer call: the time left, at most `configured`; DEADLINE_EXCEEDED (nothing
        started) when too little is left."""
        if self.at is None:
            return configured
        left = self.at - time.monotonic()
        if left < MIN_PEER_CALL_S:
            raise DeadlineExceeded(
                f"the caller's deadline expired ({left:.3f}s left) before the next step could start"
            )
        return min(configured, left)


def parse_groups(raw: str | None) -> tuple[str, ...]:
    """`x-wikimem-groups` metadata ("eng, hr") -> sorted unique groups."""
    if not raw:
        return ()
    return tuple(sorted({g.strip() for g in raw.split(",") if g.strip()}))


def rerank_text(chunk: common_pb2.Chunk, with_context: bool) -> str:
    """The passage the cross-encoder scores: "title > heading. text" (context only where it adds something)."""
    text = mask_markup(chunk.text)
    if not with_context:
        return text
    title, heading = chunk.title.strip(), chunk.heading.strip()
    # A heading path that already starts at the title (or no title) is used as is.
    context = heading if heading.startswith(title) and heading else f"{title} > {heading}" if heading else title
    return f"{context}. {text}" if context else text


Event = str | rag_pb2.AskResponse


def model_key(info: embedder_pb2.InfoResponse) -> str:
    """What makes two embeddings of a question comparable: model, size and truncation (the cache and QA memory
    key on it)."""
    return f"{info.model_id}/{info.dim}/{info.max_length}"


class Pipeline:
    def __init__(
        self,
        config: OrchestratorConfig,
        backends: Backends,
        cache: QueryCache,
        generation: GenerationTracker,
        qa_memory: QAMemory | None = None,
        answer_policy: AnswerPolicy | None = None,
        sentence_vectors: sentence_scores.VectorCache | None = None,
    ) -> None:
        self.config = config
        self.backends = backends
        self.cache = cache
        self.generation = generation
        self.qa_memory = qa_memory
        #: Extractive answers: span choice and abstention decided here (answering.py), not by the reader alone.
        self.answer_policy = answer_policy or AnswerPolicy.from_env()
        #: Sentence vectors of the chunks read (sentence first decision), per collection and chunk id.
        self.sentence_vectors = sentence_vectors if sentence_vectors is not None else sentence_scores.VectorCache()
        #: Generative reads per caller (the servicer charges each Ask that names a generative reader).
        self.reader_limit = ReaderRateLimit(config)

    # request validation
    def params(self, question: str, options: rag_pb2.AskOptions, groups: Sequence[str]) -> AskParams:
        require_text(question, "question", self.config.max_question_chars)
        retrieve_k = options.retrieve_k or self.config.retrieve_k
        read_k = options.read_k or min(self.config.read_k, retrieve_k)
        if retrieve_k > self.config.max_retrieve_k:
            raise InvalidArgument(f"options.retrieve_k is {retrieve_k}; the limit is {self.config.max_retrieve_k}")
        if options.unsupported not in ("", *POLICIES):
            raise InvalidArgument(f"options.unsupported is {options.unsupported!r}; use 'drop' or 'flag' (or '')")
        if read_k > retrieve_k:
            raise InvalidArgument(f"options.read_k ({read_k}) must not exceed options.retrieve_k ({retrieve_k})")
        return AskParams(
            question=normalise_question(question),
            collection=normalise_collection(options.collection),
            groups=tuple(sorted(set(groups))),
            retrieve_k=retrieve_k,
            read_k=read_k,
            reader=options.reader,
            no_cache=options.no_cache,
            include_passages=options.include_passages,
            no_qa_memory=options.no_qa_memory,
            max_tokens=options.max_tokens,
            unsupported=options.unsupported,
            retrieval=self._retrieval(options.retrieval),
        )

    def _retrieval(self, mode: int) -> str:
        if mode == common_pb2.RETRIEVAL_MODE_UNSPECIFIED:
            return self.config.retrieval_mode
        for name, value in RETRIEVAL_MODES.items():
            if value == mode:
                return name
        raise InvalidArgument(f"options.retrieval is {mode}; use DENSE, BM25 or HYBRID (or leave it unset)")

    def ask(self, params: AskParams, deadline: Deadline | None = None) -> rag_pb2.AskResponse:
        for event in self.run(params, deadline or Deadline(), stream=False):
            if isinstance(event, rag_pb2.AskResponse):
                return event
        raise ServiceError("the pipeline ended without an answer")

    def run(self, params: AskParams, deadline: Deadline, stream: bool) -> Iterator[Event]:
        """Answer deltas (streams only) followed by the final AskResponse."""
        timings = Timings()
        for stage in STAGES:
            timings.add(stage, 0.0)
        warnings: list[str] = []
        cfg = self.config

        key: AnswerKey | None = None
        if self.cache.enabled and not params.no_cache:
            with timings.stage("cache"):
                generation = self.generation.current()
                key = self.cache.answer_key(
                    generation, params.collection, params.question, params.groups, params.cache_options()
                )
                payload = self.cache.get_answer(key, warnings)
            if payload is not None:
                response = rag_pb2.AskResponse.FromString(payload)
                response.cache_source = rag_pb2.CACHE_SOURCE_EXACT
                yield from self._reply_cached(response, warnings, timings, stream)
                return

        vector, model_id = self._embed(params.question, deadline, timings, warnings)

        qa_scope: str | None = None
        if self.qa_memory is not None and key is not None and not params.no_qa_memory:
            with timings.stage("qa_memory"):
                qa_scope, hit = self._qa_lookup(params, vector, key.generation, deadline, warnings)
            if hit is not None:
                hit.response.cache_source = rag_pb2.CACHE_SOURCE_QA_MEMORY
                hit.response.qa_similarity = hit.similarity
                hit.response.qa_matched_question = hit.question
                yield from self._reply_cached(hit.response, warnings, timings, stream)
                return

        with timings.stage("search"):
            found = self.backends.search(
                self._search_request(params, vector, params.question, model_id), deadline.timeout(cfg.peer_timeout_s)
            )
        warnings.extend(found.warnings)  # e.g. hybrid fell back to dense on a store without a lexical index
        hits = list(found.hits)
        retrieved = list(hits)
        response = rag_pb2.AskResponse(
            generation=found.generation, reranked=True, cache_source=rag_pb2.CACHE_SOURCE_NONE, retrieval=found.mode
        )

        if not hits:
            response.abstained = True
            response.abstain_reason = (
                f"nothing in collection {params.collection!r} that your groups may read matched the question"
            )
            response.answer = ABSTAIN_ANSWER
            if stream:
                yield response.answer
        else:
            hits, logits = self._rerank(params, hits, deadline, timings, warnings, response)
            passages = hits[: params.read_k]
            scored = None
            # (Not for a reader named as generative: its own words are verified instead, grounding.py.)
            if (
                self.answer_policy.enabled
                and self.answer_policy.sentences
                and response.reranked
                and params.reader in ("", "extractive")
            ):
                scored = sentence_scores.start(
                    vectors.from_proto(vector), passages, self._embed_texts(deadline), self.sentence_vectors, model_id
                )
            sent: list[str] = []
            read = yield from self._read(params, passages, deadline, timings, stream, sent)
            self._answer(response, read, passages, logits[: params.read_k], params, deadline, timings, warnings, scored)
            if params.include_passages:
                response.passages.extend(hits)
            if stream and not sent:  # a reader that streamed nothing (or abstained): the answer as one delta
                yield response.answer

        storable = key is not None and found.generation == key.generation and response.reranked
        if key is not None and storable:
            with timings.stage("cache"):
                cited = [(c.doc_id, int(c.revision)) for c in response.citations]
                self.cache.put_answer(key, response.SerializeToString(), cited, warnings)
        if self.qa_memory is not None and qa_scope is not None:
            with timings.stage("qa_memory"):
                self.qa_memory.remember(
                    qa_scope, params.question, vectors.from_proto(vector), response, retrieved, found.generation,
                    warnings,
                )
        response.warnings.extend(warnings)
        timings.finish(response.timings_ms)
        yield response

    @staticmethod
    def _search_request(
        params: AskParams, vector: common_pb2.Vectors, question: str, model_id: str
    ) -> memory_pb2.SearchRequest:
        """The retrieval of an Ask (also re-run by the QA memory for a remembered question, so it must match).
        `model_id`: the embedder model that made `vector`; the memory refuses it if it holds another's vectors."""
        return memory_pb2.SearchRequest(
            query=vector,
            top_k=params.retrieve_k,
            filter=common_pb2.Filter(collection=params.collection, groups=list(params.groups)),
            query_text=question,
            mode=RETRIEVAL_MODES[params.retrieval],
            embedding_model=model_id,
        )

    def _reply_cached(
        self, response: rag_pb2.AskResponse, warnings: list[str], timings: Timings, stream: bool
    ) -> Iterator[Event]:
        response.cached = True
        response.warnings.extend(warnings)
        response.timings_ms.clear()
        if stream:
            yield response.answer
        timings.finish(response.timings_ms)
        yield response

    def _qa_lookup(
        self, params: AskParams, vector: common_pb2.Vectors, generation: int, deadline: Deadline, warnings: list[str]
    ) -> tuple[str | None, Hit | None]:
        """The QA memory scope of this request and a verified hit, if any (None scope: not usable now)."""
        assert self.qa_memory is not None
        try:
            info = self.backends.embedder_info(deadline.timeout(self.config.peer_timeout_s))
        except ServiceError as exc:  # the question was embedded from the cache; without a model id, no scope
            log.debug("embedder info failed", extra={"error": exc.message})
            return None, None
        scope = self.qa_memory.scope(model_key(info), params.collection, params.groups, params.cache_options())
        hit = self.qa_memory.lookup(
            scope,
            vectors.from_proto(vector),
            params.question,
            collection=params.collection,
            groups=params.groups,
            search_request=lambda v, q: self._search_request(
                params, vectors.to_proto(v.reshape(1, -1)), q, info.model_id
            ),
            generation=generation,
            verifier=self.backends,
            timeout=lambda: deadline.timeout(self.config.peer_timeout_s),
            warnings=warnings,
        )
        return scope, hit

    # stages
    def _embed(
        self, question: str, deadline: Deadline, timings: Timings, warnings: list[str]
    ) -> tuple[common_pb2.Vectors, str]:
        """The question's embedding and the id of the model that made it ("" when the embedder does not say)."""
        timeout = deadline.timeout(self.config.peer_timeout_s)
        key: str | None = None
        info_model = ""
        if self.cache.enabled:
            with timings.stage("cache"):
                try:
                    info = self.backends.embedder_info(timeout)
                    info_model = info.model_id
                    key = self.cache.embedding_key(model_key(info), question)
                except ServiceError as exc:  # the embedder is down; Embed below reports it
                    log.debug("embedder info failed", extra={"error": exc.message})
                cached = self.cache.get_embedding(key, warnings) if key else None
            if cached is not None:  # stored under this model's key
                return common_pb2.Vectors.FromString(cached), info_model
        with timings.stage("embed"):
            response = self.backends.embed(question, timeout)
        # (Not cached under the key of another model: the embedder was swapped since its Info was read.)
        if key is not None and response.model_id in ("", info_model):
            with timings.stage("cache"):
                self.cache.put_embedding(key, response.vectors.SerializeToString(), warnings)
        # The model that made this very vector; an older embedder does not say, its Info (if asked) does.
        return response.vectors, response.model_id or info_model

    def _rerank(
        self,
        params: AskParams,
        hits: list[common_pb2.ScoredChunk],
        deadline: Deadline,
        timings: Timings,
        warnings: list[str],
        response: rag_pb2.AskResponse,
    ) -> tuple[list[common_pb2.ScoredChunk], list[float]]:
        """Hits in ranking order (ranking.py: the reranker's score plus WIKIMEM_RERANK_DENSE_WEIGHT x the dense
        cosine) with that score, and the reranker's own scores in the same order (the span decision's calibration);
        on a reranker failure, WIKIMEM_ON_RERANK_OVERLOAD decides: an error (fail), or the vector order marked
        `reranked=false` with a warning (degrade)."""
        if len(hits) < 2:
            return hits, [h.score for h in hits]
        request = reranker_pb2.RerankRequest(
            query=params.question, passages=[rerank_text(h.chunk, self.config.rerank_context) for h in hits]
        )
        try:
            with timings.stage("rerank"):
                result = self.backends.rerank(request, deadline.timeout(self.config.rerank_timeout_s))
            if len(result.scores) != len(hits) or sorted(result.order) != list(range(len(hits))):
                raise ServiceError(
                    f"reranker returned {len(result.scores)} scores and order {list(result.order)[:5]}... "
                    f"for {len(hits)} passages"
                )
        except ServiceError as exc:
            warnings.append(on_rerank_failure(exc, self.config.on_rerank_overload))  # raises unless "degrade"
            response.reranked = False
            return hits, [h.score for h in hits]
        return rank(hits, list(result.scores), self.config.rerank_dense_weight, params.question)

    def _read(
        self,
        params: AskParams,
        passages: list[common_pb2.ScoredChunk],
        deadline: Deadline,
        timings: Timings,
        stream: bool,
        sent: list[str],
    ) -> Generator[str, None, reader_pb2.ReadResponse]:
        read_passages = [
            reader_pb2.ReadPassage(id=p.chunk.chunk_id, text=mask_markup(p.chunk.text), title=p.chunk.title)
            for p in passages
        ]
        policy = self.answer_policy
        options = reader_pb2.ReadOptions(backend=params.reader, max_answers=1, max_tokens=params.max_tokens)
        if policy.enabled:  # every candidate span comes back; _answer decides (generative readers ignore both)
            options.max_answers = policy.candidates
            options.no_answer_threshold = READER_THRESHOLD_OFF
        timeout = deadline.timeout(self.config.read_timeout_s)
        with timings.stage("read"):
            if not stream:
                return self.backends.read(
                    reader_pb2.ReadRequest(question=params.question, passages=read_passages, options=options), timeout
                )
            request = reader_pb2.ReadStreamRequest(question=params.question, passages=read_passages, options=options)
            # (Asked for several candidates, a span reader streams no delta: run() sends the decided answer.)
            for event in self.backends.read_stream(request, timeout):
                if event.WhichOneof("event") == "delta":
                    sent.append(event.delta)
                    yield event.delta
                elif event.WhichOneof("event") == "result":
                    return event.result
        raise ServiceError("the reader's stream ended without a result")

    def _answer(
        self,
        response: rag_pb2.AskResponse,
        read: reader_pb2.ReadResponse,
        passages: list[common_pb2.ScoredChunk],
        rerank_scores: list[float],
        params: AskParams,
        deadline: Deadline,
        timings: Timings,
        warnings: list[str],
        scored: Future[sentence_scores.Scored] | None = None,
    ) -> None:
        response.reader, response.reader_model = read.backend, read.model
        if read.abstained or not read.answers:
            response.abstained = True
            response.abstain_reason = read.abstain_reason or "the reader found no supported answer"
            response.answer = ABSTAIN_ANSWER
            return
        best = read.answers[0]
        if best.generated:  # the model's own words: each sentence is checked against the passages
            with timings.stage("verify"):
                ground_generated(
                    response, params.question, best, passages, params.unsupported or self.config.verify_unsupported,
                    ABSTAIN_ANSWER, self._embed_texts(deadline) if self.config.verify_embeddings else None,
                    self.config.verify, warnings,
                )
            return
        if any(a.passage_index >= len(passages) for a in read.answers):
            raise ServiceError(
                f"reader answered from passage {max(a.passage_index for a in read.answers)}, but only "
                f"{len(passages)} were given"
            )
        if self.answer_policy.enabled:
            decision = self._decide(
                params.question, read, rerank_scores if response.reranked else None, scored, timings, warnings
            )
            if decision.answer is None:
                response.abstained = True
                response.abstain_reason = (
                    f"no supported answer (decision score {decision.value:.2f} < {decision.threshold:.2f})"
                )
                response.answer = ABSTAIN_ANSWER
                return
            best = decision.answer
        chunk = passages[best.passage_index].chunk
        citation = build_citation(chunk, best)
        # The exact span is in the citation; the displayed answer folds hard-wrapped lines and runs of spaces.
        response.answer = " ".join(mask_markup(chunk.text)[best.start : best.end].split())
        response.score = best.score
        response.citations.append(citation)
        add_extractive(response)

    def _decide(
        self,
        question: str,
        read: reader_pb2.ReadResponse,
        rerank_scores: list[float] | None,
        scored: Future[sentence_scores.Scored] | None,
        timings: Timings,
        warnings: list[str],
    ) -> Decision:
        """Sentence first when the sentences were scored; the span decision when not (or when scoring failed).
        `rerank_scores`: the reranker's scores of the passages read, None when they were not reranked."""
        if scored is not None:
            with timings.stage("sentences"):
                try:
                    sentences, similarity = scored.result()
                except ServiceError as exc:
                    warnings.append(f"sentences not scored ({exc.message}); the answer span was chosen without them")
                else:
                    return choose_sentence(read.answers, sentences, similarity, self.answer_policy, question)
        return decide(read.answers, rerank_scores, self.answer_policy)

    def _embed_texts(self, deadline: Deadline) -> Embed:
        def embed(texts: list[str]) -> npt.NDArray[np.float32]:
            return vectors.from_proto(self.backends.embed_texts(texts, deadline.timeout(self.config.peer_timeout_s)))

        return embed
