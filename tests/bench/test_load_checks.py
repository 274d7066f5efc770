"""The load suite's checks (bench/suites/load.py), which the load figures and the fault tests rely on: an answer
citing a replaced revision or naming a replaced pager code is counted stale; an unreranked answer without a warning
is counted silent; the others are not."""

from __future__ import annotations

import time
from typing import Any

from bench.suites.load import Question, Workload, fact_doc
from wikimem_contract.v1 import common_pb2, rag_pb2


class FakeStub:
    def __init__(self, reply: rag_pb2.AskResponse) -> None:
        self.reply = reply

    def Ask(self, request: rag_pb2.AskRequest, timeout: float) -> rag_pb2.AskResponse:
        return self.reply


def _reply(answer: str, revision: int, reranked: bool = True, warnings: tuple[str, ...] = ()) -> Any:
    citation = common_pb2.Citation(doc_id=fact_doc("billing"), revision=revision)
    return rag_pb2.AskResponse(answer=answer, citations=[citation], reranked=reranked, warnings=list(warnings))


def _workload() -> Workload:
    workload = Workload("127.0.0.1:1", [], [])
    now = time.monotonic()
    workload.ledger.acked(fact_doc("billing"), 1, now - 2, fact="billing", value=0)
    workload.ledger.acked(fact_doc("billing"), 2, now - 1, fact="billing", value=1)
    return workload


QUESTION = Question("What is the pager code of the billing service?", fact="billing")


def test_answer_from_the_replaced_revision_is_stale() -> None:
    outcome = _workload().ask(FakeStub(_reply("BIL-0", 1)), QUESTION)  # type: ignore[arg-type]
    assert "cites on-call/pager-billing.md@1" in outcome.stale and "answers BIL-0 (revision 1)" in outcome.stale
    assert outcome.fact_right is False


def test_current_answer_is_not_stale_and_newer_than_acked_is_fine() -> None:
    workload = _workload()
    current = workload.ask(FakeStub(_reply("BIL-1", 2)), QUESTION)  # type: ignore[arg-type]
    assert current.stale == "" and current.fact_right is True
    workload.ledger.acked(fact_doc("billing"), 3, time.monotonic() + 60, fact="billing", value=2)  # acked later
    newer = workload.ask(FakeStub(_reply("BIL-2", 3)), QUESTION)  # type: ignore[arg-type]
    assert newer.stale == "" and newer.fact_right is True


def test_unreranked_answer_is_silent_unless_a_warning_says_so() -> None:
    workload = _workload()
    silent = workload.ask(FakeStub(_reply("BIL-1", 2, reranked=False)), QUESTION)  # type: ignore[arg-type]
    assert silent.silent_unreranked and not silent.degraded
    warned = _reply("BIL-1", 2, reranked=False, warnings=("reranker overloaded, passages in vector order (...)",))
    degraded = workload.ask(FakeStub(warned), QUESTION)  # type: ignore[arg-type]
    assert degraded.degraded and not degraded.silent_unreranked
