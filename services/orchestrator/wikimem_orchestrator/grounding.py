"""Turn a reader answer into AskResponse fields: citations, per-sentence verification, abstention.

Extractive answers are spans, so they are one verified sentence citing their span. Generated answers are checked
sentence by sentence (verify.py) against the passages the reader saw, with the embedder for semantic support;
supported sentences cite the passage spans (doc_id@revision, char span, quote) that support them, unsupported
ones are dropped from `answer` (or kept and flagged, per request), and an answer with no supported sentence
abstains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from wikimem_common.errors import ServiceError
from wikimem_common.markup import mask_markup
from wikimem_contract.v1 import common_pb2, rag_pb2, reader_pb2

from .citations import build_citation
from .verify import CheckedSentence, Embed, VerifyConfig, check_answer

POLICIES = ("drop", "flag")

log = logging.getLogger("wikimem.orchestrator.grounding")


def _abstain(response: rag_pb2.AskResponse, reason: str, answer: str) -> None:
    response.abstained = True
    response.abstain_reason = reason
    response.answer = answer
    del response.citations[:]


def add_extractive(response: rag_pb2.AskResponse) -> None:
    """An extractive answer (already in `response`, citing its span) as one verified sentence."""
    if response.abstained or not response.answer:
        return
    response.sentences.append(
        rag_pb2.AnswerSentence(
            text=response.answer, start=0, end=len(response.answer), verified=True, citations=[0], support=1.0,
            in_answer=True,
        )
    )


def ground_generated(
    response: rag_pb2.AskResponse,
    question: str,
    answer: reader_pb2.ReadAnswer,
    passages: Sequence[common_pb2.ScoredChunk],
    policy: str,
    abstain_answer: str,
    embed: Embed | None,
    config: VerifyConfig,
    warnings: list[str],
) -> list[CheckedSentence]:
    """Fill `answer`, `citations`, `sentences`, `score` (mean support of verified sentences) and `generated`.

    When the embedder fails, sentences are checked on lexical overlap and key terms alone (plus a warning)."""
    chunks = [p.chunk for p in passages]
    texts = [mask_markup(c.text) for c in chunks]
    try:
        checked = check_answer(question, answer.text, texts, embed, config)
    except ServiceError as exc:
        log.warning("embedder failed during verification; lexical only", extra={"error": exc.message})
        warnings.append(f"embedder unavailable, answer sentences verified on word overlap only: {exc.message}")
        checked = check_answer(question, answer.text, texts, None, config)
    response.generated = answer.text
    keys: dict[tuple[int, int, int], int] = {}
    kept: list[CheckedSentence] = []
    for sentence in checked:
        cites: list[int] = []
        if sentence.verified:
            for support in sentence.supports:
                span = support.span
                key = (span.passage, span.start, span.end)
                if key not in keys:
                    keys[key] = len(response.citations)
                    cited = reader_pb2.ReadAnswer(start=span.start, end=span.end, score=support.score)
                    response.citations.append(build_citation(chunks[span.passage], cited))
                cites.append(keys[key])
        in_answer = sentence.verified or policy == "flag"
        if in_answer:
            kept.append(sentence)
        response.sentences.append(
            rag_pb2.AnswerSentence(
                text=sentence.text,
                start=sentence.start,
                end=sentence.end,
                verified=sentence.verified,
                citations=cites,
                support=round(sentence.support, 4),
                in_answer=in_answer,
                note=sentence.note,
            )
        )
    verified = [s for s in checked if s.verified]
    if not verified:
        for s in response.sentences:
            s.in_answer = False
        reason = (
            f"none of the {len(checked)} generated sentences is supported by the passages"
            if checked
            else "the model's answer has no sentence to check"
        )
        _abstain(response, reason, abstain_answer)
        return checked
    response.answer = " ".join(s.text for s in kept)
    response.score = sum(s.support for s in verified) / len(verified)
    return checked
