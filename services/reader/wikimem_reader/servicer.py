"""gRPC adapter for wikimem.v1.Reader."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc

from wikimem_common.errors import grpc_errors
from wikimem_common.timing import Timings
from wikimem_contract.v1 import reader_pb2, reader_pb2_grpc

from .backend import Passage, ReadOutcome
from .service import Reader, ReadQuery


def _query(question: str, passages: Sequence[reader_pb2.ReadPassage], options: reader_pb2.ReadOptions) -> ReadQuery:
    return ReadQuery(
        question=question,
        passages=[Passage(id=p.id, text=p.text, title=p.title) for p in passages],
        backend=options.backend,
        max_answers=options.max_answers,
        threshold=options.no_answer_threshold if options.HasField("no_answer_threshold") else None,
        max_tokens=options.max_tokens,
    )


def _response(backend: str, outcome: ReadOutcome, timings: Timings) -> reader_pb2.ReadResponse:
    response = reader_pb2.ReadResponse(
        answers=[
            reader_pb2.ReadAnswer(
                text=a.text,
                score=a.score,
                passage_index=a.passage_index,
                start=a.start,
                end=a.end,
                generated=a.generated,
            )
            for a in outcome.answers
        ],
        abstained=outcome.abstained,
        abstain_reason=outcome.abstain_reason,
        backend=backend,
        model=outcome.model,
    )
    timings.finish(response.timings_ms)
    return response


class ReaderServicer(reader_pb2_grpc.ReaderServicer):
    def __init__(self, core: Reader) -> None:
        self.core = core

    @grpc_errors
    def Read(self, request: reader_pb2.ReadRequest, context: grpc.ServicerContext) -> reader_pb2.ReadResponse:
        backend, outcome, timings = self.core.read(_query(request.question, request.passages, request.options))
        return _response(backend, outcome, timings)

    @grpc_errors
    def ReadStream(
        self, request: reader_pb2.ReadStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[reader_pb2.ReadStreamResponse]:
        for backend, event, timings in self.core.stream(_query(request.question, request.passages, request.options)):
            if isinstance(event, str):
                yield reader_pb2.ReadStreamResponse(delta=event)
            else:
                yield reader_pb2.ReadStreamResponse(result=_response(backend, event, timings))
